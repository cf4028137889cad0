"""Pure request building and result parsing, shared by the sync and asyncio clients."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from opencc_cm_contract import (ATTENTION_MASK, FLAGGED, IDS_ENSEMBLE, INPUT_IDS, LABEL_FLAGS, SCORES, TEXT,
                       TEXT_ENSEMBLE, THRESHOLD_PROFILE_PARAMETER, TOKEN_COUNT)
from .errors import ClassifierError, InvalidRequestError, UnavailableError, from_status
from .results import Classification, LabelResult
from .server_info import ServerContractError, ServerInfo
from opencc_cm_contract.text_rules import (InputError, check_token_count, decode_text, encode_texts, load_tokenizer, pad_right,
                         tokenizer_sha256)

OUTPUTS = (SCORES, LABEL_FLAGS, FLAGGED, TOKEN_COUNT)


@dataclass(frozen=True)
class PreparedCall:
    """One Triton request: which ensemble, its named numpy inputs, how many prompts it holds."""

    model: str
    inputs: dict[str, np.ndarray]
    rows: int


class LocalTokenizer:
    """The model's own ``tokenizer.json``, applied with the server's rules (``text_rules``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tokenizer = load_tokenizer(self.path)
        self.sha256 = tokenizer_sha256(self.path)

    def check_matches(self, info: ServerInfo) -> None:
        if info.tokenizer_sha256 != self.sha256:
            raise ServerContractError(
                f"local tokenizer {self.path} (sha256 {self.sha256[:12]}) is not the server's "
                f"(sha256 {info.tokenizer_sha256[:12]}, checkpoint {info.checkpoint}); ids would differ")

    def encode(self, texts: Sequence[str], offset: int = 0) -> list[list[int]]:
        try:
            decoded = [decode_text(t, f"text[{offset + i}]") for i, t in enumerate(texts)]
        except InputError as exc:
            raise InvalidRequestError(str(exc), "LOCAL") from None
        return encode_texts(self.tokenizer, decoded)


def text_call(texts: Sequence[str]) -> PreparedCall:
    data = np.array([[t.encode("utf-8") if isinstance(t, str) else bytes(t)] for t in texts], dtype=np.object_)
    return PreparedCall(TEXT_ENSEMBLE, {TEXT: data}, len(texts))


def ids_call(rows: Sequence[Sequence[int]], info: ServerInfo, offset: int = 0) -> PreparedCall:
    """Right-padded ids + mask; rejects locally what the server would reject."""
    for i, row in enumerate(rows):
        try:
            check_token_count(row, f"text[{offset + i}]", info.max_tokens)
        except InputError as exc:
            raise InvalidRequestError(str(exc), "LOCAL") from None
        bad = [t for t in row if not 0 <= t < info.vocab_size]
        if bad:
            raise InvalidRequestError(f"text[{offset + i}]: token id {bad[0]} outside [0, {info.vocab_size})", "LOCAL")
    ids, mask = pad_right(rows, info.pad_token_id)
    return PreparedCall(IDS_ENSEMBLE, {INPUT_IDS: ids, ATTENTION_MASK: mask}, len(rows))


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


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]


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


def infer_tensors(call: PreparedCall, input_cls, output_cls) -> tuple[list, list]:
    """``InferInput``s for a prepared call and the requested outputs (sync and aio share the classes)."""
    inputs = []
    for name, array in call.inputs.items():
        tensor = input_cls(name, list(array.shape), "BYTES" if array.dtype == np.object_ else "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs, [output_cls(name) for name in OUTPUTS]
