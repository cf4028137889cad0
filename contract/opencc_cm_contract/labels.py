"""Labels, their aliases, thresholds and the decision rule: one home for each.

- Labels of the 11-way head in column order (reference ``HARM_CATEGORIES``) and the aliases the
  model card and BELLS-O use.
- The threshold-object rule (``resolve_label_thresholds``) used by the checkpoint loader, the
  deploy bundle and threshold-profile files.
- The objective -> activation rule (``activation_for``) used by the export, the server's
  calibration and the benchmarks; and the decision rule ``score >= threshold``.
"""
from __future__ import annotations

# --- Labels of the 11-way multilabel head, in output column order (reference HARM_CATEGORIES).
HARM_CATEGORIES: tuple[str, ...] = (
    "CBRN",
    "Cyber",
    "Harm to Minors",
    "Harmful Manipulation",
    "Hate Speech",
    "Illegal Activities",
    "Information Integrity",
    "Physical Harm",
    "Privacy",
    "Self-Harm",
    "Sexual Content",
)
JAILBREAK_LABELS: tuple[str, ...] = ("jailbreak",)

# The model card and BELLS-O call the 7th category by another name; both mean the same column.
LABEL_ALIASES: dict[str, str] = {
    "Integrity & Quality violations": "Information Integrity",
}


def canonical_label(name: str) -> str:
    """The column name a label (or one of its aliases) refers to."""
    return LABEL_ALIASES.get(name, name)


class ThresholdMappingError(ValueError):
    """A ``{label: threshold}`` object that is not exactly one value in [0, 1] per label.

    ``key`` is where the problem is, e.g. ``thresholds.CBRN`` (or ``thresholds`` for the whole
    object); callers re-raise it with the file or profile it came from."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def threshold_value(value, key: str = "threshold") -> float:
    """One threshold: a finite number in [0, 1] (a bool or a string is refused, not coerced)."""
    # the range test also refuses NaN and inf, and never converts a huge JSON integer to float
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ThresholdMappingError(key, f"threshold must be a number in [0, 1], got {value!r}")
    return float(value)


def resolve_label_thresholds(mapping, labels) -> dict:
    """Map a ``{label or alias: threshold}`` object onto ``labels`` (column order), strictly:
    every label exactly once (an alias counts as its canonical label), no unknown label, each
    value a finite number in [0, 1] (not a bool, not a string). The checkpoint loader, the
    deploy bundle and threshold-profile files all go through this one rule."""
    if not isinstance(mapping, dict):
        raise ThresholdMappingError("thresholds", "expected an object label -> threshold")
    resolved: dict = {}
    for name, value in mapping.items():
        key = f"thresholds.{name}"
        label = canonical_label(name)
        if label not in labels:
            raise ThresholdMappingError(key, f"unknown label (labels are: {', '.join(labels)})")
        if label in resolved:
            raise ThresholdMappingError(key, f"label {label!r} given more than once (aliases count as their label)")
        resolved[label] = threshold_value(value, key)
    missing = [label for label in labels if label not in resolved]
    if missing:
        raise ThresholdMappingError("thresholds", f"missing thresholds for label(s): {', '.join(missing)}")
    return {label: resolved[label] for label in labels}


def label_flags(scores, thresholds):
    """The decision rule, in one place: a label fires when ``score >= threshold``.

    ``scores`` [rows, labels] (fp32) are compared in float64 with the thresholds, as the
    reference compares a Python float score with a Python float threshold; a threshold is
    never rounded to fp32 first.
    """
    import numpy as np

    return np.asarray(scores).astype(np.float64) >= np.asarray(thresholds, dtype=np.float64)[None, :]


# --- Objective -> activation (the reference: sigmoid for multilabel and single-logit heads).
OBJECTIVES = ("multilabel", "softmax", "binary")  # binary: the sibling jailbreak head
SIGMOID, SOFTMAX = "sigmoid", "softmax"


def activation_for(objective: str, num_labels: int) -> str:
    """``sigmoid`` for ``multilabel``/``binary`` objectives and single-logit heads, else ``softmax``."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return SIGMOID if objective in ("multilabel", "binary") or num_labels == 1 else SOFTMAX
