"""Small numeric helpers shared by the stages (not public)."""

from __future__ import annotations

import numpy as np

#: map values are clamped to +-VALUE_LIMIT where the decoder does arithmetic on them, so that absurd
#: (but finite) network outputs cannot overflow float32 sums into inf or NaN
VALUE_LIMIT = 1.0e6


def sanitize_inplace(a: np.ndarray) -> bool:
    """Set NaN and +-inf in ``a`` to 0, in place; return True when there were any.

    The common case (all finite) costs one float64 reduction and allocates nothing map-sized.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # inf + -inf: the NaN we are looking for
        total = np.sum(a, dtype=np.float64)
    if np.isfinite(total):
        return False
    bad = ~np.isfinite(a)
    if not bad.any():  # pragma: no cover - a float64 sum of float32 values cannot overflow
        return False
    a[bad] = 0.0
    return True


def clean(v: np.ndarray) -> np.ndarray:
    """Non-finite -> 0 and clamp to +-VALUE_LIMIT, in place on a small gathered array; returns it."""
    if not np.isfinite(v).all():
        np.nan_to_num(v, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(v, -VALUE_LIMIT, VALUE_LIMIT, out=v)
    return v
