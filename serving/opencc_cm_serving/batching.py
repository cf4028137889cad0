"""Grouping rows of different lengths into padded encoder runs (the ragged-batch encoder).

Triton's dynamic batcher hands the Python-backend encoder several requests whose
``[rows, seq]`` shapes differ (``allow_ragged_batch``). Their rows are pooled, sorted by real
length and cut into groups such that in each group at most ``max_pad_fraction`` of the padded
cells are padding, at most ``max_rows`` rows and (unless a single row costs more) a cost of at
most ``max_group_tokens``. Each group is right padded to its longest row and run once; results
are scattered back to the original row order.

Cost of a run (:func:`group_cost`): ``rows x width x (1 + width / attention_span)``, in
token-equivalents. The first term is the work linear in the padded cells (projections, MLP,
DeltaNet); the second is full attention, whose work per row grows with the square of the
width: ``attention_span`` is the width at which a token's attention costs as much as its linear
work (measured on the real-shape graph, BENCHMARKS.md). So 64 rows of 256 tokens may share a
run while two max-length rows never do. Memory of a run is linear in rows x width since the
graph computes attention in query blocks.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from opencc_cm_contract.text_rules import pad_right

# Deploy default for ``attention_span`` (tokens), from the real-shape time fit in BENCHMARKS.md.
DEFAULT_ATTENTION_SPAN = 16384


def group_cost(rows: int, width: int, attention_span: float | None) -> float:
    """Token-equivalent cost of one run of ``rows`` rows padded to ``width``
    (``attention_span`` None or 0: the linear part only)."""
    cells = rows * width
    return float(cells) * (1.0 + width / attention_span) if attention_span else float(cells)


def plan_groups(
    lengths: Sequence[int],
    max_pad_fraction: float,
    max_rows: int,
    max_group_tokens: int,
    attention_span: float | None = None,
) -> list[np.ndarray]:
    """Partition row indices into groups (each sorted by length); every index appears once.

    A group holds more than one row only if its :func:`group_cost` is at most
    ``max_group_tokens`` (a single row above the budget runs alone)."""
    if attention_span is not None and attention_span < 0:
        raise ValueError(f"attention_span must be >= 0, got {attention_span}")
    lengths = np.asarray(lengths, dtype=np.int64)
    groups: list[np.ndarray] = []
    current: list[int] = []
    real = 0
    for idx in np.argsort(lengths, kind="stable"):
        length = int(lengths[idx])
        rows = len(current) + 1
        padded = rows * length  # ascending order: the new row is the longest
        fits = (
            rows <= max_rows
            and group_cost(rows, length, attention_span) <= max_group_tokens
            and (padded - real - length) <= max_pad_fraction * padded
        )
        if current and not fits:
            groups.append(np.asarray(current, dtype=np.int64))
            current, real = [], 0
        current.append(int(idx))
        real += length
    if current:
        groups.append(np.asarray(current, dtype=np.int64))
    return groups


def run_grouped(
    rows: Sequence[np.ndarray],
    pad_id: int,
    groups: Sequence[np.ndarray],
    run: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Run ``run(input_ids, attention_mask) -> [n, labels]`` once per group of unpadded
    ``rows`` and return the outputs stacked in the original row order."""
    out: np.ndarray | None = None
    for group in groups:
        result = run(*pad_right([rows[i] for i in group], pad_id))
        if out is None:
            out = np.empty((len(rows),) + result.shape[1:], dtype=result.dtype)
        out[group] = result
    assert out is not None, "run_grouped needs at least one row"
    return out
