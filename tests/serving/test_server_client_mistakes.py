"""Client mistakes that Triton's gRPC frontend answers with a server code (INTERNAL), against the
real server: our client must report them as the caller's mistake and send them once (a client
that retries INTERNAL loops on them), and the server keeps serving."""
from __future__ import annotations

import grpc
import pytest
from tritonclient.grpc import service_pb2
from tritonclient.grpc._utils import get_error_grpc

from opencc_cm_client.client import ClassifierClient
from opencc_cm_client.errors import InvalidRequestError
from opencc_cm_client.options import ConnectionOptions, RetryPolicy
from opencc_cm_contract import SCORES, TEXT_ENSEMBLE, THRESHOLD_PROFILE_PARAMETER

from serving_calls import classify_text, text_inputs

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def request_bytes(parameter_key: bytes) -> bytes:
    """A serialized ModelInferRequest of one text for ``classify_text`` with the request parameter
    ``parameter_key`` (raw bytes: protobuf's Python API refuses invalid UTF-8, the wire does not)."""
    placeholder = "k" * len(parameter_key)
    request = service_pb2.ModelInferRequest(model_name=TEXT_ENSEMBLE)
    request.parameters[placeholder].string_param = "default"
    tensor = text_inputs(["hello"])[0]
    request.inputs.extend([tensor._get_tensor()])
    request.raw_input_contents.extend([tensor._get_content()])
    wire = request.SerializeToString()
    assert wire.count(placeholder.encode()) == 1
    return wire.replace(placeholder.encode(), parameter_key)


@pytest.mark.parametrize("key, status, words", [
    (b"threshold_profil\xff", "INTERNAL", "Unable to parse request"),          # gRPC cannot decode it
    (b"threshold_profilx", "INVALID_ARGUMENT", "unknown request parameter"),   # the models refuse it
])
def test_a_mistaken_parameter_key_is_an_invalid_request_sent_once(server, client, spec, key, status, words):
    options = ConnectionOptions(retry=RetryPolicy(attempts=4, initial_backoff_s=0.01, max_backoff_s=0.01))
    sent = []
    with grpc.insecure_channel(server.grpc_url, options=options.channel_args()) as channel:
        model_infer = channel.unary_unary(MODEL_INFER, request_serializer=lambda b: b,
                                          response_deserializer=service_pb2.ModelInferResponse.FromString)

        def call():
            sent.append(1)
            try:
                return model_infer(request_bytes(key), timeout=10)
            except grpc.RpcError as exc:
                raise get_error_grpc(exc) from None  # what tritonclient raises for a failed call

        with ClassifierClient(server.grpc_url, options=options) as ours:
            with pytest.raises(InvalidRequestError) as error:
                ours._with_retries(call)  # the retry loop every call of the client goes through
            assert ours.retries == 0
    print(f"\n[client mistake] key {key!r}: {error.value.code}: {error.value}")
    assert len(sent) == 1 and error.value.code == status and words in str(error.value)
    if status == "INTERNAL":
        assert "client mistake" in str(error.value)
    assert client.is_server_ready()
    assert classify_text(client, ["still serving"], profile="default")[SCORES].shape == (1, spec.num_labels)
    assert THRESHOLD_PROFILE_PARAMETER.startswith(key[:16].decode())


@pytest.mark.parametrize("parameters, words", [
    ({THRESHOLD_PROFILE_PARAMETER: float("nan")}, "must be a string, got double"),
    ({THRESHOLD_PROFILE_PARAMETER: float("inf")}, "must be a string, got double"),
    ({"thre\x00shold_profile": "default"}, "unknown request parameter 'thre'"),  # Triton cuts keys at NUL
])
def test_parameter_mistakes_that_reach_the_models_are_invalid_argument(client, parameters, words):
    """What proto/CLIENT_CONTRACT.md promises: the models answer these INVALID_ARGUMENT, never INTERNAL."""
    from tritonclient.utils import InferenceServerException

    from opencc_cm_client.errors import from_status

    with pytest.raises(InferenceServerException) as refused:
        client.infer(TEXT_ENSEMBLE, text_inputs(["hello"]), parameters=parameters)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT" and words in refused.value.message()
    assert isinstance(from_status(refused.value.status(), refused.value.message()), InvalidRequestError)
