"""Dynamic batching really batches requests of different lengths, and a bad request in a
batch only fails itself. Triton's own statistics are the evidence.

Whether concurrent requests meet in one execute() depends on how fast they arrive relative to
the encoder; on a busy machine they may not. So these tests run on their own server whose
encoder waits up to ``HOLD_US`` for a full batch (``deploy --encoder-queue-delay-us``): every
request sent within that window joins the batch, whatever the machine's speed.
"""
from __future__ import annotations

import numpy as np
import pytest

from opencc_cm_contract import ENCODER_MODEL, LOGITS, SCORES, TEXT_ENSEMBLE

from serving_calls import expected, fire, ids_inputs, prompts, text_inputs

REQUESTS = 64
HOLD_US = 3_000_000


@pytest.fixture(scope="module")
def client(bundle_dir, profiles_file, tmp_path_factory):
    from serving_calls import served

    with served(bundle_dir, tmp_path_factory.mktemp("batching"), "--profiles", str(profiles_file),
                "--encoder-queue-delay-us", str(HOLD_US)) as (_, c):
        yield c


def encoder_counts(client) -> tuple[int, int]:
    stats = client.get_inference_statistics(model_name=ENCODER_MODEL).model_stats[0]
    return stats.inference_count, stats.execution_count


def test_concurrent_mixed_lengths_are_batched(client, spec, tokenizer, reference_logits, record_property):
    texts = prompts(tokenizer, spec.max_tokens, REQUESTS, seed=7)
    rows = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    assert len({len(r) for r in rows}) > 16
    before = encoder_counts(client)
    results = fire(client, TEXT_ENSEMBLE, [text_inputs([t]) for t in texts])
    after = encoder_counts(client)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    record_property("encoder_inferences", inferences)
    record_property("encoder_executions", executions)
    print(f"encoder: {inferences} inferences in {executions} executions")
    assert inferences == REQUESTS
    assert executions <= REQUESTS // 4, f"{executions} executions for {inferences} inferences"
    ref = expected(reference_logits(rows), spec.thresholds)
    scores = np.concatenate([r.as_numpy(SCORES) for r in results])
    assert np.abs(scores - ref[SCORES]).max() <= 1e-5


def test_profiles_never_leak_between_concurrent_requests(client, tokenizer, spec):
    texts = prompts(tokenizer, spec.max_tokens, 32, seed=3)
    profiles = ["nothing" if i % 2 else "everything" for i in range(len(texts))]
    results = fire(client, TEXT_ENSEMBLE, [text_inputs([t]) for t in texts], profiles)
    for profile, result in zip(profiles, results):
        assert result.as_numpy("flagged")[0, 0] == (profile == "everything")


def test_bad_request_in_a_batch_fails_alone(client, spec, reference_logits):
    rng = np.random.default_rng(0)
    good_rows = [rng.integers(0, spec.vocab_size, n).tolist() for n in rng.integers(1, spec.max_tokens, 24)]
    batches, bad = [], set(range(3, 24, 5))
    for i, row in enumerate(good_rows):
        ids = np.array([row], dtype=np.int64)
        if i in bad:
            ids[0, -1] = spec.vocab_size + i  # out of range: the encoder must reject it
        batches.append(ids_inputs(ids, np.ones_like(ids)))
    before = encoder_counts(client)
    results = fire(client, ENCODER_MODEL, batches)
    after = encoder_counts(client)
    assert after[1] - before[1] <= len(batches) // 4, "bad and good requests should share executions"
    for i, result in enumerate(results):
        if i in bad:
            assert "StatusCode.INVALID_ARGUMENT" in str(result.status()) and "is outside [0, " in result.message()
        else:
            got = result.as_numpy(LOGITS)[0]
            assert np.abs(got - reference_logits([good_rows[i]])[0]).max() <= 1e-5
