"""What the server answered for one call, and how it becomes typed results (pure, no I/O):
shapes and values checked against what the server published, never reported as a verdict
when they do not fit."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opencc_cm_contract import FLAGGED, LABEL_FLAGS, SCORES, TOKEN_COUNT

from .calls import OUTPUTS
from .results import Classification, LabelResult
from .server_info import ServerContractError, ServerInfo


@dataclass(frozen=True)
class Answer:
    """What the server returned for one call: the output tensors by name, and the model version."""

    outputs: dict[str, np.ndarray]
    version: str


def answer_of(result) -> Answer:
    """An ``InferResult`` (sync or aio) as plain arrays."""
    return Answer({name: result.as_numpy(name) for name in OUTPUTS}, result.get_response().model_version)


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
