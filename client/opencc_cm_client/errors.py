"""Client exceptions, one per thing a caller may handle differently."""
from __future__ import annotations


class ClassifierError(RuntimeError):
    """Any failure to classify. ``code`` is the gRPC status name (or ``LOCAL`` before any call)."""

    def __init__(self, message: str, code: str = "UNKNOWN"):
        super().__init__(message)
        self.code = code


class InvalidRequestError(ClassifierError):
    """The input is wrong (INVALID_ARGUMENT from the server, INTERNAL "Unable to parse request"
    from its gRPC frontend, or caught locally first). Never retried."""


class UnavailableError(ClassifierError):
    """The server could not be reached or is not ready, after every retry."""


class DeadlineExceededError(ClassifierError):
    """The call's deadline passed."""


class OverloadedError(ClassifierError):
    """The server shed the request (RESOURCE_EXHAUSTED: queue full or queue timeout)."""


# gRPC's answer (INTERNAL) when the server cannot decode the request message at all, e.g. invalid
# UTF-8 in a string field (a parameter key or string value, a model or input name): a client
# mistake reported with a server code; the same bytes fail again, so never retried.
UNPARSABLE_REQUEST = "Unable to parse request"


def from_status(code: str, message: str) -> ClassifierError:
    """The typed error for a gRPC status. Only :class:`UnavailableError` is retried (:func:`next_retry_delay`)."""
    code = code.replace("StatusCode.", "") if code else "UNKNOWN"
    if code == "INTERNAL" and UNPARSABLE_REQUEST in message:
        return InvalidRequestError(f"INTERNAL (the server could not parse the request message: malformed, e.g. "
                                   f"invalid UTF-8 in a parameter key or string value; a client mistake, not "
                                   f"retried): {message}", "INTERNAL")
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


def next_retry_delay(exc, delays) -> tuple[ClassifierError, float | None]:
    """The typed error for a tritonclient exception, and how long to wait before retrying it
    (None: do not retry - not UNAVAILABLE, or the retry budget is spent)."""
    error = from_status(str(exc.status() or ""), exc.message() or str(exc))
    if not isinstance(error, UnavailableError):
        return error, None
    return error, next(delays, None)
