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
from opencc_cm_contract.limits import LONG_INPUT_POLICIES, WINDOWS

from .bundle import load_profiles
from .errors import ConfigError, InputError
from .triton import require, version_path


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


def fold_plan(lengths: np.ndarray, text_row: np.ndarray, window_start: np.ndarray, max_tokens: int,
              window_step: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Check the row bookkeeping calibration receives and return ``(first row of each text,
    each text's own token count [texts, 1])``.

    ``lengths``: real tokens per row. ``text_row`` / ``window_start`` ([rows, 1]): the text a
    row came from and the offset of its first token there. Accepted only as the tokenizer
    makes them: ``text_row`` starts at 0 and steps by 0 or 1; every row has at most
    ``max_tokens`` tokens; a text's first row starts at 0; with ``window_step`` None
    (long_input_policy reject) one row per text; else the rows of a text of several rows
    are windows of exactly ``max_tokens`` tokens whose starts increase by 1 to
    ``window_step`` (= max_tokens - window_overlap). The text's token count is where its
    last window ends: overlapping tokens are counted once.
    """
    n = lengths.shape[0]
    columns = []
    for name, value in (("text_row", text_row), ("window_start", window_start)):
        if value.ndim != 2 or value.shape != (n, 1):
            raise InputError(f"{name}: expected shape [{n}, 1], got {list(value.shape)}")
        columns.append(value.reshape(-1).astype(np.int64))
    rows, starts = columns
    steps = np.diff(rows)
    if n == 0 or rows[0] != 0 or ((steps != 0) & (steps != 1)).any():
        raise InputError("text_row: must start at 0 and increase by 0 or 1 per row")
    long = np.flatnonzero(lengths > max_tokens)
    if long.size:
        raise InputError(f"attention_mask: row {long[0]} has {lengths[long[0]]} real tokens, above max_tokens {max_tokens}")
    first = np.flatnonzero(np.r_[True, steps == 1])
    if (starts[first] != 0).any():
        raise InputError(f"window_start: the first row of text {int(np.flatnonzero(starts[first])[0])} must start at 0")
    same = np.flatnonzero(steps == 0) + 1  # rows continuing the text of the row before
    if same.size:
        if window_step is None:
            raise InputError(f"text_row: rows {same[0] - 1} and {same[0]} belong to one text, but this server "
                             "does not window (long_input_policy reject)")
        multi = np.isin(rows, rows[same])
        short = np.flatnonzero(multi & (lengths != max_tokens))
        if short.size:
            raise InputError(f"attention_mask: row {short[0]} is a window of {lengths[short[0]]} tokens; "
                             f"windows of a long text have exactly {max_tokens}")
        step = starts[same] - starts[same - 1]
        bad = np.flatnonzero((step < 1) | (step > window_step))
        if bad.size:
            raise InputError(f"window_start: row {same[bad[0]]} starts {step[bad[0]]} tokens after the window before "
                             f"(expected 1 to {window_step})")
    last = np.r_[first[1:], n] - 1
    return first, (starts[last] + lengths[last]).astype(np.int64)[:, None]


def fold_max(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Max over the rows of each text (``first``: index of each text's first row)."""
    return values if len(first) == values.shape[0] else np.maximum.reduceat(values, first, axis=0)


def check_finite_logits(logits: np.ndarray, name: str = "logits") -> None:
    """NaN or +-inf logits would turn into scores 0, 1 or NaN and a silent decision: refused."""
    bad = ~np.isfinite(logits)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{name}: non-finite value {logits[r, c]} at row {r}, column {c}")


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


def calibration_settings(args: dict, params: dict[str, str], spec, model: str) -> tuple[ThresholdProfiles, int | None]:
    """What a calibrating model (``calibration``, or the Python-backend encoder with calibration
    folded in) reads from its config at ``initialize``: the threshold profiles (the checkpoint's
    ``default`` + ``profiles_file``) and the window step (``max_tokens - window_overlap`` under
    ``long_input_policy`` windows, None under reject). ConfigError naming ``model`` otherwise;
    the decision rule is run once so that a broken profile fails the load, not a request."""
    profiles_file = require(params, "profiles_file", model)
    extra = load_profiles(version_path(args, profiles_file), spec.labels) if profiles_file else {}
    profiles = ThresholdProfiles(spec.thresholds, extra)
    policy = require(params, "long_input_policy", model)
    overlap = int(require(params, "window_overlap", model))
    if policy not in LONG_INPUT_POLICIES or not 0 <= overlap < spec.max_tokens:
        raise ConfigError(f"{model}: long_input_policy {policy!r} / window_overlap {overlap}")
    decide(activate(np.zeros((1, spec.num_labels), np.float32), spec.objective), profiles.select(None))
    return profiles, (spec.max_tokens - overlap if policy == WINDOWS else None)
