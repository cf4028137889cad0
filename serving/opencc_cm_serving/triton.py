"""Glue between ``model.py`` files and ``triton_python_backend_utils`` (imported lazily, so
the rest of the package and its tests never need a server; tests stub it in sys.modules).

- ``parameters``: the config's string parameters; any ``${...}`` left unfilled is a ConfigError.
- ``request_parameters``: the request's parameters checked against the contract (unknown name
  or wrong type -> InputError); every Python model calls it on every request.
- ``respond_each``: one response per request, in order; InputError -> INVALID_ARG, anything
  else -> INTERNAL with the traceback logged. One bad request never sinks the others.
"""
from __future__ import annotations

import json
import math
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from opencc_cm_contract import RequestParameterError, check_request_parameters

from .errors import ConfigError, InputError


def pb():
    import triton_python_backend_utils as pb_utils

    return pb_utils


def parameters(model_config: dict) -> dict[str, str]:
    """``parameters {key, value {string_value}}`` of a model config as a plain dict."""
    out = {}
    for key, value in (model_config.get("parameters") or {}).items():
        text = value.get("string_value", "") if isinstance(value, dict) else str(value)
        if "${" in text:
            model = model_config.get("name", "?")
            raise ConfigError(f"{model}: parameter {key!r} holds an unfilled placeholder {text!r}")
        out[key] = text
    return out


def require(params: dict[str, str], key: str, model: str) -> str:
    if key not in params:
        raise ConfigError(f"{model}: config parameter {key!r} is missing")
    return params[key]


def version_path(args: dict, value: str) -> Path:
    """A config path: absolute as given, relative to the model version folder otherwise."""
    path = Path(value)
    return path if path.is_absolute() else Path(args["model_repository"]) / str(args["model_version"]) / path


def input_array(request, name: str, max_elements: int | None = None):
    """The request's input ``name`` as numpy (the array the stub built when it received the
    request). With ``max_elements``, a tensor holding more elements is INVALID_ARG naming it and
    its shape, before the model computes anything from it."""
    tensor = pb().get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InputError(f"missing input tensor {name!r}")
    array = tensor.as_numpy()
    if max_elements is not None:
        check_elements(name, array.shape, max_elements)
    return array


def check_elements(name: str, shape, max_elements: int) -> None:
    """``shape``'s element count, as a Python int (no overflow), at most ``max_elements``."""
    count = math.prod(int(d) for d in shape)
    if count > max_elements:
        raise InputError(f"{name}: shape {[int(d) for d in shape]} holds {count} elements, above the "
                         f"{max_elements} of max_batch_size rows of max_tokens")


def request_parameters(request) -> dict[str, Any]:
    """The request's parameters checked against the contract (``check_request_parameters``):
    ours as ``{name: value}``; an unknown name or a wrong type is an InputError (INVALID_ARG).
    Every Python model calls it on every request, so a direct call to a composing model is
    checked too; in an ensemble the first step refuses before any tokenizing or encoding."""
    raw = request.parameters()
    params = json.loads(raw) if isinstance(raw, str) and raw else (raw or {})
    try:
        return check_request_parameters(params)
    except RequestParameterError as exc:
        raise InputError(str(exc)) from None


def log_error(model: str, what: str, exc: BaseException) -> None:
    """``what`` happened in ``model``, with ``exc``'s traceback, in the server's log."""
    pb().Logger.log_error(f"{model}: {what}: " + "".join(traceback.format_exception(exc)))


def error_response(exc: BaseException, model: str):
    """A response carrying ``exc`` as a TritonError with an explicit code."""
    utils = pb()
    if isinstance(exc, InputError):
        error = utils.TritonError(str(exc), utils.TritonError.INVALID_ARG)
        return utils.InferenceResponse(output_tensors=[], error=error)
    log_error(model, "internal error", exc)
    message = f"{model}: internal error ({type(exc).__name__}: {exc})"
    return utils.InferenceResponse(output_tensors=[], error=utils.TritonError(message, utils.TritonError.INTERNAL))


def outputs_response(outputs: dict[str, Any]):
    utils = pb()
    return utils.InferenceResponse(output_tensors=[utils.Tensor(name, value) for name, value in outputs.items()])


def respond_each(requests: Sequence, handle: Callable[[Any], dict[str, Any]], model: str) -> list:
    """Apply ``handle(request) -> {output name: array}`` to each request independently."""
    responses = []
    for request in requests:
        try:
            responses.append(outputs_response(handle(request)))
        except Exception as exc:  # noqa: BLE001 - every failure becomes that request's error
            responses.append(error_response(exc, model))
    assert len(responses) == len(requests)
    return responses


def unavailable_response(model: str, why: str):
    """UNAVAILABLE for a request the model could not take or finish now (queue full, stopping,
    deadline out of reach): a client may retry it later."""
    utils = pb()
    return utils.InferenceResponse(output_tensors=[], error=utils.TritonError(f"{model}: {why}", utils.TritonError.UNAVAILABLE))


def flag_parameter(params: dict[str, str], key: str, model: str, default: str | None = "0") -> bool:
    """A ``"0"``/``"1"`` config parameter (``default`` None: it must be there); anything else is a
    ConfigError naming it."""
    value = params.get(key, default)
    if value is None:
        raise ConfigError(f"{model}: config parameter {key!r} is missing")
    if value not in ("0", "1"):
        raise ConfigError(f"{model}: {key} must be \"0\" or \"1\", got {value!r}")
    return value == "1"


def cancelled_response(model: str):
    utils = pb()
    return utils.InferenceResponse(
        output_tensors=[], error=utils.TritonError(f"{model}: request cancelled", utils.TritonError.CANCELLED)
    )
