"""The bounded queue (max_queue_size) rejects overflow with UNAVAILABLE instead of piling up,
and the server keeps serving."""
from __future__ import annotations

import pytest

from opencc_cm_contract import TEXT_ENSEMBLE

from serving_calls import classify_text, fire, served, text_inputs


@pytest.fixture(scope="module")
def tiny_queue_client(tmp_path_factory, bundle_dir):
    with served(bundle_dir, tmp_path_factory.mktemp("queue"), "--max-queue-size", "1") as (_, client):
        yield client


def test_queue_overflow_is_unavailable(tiny_queue_client):
    results = fire(tiny_queue_client, TEXT_ENSEMBLE, [text_inputs(["the model " * 5]) for _ in range(100)])
    errors = [r for r in results if hasattr(r, "status")]
    assert errors, "a queue of 1 must overflow under 100 concurrent requests"
    assert {e.status() for e in errors} == {"StatusCode.UNAVAILABLE"}
    assert all("Exceeds maximum queue size" in e.message() for e in errors)
    assert tiny_queue_client.is_server_ready()
    assert classify_text(tiny_queue_client, ["still serving"])["scores"].shape[0] == 1
