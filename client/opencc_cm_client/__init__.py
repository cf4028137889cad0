"""Client library for the opencc-cm-escalation content-moderation classifier on Triton.

``ClassifierClient`` (sync) and ``AsyncClassifierClient`` (asyncio) return
:class:`Classification` results; ``client.gate(text)`` is the fail-closed helper for gates.
Needs numpy, tritonclient[grpc], protobuf and tokenizers only (no torch).
"""
from .errors import (ClassifierError, DeadlineExceededError, InvalidRequestError, OverloadedError,
                     UnavailableError)
from .options import ConnectionOptions, RetryPolicy
from .results import Classification, GateDecision, LabelResult, results_table
from .server_info import ServerContractError, ServerInfo


def __getattr__(name):  # keep `import opencc_cm_client` cheap; load gRPC on first use
    if name == "ClassifierClient":
        from .client import ClassifierClient
        return ClassifierClient
    if name == "AsyncClassifierClient":
        from .aio import AsyncClassifierClient
        return AsyncClassifierClient
    raise AttributeError(name)


__all__ = ["ClassifierClient", "AsyncClassifierClient", "Classification", "LabelResult", "GateDecision",
           "ConnectionOptions", "RetryPolicy", "ClassifierError", "InvalidRequestError", "UnavailableError",
           "DeadlineExceededError", "OverloadedError", "ServerContractError", "ServerInfo", "results_table"]
