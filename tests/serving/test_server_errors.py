"""Bad input is answered with INVALID_ARGUMENT naming the problem; the server stays ready."""
from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import ENCODER_MODEL, IDS_ENSEMBLE, SCORES, TEXT_ENSEMBLE

from serving_calls import classify_text, ids_inputs, params, text_inputs

INVALID = "StatusCode.INVALID_ARGUMENT"


def rejected(call) -> str:
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == INVALID, info.value
    return info.value.message()


@pytest.fixture(autouse=True)
def stays_ready(client):
    yield
    assert client.is_server_ready()
    assert classify_text(client, ["still serving"])[SCORES].shape[0] == 1


@pytest.mark.parametrize("text, problem", [
    (b"", "empty string"),
    (b" \t\n  ", "whitespace-only"),
    (b"caf\xe9 au lait", "invalid UTF-8 at byte offset 3"),
    (b"abc\x00def", "NUL byte at byte offset 3"),
    (b"a" * 1_000_000, "above max_text_bytes"),
])
def test_bad_text(client, text, problem):
    message = rejected(lambda: client.infer(TEXT_ENSEMBLE, text_inputs(["fine", text])))
    assert problem in message and "text[1]" in message


def test_text_above_max_tokens(client, spec, tokenizer):
    text = "the model " * spec.max_tokens
    assert len(tokenizer.encode(text, add_special_tokens=False).ids) > spec.max_tokens
    assert f"above max_tokens {spec.max_tokens}" in rejected(lambda: client.infer(TEXT_ENSEMBLE, text_inputs([text])))


def _ids(rows):
    return np.array(rows, dtype=np.int64)


@pytest.mark.parametrize("ids, mask, problem", [
    ([[1, 2, 10**6]], [[1, 1, 1]], "outside [0,"),
    ([[1, -3, 2]], [[1, 1, 1]], "id -3"),
    ([[1, 2, 3]], [[1, 1, 1, 0]], "differs from input_ids shape"),
    ([[1, 2, 3]], [[1, 2, 1]], "values must be 0 or 1"),
    ([[1, 2, 3]], [[0, 1, 1]], "not right padded"),
    ([[1, 2, 3], [4, 5, 6]], [[1, 1, 1], [1, 0, 1]], "row 1 is not right padded"),
    ([[1, 2, 3]], [[0, 0, 0]], "no real token"),
])
def test_bad_ids(client, ids, mask, problem):
    message = rejected(lambda: client.infer(IDS_ENSEMBLE, ids_inputs(_ids(ids), _ids(mask))))
    assert problem in message


def test_ids_above_max_tokens(client, spec):
    ids = np.full((1, spec.max_tokens + 1), spec.pad_token_id, dtype=np.int64)
    message = rejected(lambda: client.infer(IDS_ENSEMBLE, ids_inputs(ids, np.ones_like(ids))))
    assert f"above max_tokens {spec.max_tokens}" in message


def test_wrong_dtype(client):
    ids = np.ones((1, 3), dtype=np.int32)
    assert "expects 'INT64'" in rejected(lambda: client.infer(IDS_ENSEMBLE, ids_inputs(ids, ids, "INT32")))


def test_wrong_rank(client):
    ids = np.ones((1, 1, 3), dtype=np.int64)
    assert "unexpected shape" in rejected(lambda: client.infer(IDS_ENSEMBLE, ids_inputs(ids, ids)))


def test_batch_above_max(client):
    message = rejected(lambda: client.infer(TEXT_ENSEMBLE, text_inputs(["x"] * 65)))
    assert "batch-size must be <= 64" in message


def test_unknown_profile(client):
    message = rejected(lambda: client.infer(TEXT_ENSEMBLE, text_inputs(["x"]), parameters=params("no_such")))
    assert "unknown threshold_profile 'no_such'" in message


def test_encoder_called_directly_checks_ids(client, spec):
    ids = np.array([[1, spec.vocab_size]], dtype=np.int64)
    message = rejected(lambda: client.infer(ENCODER_MODEL, ids_inputs(ids, np.ones_like(ids))))
    assert "ids must lie in" in message
