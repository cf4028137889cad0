"""The bounded queue (max_queue_size) rejects overflow with UNAVAILABLE instead of piling up,
and the server keeps serving.

On the Python-backend targets the bound is the encoder's row scheduler (no Triton queue policy:
opencc_cm_serving.encoder_model.queue_settings): a batch that fills max_batch_size shows a
backlog and is admitted to the scheduler, which holds at most max_queue_size requests. The
encoder here is slow (toy_bundle.slow_nodes), so a backlog builds while a batch runs."""
from __future__ import annotations

import pytest

from opencc_cm_contract import SCORES, TEXT_ENSEMBLE

from serving_calls import classify_text, fire, served, text_inputs
from toy_bundle import make_toy_bundle


@pytest.fixture(scope="module")
def tiny_queue_client(tmp_path_factory):
    root = tmp_path_factory.mktemp("queue")
    bundle = make_toy_bundle(root / "bundle", loops_per_cell=30)
    with served(bundle, root, "--max-queue-size", "1", "--max-batch-size", "8") as (_, client):
        yield client


def test_queue_overflow_is_unavailable(tiny_queue_client):
    results = fire(tiny_queue_client, TEXT_ENSEMBLE, [text_inputs(["the model " * 5]) for _ in range(100)])
    errors = [r for r in results if hasattr(r, "status")]
    answered = [r for r in results if not hasattr(r, "status")]
    assert errors, "a queue of 1 must overflow under 100 concurrent requests"
    assert {e.status() for e in errors} == {"StatusCode.UNAVAILABLE"}
    assert all("Exceeds maximum queue size" in e.message() for e in errors)
    assert answered and all(r.as_numpy(SCORES).shape[0] == 1 for r in answered)  # the others were served
    assert tiny_queue_client.is_server_ready()
    assert classify_text(tiny_queue_client, ["still serving"])["scores"].shape[0] == 1
