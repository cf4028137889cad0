"""Logits -> scores -> decisions, and the named threshold profiles.

Scores: sigmoid for ``multilabel`` (or a single label), softmax otherwise, computed in
float64 and rounded once to float32. A label fires when ``score >= threshold`` (the fp32
score compared exactly with the float64 threshold); a row is flagged when any label fires.
Profiles are immutable; each request picks one by name, so no request can change another's.
Windowed texts (several encoder rows per text, see ``text_row``) keep the max score per label.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import numpy as np

from opencc_cm_contract import DEFAULT_PROFILE, SIGMOID, activation_for, label_flags

from .errors import InputError


def activate(logits: np.ndarray, objective: str) -> np.ndarray:
    """FP32 scores of ``[rows, labels]`` logits."""
    x = logits.astype(np.float64)
    if activation_for(objective, x.shape[1]) == SIGMOID:
        scores = np.empty_like(x)
        pos = x >= 0
        scores[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
        e = np.exp(x[~pos])
        scores[~pos] = e / (1.0 + e)
    else:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        scores = e / e.sum(axis=1, keepdims=True)
    return scores.astype(np.float32)


def reduce_windows(values: np.ndarray, text_row: np.ndarray, how: str) -> np.ndarray:
    """Fold encoder rows back to request rows: ``max`` or ``sum`` over rows sharing a
    ``text_row``. ``text_row`` must be [rows, 1], start at 0 and step by 0 or 1."""
    rows = text_row.reshape(-1) if text_row.ndim == 2 and text_row.shape[1] == 1 else None
    if rows is None or rows.shape[0] != values.shape[0]:
        raise InputError(f"text_row: expected shape [{values.shape[0]}, 1], got {list(text_row.shape)}")
    steps = np.diff(rows)
    if rows.size == 0 or rows[0] != 0 or ((steps != 0) & (steps != 1)).any():
        raise InputError("text_row: must start at 0 and increase by 0 or 1 per row")
    starts = np.flatnonzero(np.r_[True, steps == 1])
    if len(starts) == len(rows):
        return values
    return (np.maximum if how == "max" else np.add).reduceat(values, starts, axis=0)


def decide(scores: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(label_flags [rows, labels], flagged [rows, 1])`` with the ``>=`` rule.

    A non-finite score raises: ``NaN >= t`` is False, which would silently allow the prompt.
    """
    if not np.isfinite(scores).all():
        rows = sorted(set(np.argwhere(~np.isfinite(scores))[:, 0].tolist()))
        raise FloatingPointError(f"non-finite scores in row(s) {rows[:8]}: refusing to decide (fail closed)")
    flags = label_flags(scores, thresholds)
    return flags, flags.any(axis=1, keepdims=True)


class ThresholdProfiles:
    """Read-only ``name -> thresholds`` (column order); ``default`` is the checkpoint's."""

    def __init__(self, default: tuple[float, ...], extra: Mapping[str, tuple[float, ...]]):
        table = {DEFAULT_PROFILE: default, **extra}
        arrays = {}
        for name, values in table.items():
            arr = np.asarray(values, dtype=np.float64)
            arr.setflags(write=False)
            arrays[name] = arr
        self._table = MappingProxyType(arrays)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._table)

    def select(self, name: str | None) -> np.ndarray:
        """Thresholds of profile ``name`` (None -> default); InputError if unknown."""
        key = DEFAULT_PROFILE if name is None else name
        try:
            return self._table[key]
        except (KeyError, TypeError):
            # Echo at most 64 characters: gRPC drops an error whose message passes 8 KiB, and the
            # client would see RESOURCE_EXHAUSTED ("metadata size exceeds") instead of this error.
            shown = repr(name) if not isinstance(name, str) or len(name) <= 64 else \
                f"{name[:64]!r}... ({len(name)} characters)"
            raise InputError(
                f"unknown threshold_profile {shown} (known: {', '.join(self._table)})"
            ) from None
