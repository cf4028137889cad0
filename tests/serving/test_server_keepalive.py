"""A call that outlasts several keepalive periods completes, on our server and on a stock one.

gRPC servers answer "bad" pings (too frequent while no data flows) with GOAWAY
"too_many_pings" at the third, and every call on the connection then fails UNAVAILABLE.
Triton's defaults count any client ping less than 5 minutes after the previous one as bad.
The client used to ping every 30 s without limit, so each call longer than ~90 s (an
8,192-token row on a CPU encoder) failed and was retried, i.e. computed twice. Now the client
sends at most 2 pings while no data flows (gRPC's default), and the launcher's server accepts
pings from 1 s apart (``launch.GRPC_PING_POLICY``).

Each call here lasts ``HOLD_US``: the encoder's dynamic batcher holds a lone request that long
(``deploy --encoder-queue-delay-us``), whatever the machine's speed. Keepalive periods are
shortened so that the calls span several of them.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from opencc_cm_client import ClassifierClient, ConnectionOptions
from opencc_cm_contract import IDS_ENSEMBLE

HOLD_US = 8_000_000  # an unlimited pinger every 0.5-1 s got GOAWAY after 4.5-5 s here
# Triton's own ping policy, restored over the launcher's (later flags win).
STOCK_PING_POLICY = ("--grpc-keepalive-permit-without-calls=0",
                     "--grpc-http2-min-recv-ping-interval-without-data=300000")


@pytest.fixture(scope="module")
def held_repository(bundle_dir, tmp_path_factory):
    from serving_calls import deploy_to

    return deploy_to(bundle_dir, tmp_path_factory.mktemp("keepalive") / "repo", "python-ort",
                     "--encoder-queue-delay-us", str(HOLD_US))


def _server(repository, log_dir, extra_args=()):
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    return TritonServer(repository, ServerSettings(log_path=log_dir / "tritonserver.log", ready_timeout=120, extra_args=extra_args))


@pytest.fixture(scope="module")
def stock_server(held_repository, tmp_path_factory):
    with _server(held_repository, tmp_path_factory.mktemp("keepalive-stock-log"), STOCK_PING_POLICY) as server:
        yield server


@pytest.fixture(scope="module")
def our_server(held_repository, tmp_path_factory):
    with _server(held_repository, tmp_path_factory.mktemp("keepalive-ours-log")) as server:
        yield server


_UNLIMITED_PINGER = r"""
import sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

url, keepalive_ms, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
row = np.asarray([[int(x) for x in sys.argv[4].split(",")]], dtype=np.int64)
inputs = []
for name in ("input_ids", "attention_mask"):
    tensor = grpcclient.InferInput(name, list(row.shape), "INT64")
    tensor.set_data_from_numpy(row if name == "input_ids" else np.ones_like(row))
    inputs.append(tensor)
client = grpcclient.InferenceServerClient(url, channel_args=[
    ("grpc.keepalive_time_ms", keepalive_ms), ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)])
try:
    result = client.infer(model, inputs, client_timeout=30)
    print("OK", bool(np.isfinite(result.as_numpy("scores")).all()))
except InferenceServerException as exc:
    print(exc.status(), str(exc).replace(chr(10), " "))
"""


def _unlimited_pinger(url: str, keepalive_ms: int, row: list[int]) -> str:
    """One call by a raw tritonclient with the client's former channel arguments (pings without
    limit), in its own process: gRPC core throttles keepalive process-wide after a GOAWAY
    "too_many_pings", which would hide the hazard from the tests that follow."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _UNLIMITED_PINGER, url, str(keepalive_ms), IDS_ENSEMBLE,
                          ",".join(map(str, row))], capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1]


def _row(spec, n=12):
    return np.random.default_rng(3).integers(1, spec.vocab_size, size=n).tolist()


def test_stock_ping_policy_kills_a_long_call_of_an_unlimited_pinger(stock_server, spec):
    """The hazard itself, on Triton's defaults: pings 0.5 s apart end the 8 s call."""
    started = time.monotonic()
    outcome = _unlimited_pinger(stock_server.grpc_url, 500, _row(spec))
    # The abandoned request is still held in the batcher: let it run, or it would join (and
    # shorten) the next test's call.
    time.sleep(max(0.0, HOLD_US / 1e6 - (time.monotonic() - started)) + 0.5)
    assert outcome.startswith("StatusCode.UNAVAILABLE"), outcome
    assert "too many pings" in outcome.lower()


def test_classifier_client_long_call_survives_the_stock_ping_policy(stock_server, spec):
    options = ConnectionOptions(keepalive_time_ms=500, keepalive_timeout_ms=5000, timeout_s=30)
    with ClassifierClient(stock_server.grpc_url, options=options) as client:
        started = time.monotonic()
        results = client.classify_ids([_row(spec)])
        lasted = time.monotonic() - started
        assert client.retries == 0
        assert lasted >= 0.9 * HOLD_US / 1e6  # long enough that a GOAWAY would have come
        assert results[0].input_tokens == 12
        assert [r.label for r in results[0].labels] == list(spec.labels)


def test_our_server_keeps_a_long_call_of_a_client_pinging_every_1_2_s(our_server, spec):
    assert _unlimited_pinger(our_server.grpc_url, 1200, _row(spec)) == "OK True"
