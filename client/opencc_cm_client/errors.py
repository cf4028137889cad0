"""Client exceptions, one per thing a caller may handle differently."""
from __future__ import annotations


class ClassifierError(RuntimeError):
    """Any failure to classify. ``code`` is the gRPC status name (or ``LOCAL`` before any call)."""

    def __init__(self, message: str, code: str = "UNKNOWN"):
        super().__init__(message)
        self.code = code


class InvalidRequestError(ClassifierError):
    """The input is wrong (INVALID_ARGUMENT from the server, or caught locally first)."""


class UnavailableError(ClassifierError):
    """The server could not be reached or is not ready, after every retry."""


class DeadlineExceededError(ClassifierError):
    """The call's deadline passed."""


class OverloadedError(ClassifierError):
    """The server shed the request (RESOURCE_EXHAUSTED: queue full or queue timeout)."""


def from_status(code: str, message: str) -> ClassifierError:
    code = code.replace("StatusCode.", "") if code else "UNKNOWN"
    if code == "UNAVAILABLE" and "Exceeds maximum queue size" in message:
        # Triton's queue-full answer: overload, shed on purpose; retrying would add load.
        return OverloadedError(f"RESOURCE_EXHAUSTED (queue full): {message}", "RESOURCE_EXHAUSTED")
    if code == "NOT_FOUND" and "has no available versions" in message:
        # Triton says this while a known model is (re)loading, e.g. right after a restart:
        # a transient state, retried like UNAVAILABLE.
        return UnavailableError(f"UNAVAILABLE (model loading): {message}", "UNAVAILABLE")
    if code == "CANCELLED":
        # This library never cancels a call itself (a deadline is DEADLINE_EXCEEDED; an asyncio
        # task cancelled by the caller raises CancelledError, not a status), so CANCELLED is the
        # server or the transport dropping the call - Triton does so to calls in flight while it
        # stops. Classification has no side effects: retried like UNAVAILABLE.
        return UnavailableError(f"UNAVAILABLE (call cancelled by the server): {message}", "UNAVAILABLE")
    cls = {"INVALID_ARGUMENT": InvalidRequestError, "UNAVAILABLE": UnavailableError,
           "DEADLINE_EXCEEDED": DeadlineExceededError, "RESOURCE_EXHAUSTED": OverloadedError}.get(code, ClassifierError)
    return cls(f"{code}: {message}", code)
