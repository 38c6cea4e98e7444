"""Stage 3: score every candidate limb of every limb type with the Part Affinity Fields, all at once.

Tensor contract (P parts, L limbs, n peaks, N = all (a, b) peak pairs over all limbs, S samples):

=================  ============================================  ======================================
function           input                                         output
=================  ============================================  ======================================
``limb_pairs``     :class:`Peaks`, limbs (L, 2)                   limb, a, b: (N,) int32 each
``sample_pafs``    pafs (C, h, w); xy_a, xy_b, chan: (N, 2)     dots (N, S) PAF . unit vector; length (N,)
``paf_scores``     pafs (2L, h, w), :class:`Peaks`, layout       :class:`Connections` (the candidates)
=================  ============================================  ======================================

The ``S`` sample points run from ``a`` to ``b`` inclusive (``t = 0, 1/(S-1), ..., 1``) and read
the limb's two PAF channels by **bilinear** interpolation. A pair's score is the mean of the
samples plus OpenPose's distance prior ``min(0, 0.5 * h / length - 1)`` (h = map height); it is a
candidate when at least ``min_inlier_fraction`` of its samples exceed ``inlier_threshold`` and the
score exceeds ``min_score``.

Example:
    >>> import numpy as np
    >>> from edgepose.decode.structs import Peaks
    >>> pafs = np.zeros((2, 10, 10), np.float32); pafs[0] = 1.0      # everything points along +x
    >>> peaks = Peaks.from_lists([[(1.0, 5.0, 0.9)], [(6.0, 5.0, 0.8), (1.0, 1.0, 0.8)]])
    >>> c = paf_scores(pafs, peaks, limbs=[(0, 1)], channels=[(0, 1)])
    >>> c.a.tolist(), c.b.tolist(), c.score.tolist()
    ([0], [1], [1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgepose.decode._numeric import VALUE_LIMIT, clean
from edgepose.decode.structs import Connections, Peaks
from edgepose.decode.workspace import Workspace

if TYPE_CHECKING:
    from edgepose.layouts import Layout

__all__ = ["limb_pairs", "sample_pafs", "paf_scores", "limb_table"]

_MIN_LENGTH = 1e-3  # cells; shorter limbs have no direction and are never candidates
_PROBE_MIN_PAIRS = 2048  # below this, one pass over all samples is cheaper than two (measured)


def limb_table(limbs: Sequence[Sequence[int]], channels: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(limbs (L, 2) int64, channels (L, 2) int64)`` arrays from a layout's tuples."""
    lt = np.asarray(limbs, np.int64).reshape(-1, 2)
    ct = np.asarray(channels, np.int64).reshape(-1, 2)
    if lt.shape != ct.shape:
        raise ValueError(f"{len(lt)} limbs but {len(ct)} PAF channel pairs")
    return lt, ct


def limb_pairs(peaks: Peaks, limbs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (a, b) peak pair of every limb, limb after limb, without a Python loop.

    Args:
        peaks: the frame's peaks.
        limbs: (L, 2) part indices ``(a, b)`` per limb.

    Returns:
        ``(limb, a, b)``: (N,) int32 each, N = sum over limbs of count[a] * count[b]; ``a`` and
        ``b`` index ``peaks``; within a limb, pairs run over ``a`` then ``b``.

    Example:
        >>> p = Peaks.from_lists([[(0, 0, 1), (1, 1, 1)], [(2, 2, 1)]])
        >>> [x.tolist() for x in limb_pairs(p, np.array([[0, 1]]))]
        [[0, 0], [0, 1], [2, 2]]
    """
    counts = peaks.counts
    na = counts[limbs[:, 0]]
    nb = counts[limbs[:, 1]]
    per = na * nb
    total = int(per.sum())
    if total == 0:
        z = np.zeros(0, np.int32)
        return z, z, z
    limb = np.repeat(np.arange(len(limbs), dtype=np.int64), per)
    start = np.cumsum(per) - per
    j = np.arange(total, dtype=np.int64) - start[limb]
    nbl = nb[limb]
    a = peaks.offsets[limbs[limb, 0]] + j // nbl
    b = peaks.offsets[limbs[limb, 1]] + j % nbl
    return limb.astype(np.int32), a.astype(np.int32), b.astype(np.int32)


def sample_pafs(
    pafs: np.ndarray,
    xy_a: np.ndarray,
    xy_b: np.ndarray,
    chan: np.ndarray,
    samples: int | np.ndarray = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """PAF agreement along segments: bilinear samples of the limb's field dotted with its direction.

    Args:
        pafs: (C, h, w) float32, C-contiguous (any finite or non-finite values; non-finite read as 0).
        xy_a: (N, 2) segment starts, map coordinates inside the map.
        xy_b: (N, 2) segment ends.
        chan: (N, 2) the PAF channels ``(cx, cy)`` of each segment's limb.
        samples: S, points per segment, ends included; or the (S,) fractions ``t`` in [0, 1] of
            the segment to sample at.

    Returns:
        ``(dots (N, S) float32, length (N,) float32)``: the PAF . unit vector at each sample, and
        the segment lengths (dots are 0 for segments shorter than 1e-3 cell).

    Example:
        >>> f = np.zeros((2, 4, 4), np.float32); f[1] = 0.5          # field points along +y
        >>> d, n = sample_pafs(f, np.array([[1.0, 0.0]]), np.array([[1.0, 3.0]]), np.array([[0, 1]]), 4)
        >>> d.tolist(), n.tolist()
        ([[0.5, 0.5, 0.5, 0.5]], [3.0])
    """
    if np.ndim(samples) == 0:
        t = np.linspace(0.0, 1.0, int(samples), dtype=np.float32)
    else:
        t = np.asarray(samples, np.float32)
    _, h, w = pafs.shape
    lim = np.array([w - 1, h - 1], np.float32)
    xy_a = np.clip(xy_a, 0.0, lim, dtype=np.float32)  # the whole segment is then inside the map
    xy_b = np.clip(xy_b, 0.0, lim, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf in the maps: handled below
        dots, length = _sample(pafs, xy_a, xy_b, chan, t, clean_values=False)
    # Non-finite map values (or absurd ones that would overflow) show up in the dots: only then
    # pay for cleaning every sampled value.
    if dots.size and not (-VALUE_LIMIT <= dots.min() and dots.max() <= VALUE_LIMIT):
        dots, length = _sample(pafs, xy_a, xy_b, chan, t, clean_values=True)
    return dots, length


def _sample(
    pafs: np.ndarray, xy_a: np.ndarray, xy_b: np.ndarray, chan: np.ndarray, t: np.ndarray, clean_values: bool
) -> tuple[np.ndarray, np.ndarray]:
    _, h, w = pafs.shape
    hw = h * w
    xa = xy_a[:, 0:1]
    ya = xy_a[:, 1:2]
    dx = xy_b[:, 0:1] - xa
    dy = xy_b[:, 1:2] - ya
    px = xa + dx * t  # (N, S), inside [0, w-1] up to rounding
    py = ya + dy * t
    x0 = px.astype(np.intp)  # floor (truncation; px >= -eps)
    y0 = py.astype(np.intp)
    fx = np.subtract(px, x0, dtype=np.float32)
    fy = np.subtract(py, y0, dtype=np.float32)
    x1 = np.minimum(x0 + 1, w - 1)
    y0 *= w  # row offsets
    y1 = np.minimum(y0 + w, hw - w)
    i00 = y0 + x0
    i01 = y0 + x1
    i10 = y1 + x0
    i11 = y1 + x1
    flat = pafs.reshape(-1)

    def bilinear(base: np.ndarray) -> np.ndarray:
        v00, v01, v10, v11 = flat[i00 + base], flat[i01 + base], flat[i10 + base], flat[i11 + base]
        if clean_values:
            for v in (v00, v01, v10, v11):
                clean(v)
        top = v00 + (v01 - v00) * fx
        bottom = v10 + (v11 - v10) * fx
        return top + (bottom - top) * fy

    vx = bilinear(chan[:, 0:1] * hw)
    vy = bilinear(chan[:, 1:2] * hw)
    length = np.sqrt(dx * dx + dy * dy)
    inv = np.divide(1.0, length, out=np.zeros_like(length), where=length > _MIN_LENGTH)
    dots = vx * (dx * inv) + vy * (dy * inv)
    return dots, length[:, 0]


def paf_scores(
    pafs: np.ndarray,
    peaks: Peaks,
    layout: Layout | None = None,
    *,
    limbs: Sequence[Sequence[int]] | np.ndarray | None = None,
    channels: Sequence[Sequence[int]] | np.ndarray | None = None,
    samples: int = 10,
    inlier_threshold: float = 0.05,
    min_inlier_fraction: float = 0.8,
    min_score: float = 0.0,
    workspace: Workspace | None = None,
) -> Connections:
    """Candidate connections of all limbs: every peak pair of every limb scored together, vectorized.

    With many pairs (a crowd) the samples are read in two vectorized passes: first
    ``ceil((1 - min_inlier_fraction) * S) + 1`` points per pair, enough to prove most wrong pairs
    can no longer reach ``min_inlier_fraction``; then the other points for the pairs left. The
    result is identical to one pass over all samples.

    Args:
        pafs: (2L, h, w) PAFs, any real dtype and strides (float16 and slices are converted once,
            into the workspace when one is given).
        peaks: the frame's (refined) peaks.
        layout: a :class:`edgepose.layouts.Layout`; or give ``limbs`` and ``channels`` instead.
        limbs: (L, 2) part pairs ``(a, b)``.
        channels: (L, 2) PAF channels ``(cx, cy)`` per limb.
        samples: points per segment (S >= 2).
        inlier_threshold: a sample agrees when its PAF . unit vector is above this.
        min_inlier_fraction: fraction of agreeing samples a candidate needs.
        min_score: a candidate's score (mean + distance prior) must be above this.
        workspace: buffers to reuse.

    Returns:
        :class:`Connections` holding the candidates only, by limb, best score first within a limb.
    """
    if layout is not None:
        limbs, channels = layout.limbs, layout.paf_channels
    if limbs is None or channels is None:
        raise ValueError("paf_scores needs a layout, or limbs and channels")
    lt, ct = limb_table(limbs, channels)
    limb, a, b = limb_pairs(peaks, lt)
    if limb.size == 0:
        return Connections.empty()
    pafs = as_float32(pafs, workspace)
    h = pafs.shape[1]
    xa, xb, chan = peaks.xy[a], peaks.xy[b], ct[limb]
    need = min_inlier_fraction * samples - 1e-6  # inliers a candidate needs
    probe = _probe_columns(samples, need)
    if probe is None or limb.size <= _PROBE_MIN_PAIRS:
        dots, length = sample_pafs(pafs, xa, xb, chan, samples)
    else:
        # Exact pre-filter: sample a few points first; a pair that already failed more of them
        # than a candidate may fail overall is dropped before the other samples are read.
        t = np.linspace(0.0, 1.0, samples, dtype=np.float32)
        first, length = sample_pafs(pafs, xa, xb, chan, t[probe])
        fails = probe.size - np.count_nonzero(first > inlier_threshold, axis=1)
        alive = np.flatnonzero(fails <= samples - np.ceil(need))
        if alive.size == 0:
            return Connections.empty()
        limb, a, b, xa, xb, chan, length = (x[alive] for x in (limb, a, b, xa, xb, chan, length))
        rest = np.setdiff1d(np.arange(samples), probe)
        dots = np.empty((alive.size, samples), np.float32)
        dots[:, probe] = first[alive]
        dots[:, rest] = sample_pafs(pafs, xa, xb, chan, t[rest])[0]
    inliers = np.count_nonzero(dots > inlier_threshold, axis=1)
    with np.errstate(divide="ignore"):
        prior = np.minimum(0.0, 0.5 * h / length - 1.0)
    score = dots.mean(axis=1) + prior
    cand = (length > _MIN_LENGTH) & (inliers >= need) & (score > min_score)
    idx = np.flatnonzero(cand)
    if idx.size == 0:
        return Connections.empty()
    idx = idx[np.lexsort((-score[idx], limb[idx]))]
    return Connections(limb=limb[idx], a=a[idx], b=b[idx], score=score[idx].astype(np.float32))


def _probe_columns(samples: int, need: float) -> np.ndarray | None:
    """Sample indices the pre-filter reads first, or None when it cannot reject anything early.

    A candidate may fail at most ``samples - ceil(need)`` samples; reading one more than that
    (distinct interior points, spread along the segment) rejects a pair as soon as all of them fail.
    """
    allowed = samples - int(np.ceil(need))
    k = allowed + 1
    if k > samples - 2:
        return None
    return np.floor(np.linspace(0, samples - 1, k + 2)[1:-1] + 0.5).astype(np.int64)


def as_float32(maps: np.ndarray, workspace: Workspace | None = None) -> np.ndarray:
    """``maps`` as a C-contiguous float32 array: itself when it already is, else one copy.

    With a workspace sized for the maps, the copy goes into its reusable PAF buffer.
    """
    if isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.flags.c_contiguous:
        return maps
    maps = np.asarray(maps)
    if workspace is not None and workspace.shape is not None and workspace.shape[1:] == maps.shape[1:]:
        out = workspace.paf_buffer(maps.shape[0])
        np.copyto(out, maps, casting="unsafe")
        return out
    return np.ascontiguousarray(maps, dtype=np.float32)
