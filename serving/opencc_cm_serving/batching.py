"""Grouping rows of different lengths into padded encoder runs (the ragged-batch encoder).

Triton's dynamic batcher hands the Python-backend encoder several requests whose
``[rows, seq]`` shapes differ (``allow_ragged_batch``). Their rows are pooled, sorted by real
length and cut into groups such that in each group at most ``max_pad_fraction`` of the padded
cells are padding, at most ``max_rows`` rows and (unless a single row is longer) at most
``max_group_tokens`` padded cells. Each group is right padded to its longest row and run
once; results are scattered back to the original row order.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from opencc_cm_contract.text_rules import pad_right


def plan_groups(
    lengths: Sequence[int],
    max_pad_fraction: float,
    max_rows: int,
    max_group_tokens: int,
) -> list[np.ndarray]:
    """Partition row indices into groups (each sorted by length); every index appears once."""
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
            and padded <= max_group_tokens
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
