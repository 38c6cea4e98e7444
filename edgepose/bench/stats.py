"""Percentiles and summaries of latency samples (milliseconds)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["summary", "ratio"]


def summary(samples: list[float] | np.ndarray) -> dict[str, float]:
    """``{"n", "mean", "p50", "p90", "p99", "min"}`` of ``samples`` (NaN-free floats; empty -> zeros).

    Example:
        >>> summary([1.0, 2.0, 3.0])["p50"]
        2.0
    """
    a = np.asarray([s for s in samples if s is not None and math.isfinite(s)], dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "min": 0.0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "min": float(a.min())}  # fmt: skip


def ratio(slow: float | None, fast: float | None) -> float | None:
    """``slow / fast`` (how many times faster ``fast`` is), None when either is missing or zero."""
    if not slow or not fast:
        return None
    return float(slow) / float(fast)
