"""Pure request building and result parsing, shared by the sync and asyncio clients."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from opencc_cm_contract import (ATTENTION_MASK, FLAGGED, INPUT_IDS, LABEL_FLAGS, SCORES, TEXT,
                       TEXT_ENSEMBLE, THRESHOLD_PROFILE_PARAMETER, TOKEN_COUNT)
from .errors import ClassifierError, InvalidRequestError, UnavailableError, from_status
from .results import Classification, LabelResult
from .server_info import ServerContractError, ServerInfo
from opencc_cm_contract.text_rules import (InputError, check_token_count, decode_text, encode_texts, load_tokenizer, pad_right,
                                           set_special_tokens_mode, tokenizer_sha256)

OUTPUTS = (SCORES, LABEL_FLAGS, FLAGGED, TOKEN_COUNT)


@dataclass(frozen=True)
class PreparedCall:
    """One Triton request: which ensemble, its named numpy inputs, how many prompts it holds."""

    model: str
    inputs: dict[str, np.ndarray]
    rows: int


class TokenizerFileError(ValueError):
    """The local ``tokenizer.json`` cannot be read or is not a tokenizer; names the file."""


class LocalTokenizer:
    """The model's own ``tokenizer.json``, applied with the server's rules (``text_rules``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.sha256 = tokenizer_sha256(self.path)
            self.tokenizer = load_tokenizer(self.path)
        except OSError as exc:
            raise TokenizerFileError(f"tokenizer {self.path}: cannot read: {exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001 - `tokenizers` raises bare Exception for a bad file
            raise TokenizerFileError(f"tokenizer {self.path}: not a tokenizer.json: {exc}") from None

    def check_matches(self, info: ServerInfo) -> None:
        if info.tokenizer_sha256 != self.sha256:
            raise ServerContractError(
                f"local tokenizer {self.path} (sha256 {self.sha256[:12]}) is not the server's "
                f"(sha256 {info.tokenizer_sha256[:12]}, checkpoint {info.checkpoint}); ids would differ")
        set_special_tokens_mode(self.tokenizer, info.special_tokens)  # follow the server's choice

    def encode(self, texts: Sequence[str], offset: int = 0) -> list[list[int]]:
        try:
            decoded = [decode_text(t, f"text[{offset + i}]") for i, t in enumerate(texts)]
        except InputError as exc:
            raise InvalidRequestError(str(exc), "LOCAL") from None
        return encode_texts(self.tokenizer, decoded)


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


def parse_outputs(outputs: dict[str, np.ndarray], info: ServerInfo, profile: str, model: str,
                  version: str, rows: int) -> list[Classification]:
    scores, flags = outputs[SCORES], outputs[LABEL_FLAGS]
    flagged, tokens = outputs[FLAGGED].reshape(-1), outputs[TOKEN_COUNT].reshape(-1)
    if scores.shape != (rows, len(info.labels)) or flags.shape != scores.shape or len(flagged) != rows:
        raise ServerContractError(f"{model} answered scores {scores.shape}, flags {flags.shape} for {rows} prompts "
                                  f"and {len(info.labels)} labels")
    if not np.isfinite(scores).all():
        raise ServerContractError(f"{model} answered non-finite scores: refusing to report them as a verdict")
    thresholds = info.thresholds(profile)
    results = []
    for r in range(rows):
        labels = tuple(LabelResult(label, float(scores[r, j]), thresholds[j], bool(flags[r, j]))
                       for j, label in enumerate(info.labels))
        if bool(flagged[r]) != any(x.fired for x in labels):
            raise ServerContractError(f"{model}: row {r} flagged={bool(flagged[r])} disagrees with its label flags")
        results.append(Classification(labels, bool(flagged[r]), int(tokens[r]), model, version, profile))
    return results


def next_retry_delay(exc, delays) -> tuple[ClassifierError, float | None]:
    """The typed error for a tritonclient exception, and how long to wait before retrying it
    (None: do not retry - not UNAVAILABLE, or the retry budget is spent)."""
    error = from_status(str(exc.status() or ""), exc.message() or str(exc))
    if not isinstance(error, UnavailableError):
        return error, None
    return error, next(delays, None)


def accept_server_info(model: str, config: dict, meta: dict, expected_version: str | None, profile: str,
                       local_tokenizer: LocalTokenizer | None) -> ServerInfo:
    """Check what the server published against this client's expectations."""
    versions = meta.get("versions", [])
    if expected_version and expected_version not in versions:
        raise ClassifierError(f"{model}: server has versions {versions}, this client expects {expected_version}",
                              "VERSION_MISMATCH")
    info = ServerInfo.from_model_config(config, versions[-1] if versions else "")
    info.thresholds(profile)  # an unknown profile fails before any inference call
    if local_tokenizer is not None:
        local_tokenizer.check_matches(info)
    return info


@dataclass(frozen=True)
class Answer:
    """What the server returned for one call: the output tensors by name, and the model version."""

    outputs: dict[str, np.ndarray]
    version: str


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


def answer_of(result) -> Answer:
    """An ``InferResult`` (sync or aio) as plain arrays."""
    return Answer({name: result.as_numpy(name) for name in OUTPUTS}, result.get_response().model_version)
