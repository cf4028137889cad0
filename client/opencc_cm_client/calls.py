"""Building the Triton requests: what one call sends (ensemble, named inputs, parameters, deadline)
and the ``infer`` arguments both the sync and the asyncio client pass (pure, no I/O)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from opencc_cm_contract import (ATTENTION_MASK, FLAGGED, INPUT_IDS, LABEL_FLAGS, SCORES, TEXT, TEXT_ENSEMBLE,
                                THRESHOLD_PROFILE_PARAMETER, TOKEN_COUNT)
from opencc_cm_contract.text_rules import InputError, check_token_count, pad_right

from .errors import InvalidRequestError
from .server_info import ServerInfo

OUTPUTS = (SCORES, LABEL_FLAGS, FLAGGED, TOKEN_COUNT)


@dataclass(frozen=True)
class PreparedCall:
    """One Triton request: which ensemble, its named numpy inputs, how many prompts it holds."""

    model: str
    inputs: dict[str, np.ndarray]
    rows: int


def server_timeout_us(timeout_s: float | None) -> int | None:
    """The client's deadline as the request's ``timeout`` (microseconds): Triton drops a request
    still queued after it, and the encoder does not compute it; ensembles pass it on to their
    models, which they do not do for the gRPC cancellation itself (Triton 2.51)."""
    return int(timeout_s * 1e6) if timeout_s else None


def text_call(texts: Sequence[str], model: str = TEXT_ENSEMBLE) -> PreparedCall:
    """A call of the text ensemble ``model`` (``<prefix>classify_text`` for a prefixed classifier)."""
    data = np.array([[t.encode("utf-8") if isinstance(t, str) else bytes(t)] for t in texts], dtype=np.object_)
    return PreparedCall(model, {TEXT: data}, len(texts))


def ids_call(rows: Sequence[Sequence[int]], info: ServerInfo, positions: Sequence[int] | None = None) -> PreparedCall:
    """Right-padded ids + mask; rejects locally what the server would reject, naming the input
    index (``positions[i]`` for row ``i``; default the row's own index)."""
    where = list(range(len(rows))) if positions is None else list(positions)
    for i, row in zip(where, rows):
        try:
            check_token_count(row, f"text[{i}]", info.max_tokens)
        except InputError as exc:
            raise InvalidRequestError(str(exc), "LOCAL") from None
        bad = [t for t in row if not 0 <= t < info.vocab_size]
        if bad:
            raise InvalidRequestError(f"text[{i}]: token id {bad[0]} outside [0, {info.vocab_size})", "LOCAL")
    ids, mask = pad_right(rows, info.pad_token_id)
    return PreparedCall(info.model_name, {INPUT_IDS: ids, ATTENTION_MASK: mask}, len(rows))


def request_parameters(profile: str) -> dict[str, str]:
    return {THRESHOLD_PROFILE_PARAMETER: profile}


def infer_arguments(call: PreparedCall, options, profile: str, input_cls, output_cls) -> tuple[list, dict]:
    """The ``InferInput``s of a prepared call and the keyword arguments of ``infer`` (the same for
    ``tritonclient.grpc`` and ``tritonclient.grpc.aio``, whose tensor classes are shared)."""
    inputs = []
    for name, array in call.inputs.items():
        tensor = input_cls(name, list(array.shape), "BYTES" if array.dtype == np.object_ else "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs, dict(outputs=[output_cls(name) for name in OUTPUTS], headers=options.headers,
                        parameters=request_parameters(profile), client_timeout=options.timeout_s,
                        timeout=server_timeout_us(options.timeout_s), compression_algorithm=options.compression)
