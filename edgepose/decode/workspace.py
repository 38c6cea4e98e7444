"""Preallocated, reusable buffers for the decoder: one per thread, sized by the maps.

The per-frame hot path writes into these instead of allocating map-sized arrays; only small
arrays proportional to the number of peaks and limb pairs are made per frame. A workspace is
resized (reallocated) only when the map shape changes. There is no module-level state: two threads
decoding at once must each use their own :class:`Workspace`.

Example:
    >>> ws = Workspace((18, 46, 54))
    >>> ws.shape, ws.nbytes < 1_000_000
    ((18, 46, 54), True)
"""

from __future__ import annotations

import numpy as np

__all__ = ["Workspace", "gaussian_matrix"]


def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) float32 matrix ``K`` with ``x @ K`` = 1-D Gaussian smoothing of the rows of ``x``.

    The kernel has radius ``ceil(3 * sigma)``, weights summing to 1, and ``reflect`` borders
    (``d c b a | a b c d``, like ``scipy.ndimage``'s default), all baked into the matrix so that
    smoothing a whole (P, h, w) stack is two matrix products.

    Example:
        >>> k = gaussian_matrix(5, 1.0)
        >>> k.shape, bool(np.allclose(k.sum(axis=1), 1.0))
        ((5, 5), True)
    """
    r = max(1, int(np.ceil(3.0 * sigma)))
    off = np.arange(-r, r + 1)
    g = np.exp(-0.5 * (off / sigma) ** 2)
    g /= g.sum()
    k = np.zeros((n, n), np.float64)
    i = np.arange(n)
    for o, wgt in zip(off, g, strict=True):
        j = (i + o) % (2 * n)
        j = np.where(j >= n, 2 * n - 1 - j, j)
        np.add.at(k, (j, i), wgt)
    # out[..., i] = sum_j x[..., j] * k[j, i]: the reflected input j contributes to output i.
    return k.astype(np.float32)


class Workspace:
    """Buffers for one (P, h, w) map shape, reused across frames.

    Args:
        shape: ``(num_parts, h, w)`` to allocate for now; None allocates on first use.

    Attributes:
        shape: the ``(P, h, w)`` the buffers are sized for, or None before first use.
        padded: (P, h+2, w+2) float32 heatmaps with a -inf border (peak finding needs no bounds checks).
        mask: (P, h+2, w+2) bool scratch for thresholding.

    Example:
        >>> ws = Workspace()
        >>> ws.ensure(18, 46, 54).heatmaps.shape
        (18, 46, 54)
    """

    def __init__(self, shape: tuple[int, int, int] | None = None) -> None:
        self.shape: tuple[int, int, int] | None = None
        self.padded = np.zeros((0, 2, 2), np.float32)
        self.mask = np.zeros((0, 2, 2), bool)
        self._smooth_tmp: np.ndarray | None = None
        self._kernels: dict[tuple[float, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._paf: np.ndarray | None = None
        if shape is not None:
            self.ensure(*shape)

    def ensure(self, num_parts: int, h: int, w: int) -> Workspace:
        """Make the buffers fit ``(num_parts, h, w)``; a no-op when they already do."""
        shape = (int(num_parts), int(h), int(w))
        if shape == self.shape:
            return self
        if min(shape) < 1:
            raise ValueError(f"Workspace: map shape must be positive, got {shape}")
        p, h, w = shape
        self.padded = np.full((p, h + 2, w + 2), -np.inf, np.float32)
        self.mask = np.zeros((p, h + 2, w + 2), bool)
        self._smooth_tmp = None
        self._kernels.clear()
        self._paf = None
        self.shape = shape
        return self

    @property
    def heatmaps(self) -> np.ndarray:
        """(P, h, w) float32 view of the interior of :attr:`padded` (the current frame's heatmaps)."""
        return self.padded[:, 1:-1, 1:-1]

    def smoothing(self, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(kx (w, w), ky (h, h), tmp (P, h, w))`` for Gaussian smoothing, made on first use."""
        assert self.shape is not None, "call ensure() first"
        p, h, w = self.shape
        key = (float(sigma), h, w)
        if key not in self._kernels:
            self._kernels.clear()  # one sigma at a time
            self._kernels[key] = (gaussian_matrix(w, sigma), np.ascontiguousarray(gaussian_matrix(h, sigma).T))
        if self._smooth_tmp is None:
            self._smooth_tmp = np.empty((p, h, w), np.float32)
        kx, ky = self._kernels[key]
        return kx, ky, self._smooth_tmp

    def paf_buffer(self, channels: int) -> np.ndarray:
        """(channels, h, w) float32 buffer for converting float16 / strided PAFs, made on first use."""
        assert self.shape is not None, "call ensure() first"
        _, h, w = self.shape
        if self._paf is None or self._paf.shape != (channels, h, w):
            self._paf = np.empty((channels, h, w), np.float32)
        return self._paf

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers now (they grow only with the map shape or first use of a feature)."""
        arrays = [self.padded, self.mask, self._smooth_tmp, self._paf]
        arrays += [k for pair in self._kernels.values() for k in pair]
        return int(sum(a.nbytes for a in arrays if a is not None))

    def __repr__(self) -> str:
        return f"Workspace(shape={self.shape}, nbytes={self.nbytes})"
