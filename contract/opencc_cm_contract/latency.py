"""Latency as the model card reports it, one definition for every report (the CLI's eval, the
benchmarks, the GPU proof): mean with the card's 95% confidence interval (normal approximation,
mean +- 1.96 sd / sqrt(n), as BELLS-O computes it), p50 / p95 / p99 (linear interpolation),
min and max, in milliseconds."""
from __future__ import annotations

import math
import statistics
from typing import Sequence

import numpy as np

Z95 = 1.96


def latency_summary(latencies_ms: Sequence[float]) -> dict:
    """``{"n": 0}`` for no samples; the interval has zero width for a single sample."""
    arr = np.asarray(latencies_ms, dtype=np.float64)
    n = len(arr)
    if n == 0:
        return {"n": 0}
    mean = float(arr.mean())
    half = Z95 * statistics.stdev(arr) / math.sqrt(n) if n > 1 else 0.0
    return {"n": int(n), "mean_ms": mean, "ci95_ms": [mean - half, mean + half], "ci95_half_ms": half,
            "p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)), "min_ms": float(arr.min()), "max_ms": float(arr.max())}
