"""Bad input is answered with INVALID_ARGUMENT naming the problem; the server stays ready."""
from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import (
    CALIBRATION_MODEL, ENCODER_MODEL, FLAGGED, IDS_ENSEMBLE, IDS_PREPROCESS_MODEL, SCORES, TEXT, TEXT_ENSEMBLE,
    THRESHOLD_PROFILE_PARAMETER, TOKENIZER_MODEL,
)

from serving_calls import classify_text, ids_inputs, params, rejected, text_inputs

pytestmark = pytest.mark.usefixtures("stays_ready")


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
    assert f"id {spec.vocab_size} at row 0, column 1 is outside [0, {spec.vocab_size})" in message


# --- request parameters: ours (threshold_profile, a string) and Triton's own; anything else refused ------------
@pytest.mark.parametrize("model", [TEXT_ENSEMBLE, IDS_ENSEMBLE])
@pytest.mark.parametrize("key", ["thresholdProfile", "threshold-profile", "Threshold_Profile", "profile",
                                 "profiles_file", "p" * 5000])
def test_unknown_request_parameter_is_refused(client, model, key):
    inputs = text_inputs(["x"]) if model == TEXT_ENSEMBLE else ids_inputs(_ids([[1, 2]]), _ids([[1, 1]]))
    message = rejected(lambda: client.infer(model, inputs, parameters={key: "nothing"}))
    assert f"unknown request parameter {key[:64]!r}" in message and "accepted: threshold_profile" in message
    assert len(message) < 400  # a long name is cut: gRPC drops an error message above 8 KiB


@pytest.mark.parametrize("value", [1, True, 2.5, "x"])
def test_unknown_request_parameter_of_any_type_is_refused(client, value):
    message = rejected(lambda: client.infer(TEXT_ENSEMBLE, text_inputs(["x"]),
                                            parameters={THRESHOLD_PROFILE_PARAMETER: "nothing", "max_tokens": value}))
    assert "unknown request parameter 'max_tokens'" in message


@pytest.mark.parametrize("value, kind", [(7, "int64"), (0, "int64"), (True, "bool"), (False, "bool"),
                                         (1.5, "double"), (0.0, "double")])
def test_threshold_profile_of_wrong_type_is_refused(client, value, kind):
    message = rejected(lambda: client.infer(TEXT_ENSEMBLE, text_inputs(["x"]),
                                            parameters={THRESHOLD_PROFILE_PARAMETER: value}))
    assert f"request parameter 'threshold_profile' must be a string, got {kind}" in message


def test_composing_models_called_directly_check_parameters_too(client, spec):
    logits = grpcclient.InferInput("logits", [1, spec.num_labels], "FP32")
    logits.set_data_from_numpy(np.zeros((1, spec.num_labels), np.float32))
    mask = grpcclient.InferInput("attention_mask", [1, 2], "INT64")
    mask.set_data_from_numpy(np.ones((1, 2), np.int64))
    row = grpcclient.InferInput("text_row", [1, 1], "INT64")
    row.set_data_from_numpy(np.zeros((1, 1), np.int64))
    start = grpcclient.InferInput("window_start", [1, 1], "INT64")
    start.set_data_from_numpy(np.zeros((1, 1), np.int64))
    calibrate = [logits, mask, row, start]
    assert client.infer(CALIBRATION_MODEL, calibrate, parameters=params("nothing")).as_numpy(FLAGGED).tolist() == [[False]]
    assert "unknown request parameter 'profile'" in rejected(
        lambda: client.infer(CALIBRATION_MODEL, calibrate, parameters={"profile": "nothing"}))
    assert "must be a string, got int64" in rejected(
        lambda: client.infer(CALIBRATION_MODEL, calibrate, parameters={THRESHOLD_PROFILE_PARAMETER: 1}))
    for model, inputs in ((TOKENIZER_MODEL, text_inputs(["x"])), (IDS_PREPROCESS_MODEL, ids_inputs(_ids([[1]]), _ids([[1]]))),
                          (ENCODER_MODEL, ids_inputs(_ids([[1]]), _ids([[1]])))):
        assert "unknown request parameter 'x'" in rejected(lambda: client.infer(model, inputs, parameters={"x": 1}))


def test_triton_own_parameters_still_work(client, spec, server):
    """priority and timeout (set by the client library, consumed by Triton), and the two reserved names
    Triton hands through to the models (headers, binary_data_output) are not refused."""
    expected = classify_text(client, ["still serving"], "nothing")
    with_triton = client.infer(TEXT_ENSEMBLE, text_inputs(["still serving"]), parameters=params("nothing"),
                               priority=1, timeout=30_000_000, client_timeout=30)
    assert np.array_equal(with_triton.as_numpy(SCORES), expected[SCORES])
    assert with_triton.as_numpy(FLAGGED).tolist() == [[False]]  # profile "nothing" was applied
    # a timeout of 1 us: the models have no Triton queue policy (encoder_model.queue_settings), so
    # it bounds the wait in the encoder's row scheduler; a batch computed as soon as it arrives is
    # answered. Either way it is honoured, never refused as a parameter.
    for _ in range(20):
        try:
            answered = client.infer(TEXT_ENSEMBLE, text_inputs(["x"] * 64), timeout=1)
            assert answered.as_numpy(SCORES).shape[0] == 64
        except InferenceServerException as error:
            assert error.status() == "StatusCode.UNAVAILABLE" and "Request timeout expired" in error.message()
    # passed through by Triton to every model: accepted whatever their value (raw protobuf request)
    channel = grpc.insecure_channel(server.grpc_url)
    try:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name=TEXT_ENSEMBLE)
        request.inputs.add(name=TEXT, datatype="BYTES", shape=[1, 1])
        request.raw_input_contents.append(struct.pack("<I", 13) + b"still serving")
        request.parameters["headers"].string_param = "x"
        request.parameters["binary_data_output"].bool_param = True
        request.parameters["triton_enable_empty_final_response"].bool_param = False
        request.parameters[THRESHOLD_PROFILE_PARAMETER].string_param = "nothing"
        response = stub.ModelInfer(request, timeout=30)
    finally:
        channel.close()
    scores = response.raw_output_contents[[o.name for o in response.outputs].index(SCORES)]
    assert np.frombuffer(scores, np.float32).tolist() == expected[SCORES][0].tolist()
