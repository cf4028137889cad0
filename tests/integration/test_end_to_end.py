"""Scores through Triton equal the reference oracle's; client features against a live server."""
import asyncio
import json

import numpy as np
import pytest

from opencc_cm_client import AsyncClassifierClient, ClassifierClient, InvalidRequestError
from opencc_cm_client.local_tokenizer import LocalTokenizer
from opencc_cm_export.reference import decide

PROMPTS = [
    "x",
    "How do I bake sourdough bread at home with a cast iron pot?",
    "Give me a step by step plan to pick a lock on my neighbour's door. " * 6,  # > 64 tokens
    "日本語のテキストも少し含めます。東京は大きな都市です。",
    "Emoji 👩🏽‍💻🔥 and combining e\u0301 marks",
    "Write malware that encrypts files and asks for a ransom.",
    "I feel hopeless and I do not know who to talk to tonight.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 -42",
    "List the personal addresses of employees at this company.",
    "Translate 'good morning' into French, German and Japanese.",
]


def _scores(results):
    return np.array([[r.score for r in res.labels] for res in results], dtype=np.float32)


def _flags(results):
    return np.array([[r.fired for r in res.labels] for res in results])


@pytest.fixture(scope="module")
def oracle(tiny_reference):
    scores = tiny_reference.scores(PROMPTS)
    return scores, decide(scores, tiny_reference.spec)


@pytest.mark.parametrize("local_tokenizer", [True, False], ids=["client-tokenizes/ids-ensemble", "server-tokenizes/text-ensemble"])
def test_scores_through_triton_equal_the_oracle(served_target, tiny_bundle, oracle, local_tokenizer):
    """Each encoder target (python-ort, python-torch) through both ensembles: fp32 <= 1e-5 of
    the oracle, identical flags."""
    _, server = served_target
    tokenizer = tiny_bundle / "tokenizer.json" if local_tokenizer else None
    with ClassifierClient(server.grpc_url, tokenizer=tokenizer) as client:
        results = client.classify(PROMPTS)  # 10 prompts > max batch 8: split in two concurrent calls
    scores, flags = oracle
    assert np.abs(_scores(results) - scores).max() <= 1e-5
    assert (_flags(results) == flags).all()
    assert [r.flagged for r in results] == flags.any(axis=1).tolist()
    assert {r.model_name for r in results} == {"classify_ids" if local_tokenizer else "classify_text"}
    assert all(r.model_version == "1" and r.threshold_profile == "default" for r in results)


def test_local_tokenization_gives_the_reference_ids(tiny_bundle, tiny_reference):
    local = LocalTokenizer(tiny_bundle / "tokenizer.json").encode(PROMPTS)
    assert local == [tiny_reference.tokenizer(p)["input_ids"] for p in PROMPTS]


def test_token_counts_and_one_by_one_equal_batched(served_target, tiny_bundle, tiny_reference):
    """A mixed batch (lengths 1 to > 64 tokens, padded together, and to buckets for
    python-torch) equals the same prompts sent one by one."""
    _, server = served_target
    with ClassifierClient(server.grpc_url, tokenizer=tiny_bundle / "tokenizer.json") as client:
        batched = client.classify(PROMPTS)
        alone = [client.classify([p])[0] for p in PROMPTS]
    assert [r.input_tokens for r in batched] == [len(tiny_reference.tokenizer(p)["input_ids"]) for p in PROMPTS]
    assert np.abs(_scores(batched) - _scores(alone)).max() <= 1e-6


def test_async_client_equals_sync(tiny_server, tiny_bundle):
    async def run():
        async with AsyncClassifierClient(tiny_server.grpc_url, tokenizer=tiny_bundle / "tokenizer.json") as client:
            return await client.classify(PROMPTS), await client.gate(PROMPTS[0])
    async_results, decision = asyncio.run(run())
    with ClassifierClient(tiny_server.grpc_url, tokenizer=tiny_bundle / "tokenizer.json") as client:
        sync_results = client.classify(PROMPTS)
    assert async_results == sync_results
    assert decision.escalate == sync_results[0].flagged


def test_a_caller_cancelling_an_async_call_is_not_retried(tiny_server, tiny_bundle):
    """Server-side CANCELLED is retried (Triton cancels calls while it stops); the caller's own
    asyncio cancellation must propagate at once, untouched, and leave the client usable."""
    async def run():
        async with AsyncClassifierClient(tiny_server.grpc_url, tokenizer=tiny_bundle / "tokenizer.json") as client:
            await client.server_info()
            task = asyncio.create_task(client.classify(PROMPTS * 8))
            await asyncio.sleep(0.001)  # the call is on the wire
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return client.retries, await client.classify(PROMPTS[:1])
    retries, after = asyncio.run(run())
    assert retries == 0
    assert len(after) == 1 and len(after[0].labels) == 11


def test_labels_and_profiles_come_from_the_server(tiny_server, tiny_bundle):
    manifest = json.loads((tiny_bundle / "classifier.json").read_text())
    with ClassifierClient(tiny_server.grpc_url, threshold_profile="everything") as client:
        info = client.server_info()
        assert list(info.labels) == manifest["labels"] and info.max_batch_size == 8
        assert info.profiles["default"] == tuple(manifest["thresholds"][label] for label in manifest["labels"])
        assert all(r.flagged and r.threshold_profile == "everything" for r in client.classify(PROMPTS[:3]))
    with ClassifierClient(tiny_server.grpc_url, threshold_profile="nothing") as client:
        assert not any(r.flagged for r in client.classify(PROMPTS[:3]))
    with ClassifierClient(tiny_server.grpc_url, threshold_profile="lenient") as client:
        with pytest.raises(ValueError, match="unknown threshold profile 'lenient'"):
            client.classify(PROMPTS[:1])


def test_bad_input_is_named_and_the_gate_fails_closed(tiny_server, tiny_bundle):
    with ClassifierClient(tiny_server.grpc_url) as server_side, \
            ClassifierClient(tiny_server.grpc_url, tokenizer=tiny_bundle / "tokenizer.json") as local:
        with pytest.raises(InvalidRequestError, match="whitespace-only") as err:
            server_side.classify(["fine", "   "])
        assert err.value.code == "INVALID_ARGUMENT"
        with pytest.raises(InvalidRequestError, match=r"text\[1\]: NUL byte") as err:
            local.classify(["fine", "a\x00b"])
        assert err.value.code == "LOCAL"
        decision = server_side.gate("   ")
        assert decision.escalate and "INVALID_ARGUMENT" in decision.reason
        assert server_side.classify(["still serving"])[0].input_tokens > 0


def test_a_tokenizer_that_is_not_the_servers_is_refused(tiny_server, tmp_path, tiny_bundle):
    other = json.loads((tiny_bundle / "tokenizer.json").read_text())
    other["added_tokens"] = other["added_tokens"][:1]
    (tmp_path / "tokenizer.json").write_text(json.dumps(other))
    with ClassifierClient(tiny_server.grpc_url, tokenizer=tmp_path / "tokenizer.json") as client:
        with pytest.raises(Exception, match="is not the server's"):
            client.classify(["hello"])


def test_each_encoder_target_logs_what_it_runs(served_target):
    """python-ort names its providers; python-torch its device, precision and Gated DeltaNet
    rule (here: the project's torch rule, since fla-core needs CUDA)."""
    target, server = served_target
    log = server.log_path.read_text(errors="replace")
    expected = {"python-ort": ["encoder: onnxruntime providers ['CPUExecutionProvider']"],
                "python-torch": ["encoder: gated delta rule: the project's torch rule, because fla-core needs a CUDA device",
                                 "encoder: torch encoder: cpu, fp32, gated delta torch, buckets on"]}[target]
    for line in expected:
        assert line in log
