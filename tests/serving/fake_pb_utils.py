"""A stand-in for ``triton_python_backend_utils`` so model.py files run without a server.

``install()`` puts it in ``sys.modules``; ``load_model(path)`` imports a model.py; ``Request``
carries numpy inputs and JSON parameters like a real InferenceRequest.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import threading
import types
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tensor:
    _name: str
    _array: np.ndarray

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


@dataclass
class TritonError:
    message: str
    code: int = 0
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)


@dataclass
class InferenceResponse:
    output_tensors: list = field(default_factory=list)
    error: TritonError | None = None

    def output(self, name: str) -> np.ndarray:
        return next(t.as_numpy() for t in self.output_tensors if t.name() == name)


TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


class ResponseSender:
    """Collects what a model sends for one request; ``wait()`` returns the final response."""

    def __init__(self):
        self.sent: list = []
        self.done = threading.Event()

    def send(self, response=None, flags=0):
        self.sent.append(response)
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self.done.set()

    def wait(self, timeout: float = 10.0):
        assert self.done.wait(timeout), "no final response"
        assert len(self.sent) == 1, f"{len(self.sent)} responses for one request"
        return self.sent[0]


@dataclass
class Request:
    inputs: dict
    params: dict = field(default_factory=dict)
    cancelled: bool = False
    timeout_us: int = 0
    sender: ResponseSender = field(default_factory=ResponseSender)
    requested_outputs: tuple = ()  # an ensemble step asks for its output_map; a direct call may ask for none

    def parameters(self) -> str:
        return json.dumps(self.params)

    def requested_output_names(self) -> list[str]:
        return list(self.requested_outputs)

    def is_cancelled(self) -> bool:
        return self.cancelled

    def timeout(self) -> int:
        return self.timeout_us

    def get_response_sender(self) -> ResponseSender:
        return self.sender


class Logger:
    messages: list = []

    @classmethod
    def log_info(cls, msg):
        cls.messages.append(("info", msg))

    @classmethod
    def log_error(cls, msg):
        cls.messages.append(("error", msg))

    log_warn = log_verbose = log_info


class MetricFamily:
    """Custom metrics: records increments per (family, labels) in ``MetricFamily.values``."""

    COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
    values: dict = {}

    def __init__(self, name, description, kind):
        self.name = name

    def Metric(self, labels):  # noqa: N802 - the backend's spelling
        family, key = self.name, tuple(sorted(labels.items()))

        class _Metric:
            def increment(self, value):
                MetricFamily.values[(family, key)] = MetricFamily.values.get((family, key), 0) + value

        return _Metric()


def get_input_tensor_by_name(request: Request, name: str):
    return Tensor(name, request.inputs[name]) if name in request.inputs else None


def install() -> types.ModuleType:
    module = sys.modules[__name__]
    sys.modules["triton_python_backend_utils"] = module
    return module


def load_model(path, name: str):
    install()
    spec = importlib.util.spec_from_file_location(f"model_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel()


def args_for(repo, model: str, config_text: str | None = None) -> dict:
    """``initialize`` args for a deployed model, config as JSON (from the generated pbtxt)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    text = config_text if config_text is not None else (repo / model / "config.pbtxt").read_text()
    config = json_format.MessageToDict(text_format.Parse(text, model_config_pb2.ModelConfig()),
                                       preserving_proto_field_name=True)
    return {"model_config": json.dumps(config), "model_repository": str(repo / model), "model_version": "1",
            "model_name": model}
