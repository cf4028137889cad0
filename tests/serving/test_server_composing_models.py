"""Each composing model enforces the ensembles' limits when called directly (Triton cannot hide
them): the real server answers every bad input INVALID_ARGUMENT naming the problem, never OK,
never INTERNAL, and keeps serving."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from opencc_cm_contract import (
    ATTENTION_MASK, CALIBRATION_MODEL, ENCODER_MODEL, FLAGGED, IDS_PREPROCESS_MODEL, LOGITS, SCORES,
    TEXT_ROW, TOKEN_COUNT, TOKENIZER_MODEL, WINDOW_START,
)

from serving_calls import ids_inputs, rejected, text_inputs

INVALID = "StatusCode.INVALID_ARGUMENT"


def tensors(**arrays) -> list:
    out = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32" if array.dtype == np.float32 else "INT64")
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


pytestmark = pytest.mark.usefixtures("stays_ready")


def rejected_by(client, model, inputs) -> str:
    return rejected(lambda: client.infer(model, inputs))


def calibration_inputs(spec, logits=None, mask=None, text_row=None, window_start=None):
    rows = 3
    logits = np.zeros((rows, spec.num_labels), np.float32) if logits is None else logits
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], np.int64) if mask is None else mask
    text_row = np.arange(rows, dtype=np.int64)[:, None] if text_row is None else text_row
    window_start = np.zeros((rows, 1), np.int64) if window_start is None else window_start
    return tensors(**{LOGITS: logits, ATTENTION_MASK: mask, TEXT_ROW: text_row, WINDOW_START: window_start})


def test_calibration_direct_call_well_formed(client, spec):
    result = client.infer(CALIBRATION_MODEL, calibration_inputs(spec))
    assert result.as_numpy(TOKEN_COUNT).ravel().tolist() == [3, 2, 1]
    assert np.all(result.as_numpy(SCORES) == 0.5) and result.as_numpy(FLAGGED).shape == (3, 1)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_calibration_refuses_non_finite_logits(client, spec, value):
    logits = np.zeros((3, spec.num_labels), np.float32)
    logits[1, 4] = value
    message = rejected_by(client, CALIBRATION_MODEL, calibration_inputs(spec, logits=logits))
    assert "non-finite" in message and "row 1, column 4" in message


@pytest.mark.parametrize("mask, problem", [
    ([[1, 1, 1], [1, 1000, 0], [1, 0, 0]], "values must be 0 or 1, found 1000"),
    ([[1, 1, 1], [1, 1, 0], [-5, 0, 0]], "values must be 0 or 1, found -5"),
    ([[1, 1, 1], [0, 1, 1], [1, 0, 0]], "row 1 is not right padded"),
    ([[1, 1, 1], [1, 1, 0], [0, 0, 0]], "row 2 has no real token"),
])
def test_calibration_checks_the_mask(client, spec, mask, problem):
    assert problem in rejected_by(client, CALIBRATION_MODEL, calibration_inputs(spec, mask=np.array(mask, np.int64)))


@pytest.mark.parametrize("text_row, window_start, problem", [
    ([0, 0, 0], [0, 0, 0], "does not window"),                  # three rows folded into one text
    ([0, 1, 1], [0, 0, 0], "does not window"),
    ([1, 2, 3], [0, 0, 0], "must start at 0"),
    ([0, 2, 3], [0, 0, 0], "increase by 0 or 1"),
    ([0, 1, 2], [0, 5, 0], "first row of text 1 must start at 0"),
])
def test_calibration_checks_text_row_and_window_start(client, spec, text_row, window_start, problem):
    col = lambda v: np.array(v, np.int64)[:, None]  # noqa: E731
    inputs = calibration_inputs(spec, text_row=col(text_row), window_start=col(window_start))
    assert problem in rejected_by(client, CALIBRATION_MODEL, inputs)


def test_calibration_refuses_rows_above_max_tokens(client, spec):
    width = spec.max_tokens + 1
    mask = np.zeros((3, width), np.int64)
    mask[0, :] = 1
    mask[1:, :2] = 1
    assert f"above max_tokens {spec.max_tokens}" in rejected_by(client, CALIBRATION_MODEL, calibration_inputs(spec, mask=mask))


@pytest.mark.parametrize("model", [ENCODER_MODEL, IDS_PREPROCESS_MODEL])
def test_rows_above_max_tokens_refused(client, spec, model):
    ids = np.full((2, spec.max_tokens + 1), 1, np.int64)
    mask = np.ones_like(ids)
    mask[0, 5:] = 0
    message = rejected_by(client, model, ids_inputs(ids, mask))
    assert f"row 1 has {spec.max_tokens + 1} real tokens, above max_tokens {spec.max_tokens}" in message


@pytest.mark.parametrize("model", [ENCODER_MODEL, IDS_PREPROCESS_MODEL])
@pytest.mark.parametrize("ids, mask, problem", [
    ([[1, 2, 10**6]], [[1, 1, 1]], "outside [0,"),
    ([[1, 2, 3]], [[1, 7, 1]], "values must be 0 or 1"),
    ([[1, 2, 3]], [[0, 1, 1]], "not right padded"),
    ([[1, 2, 3]], [[0, 0, 0]], "no real token"),
])
def test_ids_models_check_ids_and_mask(client, model, ids, mask, problem):
    message = rejected_by(client, model, ids_inputs(np.array(ids, np.int64), np.array(mask, np.int64)))
    assert problem in message or (problem == "outside [0," and "must lie in [0," in message)


def test_tokenizer_refuses_text_above_max_tokens(client, spec):
    text = "the model " * spec.max_tokens
    message = rejected_by(client, TOKENIZER_MODEL, text_inputs([text]))
    assert f"above max_tokens {spec.max_tokens}" in message


def test_encoder_direct_call_well_formed(client, spec, reference_logits):
    rows = [[1, 2, 3], [4]]
    ids = np.array([[1, 2, 3], [4, spec.pad_token_id, spec.pad_token_id]], np.int64)
    mask = np.array([[1, 1, 1], [1, 0, 0]], np.int64)
    logits = client.infer(ENCODER_MODEL, ids_inputs(ids, mask)).as_numpy(LOGITS)
    assert np.abs(logits - reference_logits(rows)).max() <= 1e-5


def test_id_tensors_above_max_batch_size_rows_of_max_tokens_are_refused(client, spec):
    """Every model that takes ids or a mask refuses a tensor of more than max_batch_size x
    max_tokens elements (the ingress cap's own figure) before computing anything from it, naming
    the tensor and its shape; one at the limit is still answered."""
    from opencc_cm_contract import DEFAULT_MAX_BATCH_SIZE, IDS_ENSEMBLE
    from opencc_cm_contract.limits import max_id_elements

    limit = max_id_elements(DEFAULT_MAX_BATCH_SIZE, spec.max_tokens)  # the session server's deploy defaults

    def padded(width):
        ids = np.full((1, width), spec.pad_token_id, np.int64)
        ids[0, :3] = [5, 6, 7]
        mask = np.zeros((1, width), np.int64)
        mask[0, :3] = 1
        return ids, mask

    ids, mask = padded(limit)
    assert client.infer(IDS_ENSEMBLE, ids_inputs(ids, mask)).as_numpy(TOKEN_COUNT).ravel().tolist() == [3]
    ids, mask = padded(limit + 1)
    for model in (IDS_ENSEMBLE, IDS_PREPROCESS_MODEL, ENCODER_MODEL):
        message = rejected_by(client, model, ids_inputs(ids, mask))
        assert f"input_ids: shape [1, {limit + 1}] holds {limit + 1} elements, above the {limit}" in message, model
    message = rejected_by(client, CALIBRATION_MODEL, calibration_inputs(
        spec, logits=np.zeros((1, spec.num_labels), np.float32), mask=mask, text_row=np.zeros((1, 1), np.int64),
        window_start=np.zeros((1, 1), np.int64)))
    assert f"attention_mask: shape [1, {limit + 1}] holds {limit + 1} elements" in message
