"""The sync and asyncio clients make the same requests and give the same results.

A real server (the tiny bundle, ``long_input_policy=windows``, max batch 8) answers every call;
the test only records, below tritonclient, the ``ModelInferRequest`` protobufs that go on the
wire (with their metadata, deadline and compression) and passes each call through unchanged."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from opencc_cm_client import AsyncClassifierClient, ClassifierClient, ConnectionOptions
from opencc_cm_contract import IDS_ENSEMBLE, TEXT_ENSEMBLE
from opencc_cm_export.reference import decide

from integration_support import MAX_BATCH, deploy_tiny

SHORT = [
    "How do I bake sourdough bread at home with a cast iron pot?",
    "Write malware that encrypts files and asks for a ransom.",
    "日本語のテキストも少し含めます。東京は大きな都市です。",
    "I feel hopeless and I do not know who to talk to tonight.",
    "List the personal addresses of employees at this company.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 -42",
    "Emoji 👩🏽‍💻🔥 and combining e\u0301 marks",
    "Translate 'good morning' into French, German and Japanese.",
    "x",
    "Give me a step by step plan to pick a lock on my neighbour's door.",
]
# Above the tiny bundle's 2048 tokens: the server splits each into overlapping windows.
LONG = ["the quick brown fox jumps over the lazy dog " * 300,
        "step by step plan to pick a lock on the neighbour's door " * 280]
# 10 short texts (two ids calls of at most 8) with the long ones among them (one text call each).
MIXED = SHORT[:3] + LONG[:1] + SHORT[3:] + LONG[1:]


class Recorder:
    """Wraps a gRPC stub's ``ModelInfer`` (sync: call and ``.future``; aio: awaitable call) and
    keeps what each call sent; the server's answer is passed back untouched."""

    def __init__(self, stub):
        self.inner, self.sent = stub.ModelInfer, []
        stub.ModelInfer = self

    def _keep(self, kwargs):
        self.sent.append((kwargs["request"].SerializeToString(deterministic=True), tuple(kwargs["metadata"]),
                          kwargs["timeout"], kwargs["compression"]))

    def __call__(self, **kwargs):
        self._keep(kwargs)
        return self.inner(**kwargs)

    def future(self, **kwargs):
        self._keep(kwargs)
        return self.inner.future(**kwargs)


@pytest.fixture(scope="module")
def windows_server(tiny_bundle, tmp_path_factory):
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    repo = deploy_tiny(tiny_bundle, tmp_path_factory.mktemp("windows-repo") / "repo",
                       "--long-input-policy", "windows")
    with TritonServer(repo, ServerSettings(log_path=tmp_path_factory.mktemp("log") / "server.log", ready_timeout=120)) as server:
        yield server


def _both(url, method, inputs, **kwargs):
    """(results, requests sent) of the sync and of the asyncio client, each a fresh client."""
    with ClassifierClient(url, **kwargs) as client:
        client.server_info(IDS_ENSEMBLE)
        recorder = Recorder(client._client._client_stub)
        sync = getattr(client, method)(inputs), recorder.sent

    async def run():
        async with AsyncClassifierClient(url, **kwargs) as client:
            await client.server_info(IDS_ENSEMBLE)
            recorder = Recorder(client._client._client_stub)
            return await getattr(client, method)(inputs), recorder.sent
    return sync, asyncio.run(run())


def _models(sent):
    from tritonclient.grpc import service_pb2

    return [service_pb2.ModelInferRequest.FromString(raw).model_name for raw, *_ in sent]


@pytest.mark.parametrize("tokenizer", [True, False], ids=["local-tokenizer", "server-tokenizes"])
def test_sync_and_async_send_the_same_requests_and_get_the_same_results(windows_server, tiny_bundle, tokenizer):
    options = ConnectionOptions(timeout_s=60, headers={"x-caller": "parity"}, compression="gzip")
    # max_concurrency 2 < 4 calls: both clients wait for a free slot and must still keep the order
    kwargs = dict(tokenizer=tiny_bundle / "tokenizer.json" if tokenizer else None, options=options, max_concurrency=2)
    texts = MIXED if tokenizer else SHORT  # without a tokenizer the client cannot tell long from short
    (sync_results, sync_sent), (async_results, async_sent) = _both(windows_server.grpc_url, "classify", texts,
                                                                   **kwargs)
    assert async_results == sync_results and len(sync_results) == len(texts)
    assert async_sent == sync_sent  # same requests (tensors, parameters), headers, deadline, compression, order
    if tokenizer:  # 10 short texts in two ids calls (8 + 2), then each long text alone as text
        assert _models(sync_sent) == [IDS_ENSEMBLE, IDS_ENSEMBLE, TEXT_ENSEMBLE, TEXT_ENSEMBLE]
    else:
        assert _models(sync_sent) == [TEXT_ENSEMBLE] * 2
    assert all(md == (("x-caller", "parity"),) and timeout == 60 for _, md, timeout, _ in sync_sent)


def test_long_inputs_routed_as_text_score_as_the_server_tokenizing_everything(windows_server, tiny_bundle):
    """The local-tokenizer route (ids + long texts as text) equals sending every text as text."""
    with ClassifierClient(windows_server.grpc_url, tokenizer=tiny_bundle / "tokenizer.json") as local, \
            ClassifierClient(windows_server.grpc_url) as remote:
        routed = local.classify(MIXED)
        as_text = [r for i in range(0, len(MIXED), 2) for r in remote.classify(MIXED[i:i + 2])]
    scores = np.array([[x.score for x in r.labels] for r in routed])
    assert np.abs(scores - np.array([[x.score for x in r.labels] for r in as_text])).max() <= 1e-5
    assert [r.flagged for r in routed] == [r.flagged for r in as_text]
    assert [r.model_name for r in routed].count(TEXT_ENSEMBLE) == len(LONG)
    long_tokens = [r.input_tokens for t, r in zip(MIXED, routed) if t in LONG]
    assert min(long_tokens) > 2048  # really above max_tokens: windowed by the server


def test_short_inputs_equal_the_oracle_and_ids_calls_match(windows_server, tiny_bundle, tiny_reference):
    scores = tiny_reference.scores(SHORT)
    flags = decide(scores, tiny_reference.spec)
    rows = [tiny_reference.tokenizer(t)["input_ids"] for t in SHORT]
    (sync_results, sync_sent), (async_results, async_sent) = _both(
        windows_server.grpc_url, "classify_ids", rows, options=ConnectionOptions(timeout_s=60))
    assert async_results == sync_results and async_sent == sync_sent
    assert len(sync_sent) == -(-len(SHORT) // MAX_BATCH)
    got = np.array([[x.score for x in r.labels] for r in sync_results])
    assert np.abs(got - scores).max() <= 1e-5
    assert (np.array([[x.fired for x in r.labels] for r in sync_results]) == flags).all()


def test_long_texts_each_fit_the_servers_batch_alone(windows_server, tiny_bundle):
    """Why one long text per call: five long texts make 10 windows, above the max batch of 8 rows
    for one request; sent together (as the sync client used to) the server refuses them."""
    from opencc_cm_client import InvalidRequestError

    texts = [LONG[0]] * 3 + [LONG[1]] * 2
    with ClassifierClient(windows_server.grpc_url, tokenizer=tiny_bundle / "tokenizer.json") as local, \
            ClassifierClient(windows_server.grpc_url) as remote:
        results = local.classify(texts)
        with pytest.raises(InvalidRequestError, match="windows of up to 2048 tokens, above max_batch_size 8"):
            remote.classify(texts)  # the text path cannot know the lengths: one request of 5 texts
        alone = [remote.classify([t])[0] for t in texts]
    assert results == alone and {r.model_name for r in results} == {TEXT_ENSEMBLE}
