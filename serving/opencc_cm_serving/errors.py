"""The two kinds of failure the serving code distinguishes."""
from __future__ import annotations


# A request the client must fix: models answer it with ``TritonError.INVALID_ARG``, the
# message naming the tensor, the row and the problem. One class shared with the client's
# text rules, so a text rejected by either side is the same error.
from opencc_cm_contract.text_rules import InputError  # noqa: E402,F401


class ConfigError(RuntimeError):
    """A deployment mistake (bad bundle, unfilled ``${...}`` placeholder, bad profile file).
    Raised at deploy time or in ``initialize``: the model must not load."""
