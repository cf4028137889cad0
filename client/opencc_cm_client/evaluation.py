"""The model card's evaluation and a recalibration, as pure functions over labeled results.

Data: JSONL or CSV rows with ``text`` and ``category``; ``Benign`` marks negatives. A prompt
counts as detected when it is flagged (any label fired), as in the model card's table.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from opencc_cm_contract import canonical_label, label_flags
from .results import Classification

BENIGN = "Benign"


@dataclass(frozen=True)
class Sample:
    text: str
    category: str | None  # None: an unlabeled text (calibration against a reference deployment)

    @property
    def harmful(self) -> bool:
        return self.category != BENIGN


def read_samples(path: str | Path, *, labeled: bool = True) -> list[Sample]:
    """JSONL (one object per line) or CSV (header with ``text`` and ``category``), UTF-8 with or
    without a byte-order mark. Raises ``ValueError`` naming the file (and line) on bad data,
    ``OSError`` when the file cannot be read. ``labeled=False`` accepts rows without a
    ``category`` (their ``category`` is ``None``)."""
    columns = ("text", "category") if labeled else ("text",)
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    rows: list[tuple[int, object]] = []  # (line number, parsed row)
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(content, newline=""))
        try:
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(f"{path}: CSV header {header} lacks column(s) {missing}")
            for row in reader:
                rows.append((reader.line_num, row))
        except csv.Error as exc:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    else:
        for n, line in enumerate(content.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: invalid JSON: {exc}") from None
    samples = []
    for n, row in rows:
        category = row.get("category") if isinstance(row, dict) else None
        if (not isinstance(row, dict) or not isinstance(row.get("text"), str)
                or not (isinstance(category, str) or (category is None and not labeled))):
            fields = "'text' and 'category'" if labeled else "'text' (and 'category' if any)"
            raise ValueError(f"{path}:{n}: row needs string fields {fields}")
        samples.append(Sample(row["text"], category.strip() if category is not None else None))
    if not samples:
        raise ValueError(f"{path}: no samples")
    return samples


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def evaluate(samples: Sequence[Sample], results: Sequence[Classification]) -> dict:
    """Detection per category, FPR on benign, accuracy, precision, F1, TP/FP/FN/TN."""
    if len(samples) != len(results):
        raise ValueError(f"{len(samples)} samples but {len(results)} results")
    tp = sum(s.harmful and r.flagged for s, r in zip(samples, results))
    fn = sum(s.harmful and not r.flagged for s, r in zip(samples, results))
    fp = sum(not s.harmful and r.flagged for s, r in zip(samples, results))
    tn = sum(not s.harmful and not r.flagged for s, r in zip(samples, results))
    per_category = {}
    for category in sorted({s.category for s in samples if s.harmful}):
        rows = [(s, r) for s, r in zip(samples, results) if s.category == category]
        entry = {"n": len(rows), "detection": _ratio(sum(r.flagged for _, r in rows), len(rows))}
        label = canonical_label(category)
        if rows and any(x.label == label for x in rows[0][1].labels):
            entry["own_label_recall"] = _ratio(sum(label in r.fired_labels for _, r in rows), len(rows))
        per_category[category] = entry
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if precision is not None and recall is not None else None)
    return {"confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
            "detection": recall, "fpr": _ratio(fp, fp + tn), "accuracy": _ratio(tp + tn, len(samples)),
            "precision": precision, "f1": f1, "per_category": per_category,
            "benign": {"n": fp + tn, "fpr": _ratio(fp, fp + tn)}}


def cost_summary(input_tokens: int, wall_seconds: float, dollars_per_hour: float) -> dict:
    total = dollars_per_hour * wall_seconds / 3600
    return {"input_tokens": input_tokens, "wall_seconds": wall_seconds, "dollars_per_hour": dollars_per_hour,
            "total_dollars": total,
            "dollars_per_million_input_tokens": total / input_tokens * 1e6 if input_tokens else None}


# Thresholds are placed this far above the scores they must exclude: runtimes (ONNX Runtime,
# TensorRT, the PyTorch reference) agree on a score to ~1e-6 in fp32 (the export's tolerance is
# 1e-5), so a threshold exactly at a calibration score would fire on one runtime and not another.
RUNTIME_MARGIN = 1e-5


def _just_above(value: float) -> float:
    return float(min(1.0, np.float64(value) + RUNTIME_MARGIN))


def calibrate_for_fpr(labels: Sequence[str], scores: np.ndarray, harmful: np.ndarray, target_fpr: float) -> np.ndarray:
    """Per-label thresholds at a common benign quantile, the lowest that keeps benign FPR <= target.

    Each label's threshold sits just above the ``q``-quantile of that label's benign scores; ``q``
    is found by bisection (FPR only falls as ``q`` rises), so detection is as high as this family
    allows under the target.
    """
    benign = scores[~harmful].astype(np.float64)
    if not len(benign):
        raise ValueError("calibration needs benign samples")

    def thresholds_at(q: float) -> np.ndarray:
        return np.array([_just_above(np.quantile(benign[:, j], q, method="higher")) if q < 1 else 1.0
                         for j in range(len(labels))])

    def fpr(q: float) -> float:
        return float(label_flags(benign, thresholds_at(q)).any(axis=1).mean())

    lo, hi = 0.0, 1.0
    if fpr(lo) <= target_fpr:
        return thresholds_at(lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fpr(mid) <= target_fpr else (mid, hi)
    return thresholds_at(hi)


def calibrate_for_recall(labels: Sequence[str], scores: np.ndarray, categories: Sequence[str],
                         target_recall: float, fallback: Sequence[float]) -> np.ndarray:
    """Per label: the highest threshold that still fires on ``target_recall`` of that category's
    samples. Labels without samples keep ``fallback`` (the server's current threshold)."""
    thresholds = np.array(fallback, dtype=np.float64)
    cats = np.array([canonical_label(c) for c in categories])
    for j, label in enumerate(labels):
        own = np.sort(scores[cats == label, j].astype(np.float64))
        if len(own):
            k = int(math.floor((1 - target_recall) * len(own) + 1e-9))
            thresholds[j] = float(own[min(k, len(own) - 1)])
    return thresholds


def calibrate_to_match(scores: np.ndarray, reference_flags: np.ndarray, reference_thresholds: Sequence[float]) -> np.ndarray:
    """Per label: the threshold on ``scores`` whose flags agree most often with ``reference_flags``
    (the decisions of a reference deployment, e.g. fp32, on the same texts). Among equally good
    thresholds, the one nearest the reference's own threshold, then the lower (a gate leans to
    flagging)."""
    scores = np.asarray(scores, dtype=np.float64)
    reference_flags = np.asarray(reference_flags, dtype=bool)
    if scores.shape != reference_flags.shape or scores.ndim != 2 or not len(scores):
        raise ValueError(f"scores {scores.shape} and reference flags {reference_flags.shape} must be the same "
                         "non-empty (texts, labels) shape")
    thresholds = np.empty(scores.shape[1])
    for j in range(scores.shape[1]):
        order = np.argsort(scores[:, j], kind="stable")
        s, r = scores[order, j], reference_flags[order, j]
        # flagging rows k.. (those with score >= s[k]): misses = reference flags below k, false
        # flags = reference passes from k on; k = n flags nothing (a threshold above every score)
        missed = np.concatenate([[0], np.cumsum(r)])
        extra = np.concatenate([np.cumsum((~r)[::-1])[::-1], [0]])
        candidates = np.append(s, _just_above(s[-1]))
        starts = np.concatenate([[True], s[1:] > s[:-1], [True]])  # a threshold flags a whole group of ties
        wrong = np.where(starts, missed + extra, np.iinfo(np.int64).max)
        best = np.flatnonzero(wrong == wrong.min())
        distance = np.abs(candidates[best] - float(reference_thresholds[j]))
        pick = best[np.lexsort((candidates[best], distance))[0]]
        thresholds[j] = candidates[pick]
    return thresholds


def decision_agreement(flags: np.ndarray, reference_flags: np.ndarray) -> dict:
    """How far two sets of (texts, labels) flags agree: per label and per text (flagged or not)."""
    flags, reference_flags = np.asarray(flags, dtype=bool), np.asarray(reference_flags, dtype=bool)
    return {"label_disagreements": int((flags != reference_flags).sum()),
            "text_decisions_flipped": int((flags.any(axis=1) != reference_flags.any(axis=1)).sum())}


def expected_metrics(scores: np.ndarray, harmful: np.ndarray, thresholds: np.ndarray) -> dict:
    flagged = label_flags(scores, thresholds).any(axis=1)
    return {"detection": float(flagged[harmful].mean()) if harmful.any() else None,
            "fpr": float(flagged[~harmful].mean()) if (~harmful).any() else None}


def profile_file(name: str, labels: Sequence[str], thresholds: Sequence[float]) -> dict:
    """The threshold-profile file the server's calibration model loads."""
    return {"profiles": {name: {label: float(t) for label, t in zip(labels, thresholds)}}}
