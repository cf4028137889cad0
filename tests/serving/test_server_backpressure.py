"""The bounded queue (max_queue_size) rejects overflow with UNAVAILABLE instead of piling up,
and the server keeps serving.

On the Python-backend targets the bound is the encoder's row scheduler's (no Triton queue
policy: opencc_cm_serving.encoder_model.queue_settings): it holds at most max_queue_size
admitted requests. Long rows (at least solo_row_tokens: max_tokens / 4 = 16 tokens with the toy
bundle) are always admitted, so 100 concurrent texts of 21 tokens overflow a queue of 1."""
from __future__ import annotations

import pytest

from opencc_cm_contract import SCORES, TEXT_ENSEMBLE, TOKEN_COUNT

from serving_calls import classify_text, fire, served, text_inputs

LONG_ROW_TEXT = "the model " * 10  # 21 tokens: a long row for the toy bundle (max_tokens 64)


@pytest.fixture(scope="module")
def tiny_queue_client(tmp_path_factory, bundle_dir):
    with served(bundle_dir, tmp_path_factory.mktemp("queue"), "--max-queue-size", "1") as (_, client):
        yield client


def test_queue_overflow_is_unavailable(tiny_queue_client):
    results = fire(tiny_queue_client, TEXT_ENSEMBLE, [text_inputs([LONG_ROW_TEXT]) for _ in range(100)])
    errors = [r for r in results if hasattr(r, "status")]
    answered = [r for r in results if not hasattr(r, "status")]
    assert errors, "a queue of 1 must overflow under 100 concurrent requests"
    assert {e.status() for e in errors} == {"StatusCode.UNAVAILABLE"}
    assert all("Exceeds maximum queue size" in e.message() for e in errors)
    assert answered and all(r.as_numpy(SCORES).shape[0] == 1 for r in answered)  # the others were served
    assert all(r.as_numpy(TOKEN_COUNT).ravel().tolist() == [21] for r in answered)  # long rows indeed
    assert tiny_queue_client.is_server_ready()
    assert classify_text(tiny_queue_client, ["still serving"])["scores"].shape[0] == 1
