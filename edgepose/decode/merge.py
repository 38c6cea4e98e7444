"""Averaging maps over several input scales and horizontal flips, onto one grid, in pure numpy.

OpenPose's accuracy modes run the network on the same frame at several scales and average the
outputs. Here each run's maps are resampled (bilinear, separable) onto one *reference grid* — the
map grid of the reference scale, at the network's stride, never the image resolution — and summed
in place; one decode follows. A run on the horizontally mirrored frame is mirrored back first:
its columns are read right to left, left and right parts swap heatmap channels, each limb's field
moves to its mirror limb and its x component changes sign (and both components when the mirror
limb is stored in the other direction). The swaps come from the layout's part names
(:meth:`edgepose.layouts.Layout.mirror_parts`), so COCO-18, MPI-15 and BODY_25 need no code of
their own.

Geometry (per axis, ``stride`` s, a frame of width ``W`` resized to ``nw`` for the network): map
column ``j`` is centred on network pixel ``j*s + (s-1)/2``, which is image pixel
``(j*s + (s-1)/2 + 0.5) * W/nw - 0.5``. A flipped run saw network pixel ``nw-1-p`` where the
unflipped run saw ``p``.

Tensor contract: a run's maps are ``heatmaps`` (P+1, h, w) and ``pafs`` (2L, h, w) at any scale;
the accumulators are (P+1, H, W) and (2L, H, W) for the reference grid (H, W); their size depends
on the pixel budget only, not on the frame.

Example:
    >>> import numpy as np
    >>> from edgepose.layouts import get_layout
    >>> lay = get_layout("coco18")
    >>> acc = MapAverager(lay, ref_resized=(64, 48), src=(64, 48), stride=8)
    >>> hm, paf = np.zeros((19, 6, 8), np.float32), np.zeros((38, 6, 8), np.float32)
    >>> acc.add(hm, paf, resized=(64, 48))
    >>> acc.add(hm, paf, resized=(32, 24), flipped=True)
    >>> [a.shape for a in acc.result()]
    [(19, 6, 8), (38, 6, 8)]
"""

from __future__ import annotations

import functools

import numpy as np

from edgepose.layouts import Layout

__all__ = ["MapAverager", "flip_channels", "sample_axis"]


@functools.lru_cache(maxsize=16)
def flip_channels(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel bookkeeping for mirroring a flipped run back.

    Returns:
        ``(hm_src, paf_src, paf_sign)``: output heatmap channel ``c`` comes from the flipped run's
        channel ``hm_src[c]`` (background stays last); output PAF channel ``c`` is
        ``paf_sign[c] * flipped_paf[paf_src[c]]``.

    Raises:
        ValueError: the layout has no left/right pairs (a flip cannot be undone).

    Example:
        >>> from edgepose.layouts import get_layout
        >>> hm_src, paf_src, sign = flip_channels(get_layout("coco18"))
        >>> [int(hm_src[c]) for c in (2, 5, 18)]    # RShoulder <- LShoulder; background stays
        [5, 2, 18]
    """
    m = layout.mirror_parts()
    hm_src = np.arange(layout.heatmap_channel_count)
    hm_src[: len(m)] = m  # an involution: out[m[p]] = flipped[p]  <=>  out[q] = flipped[m[q]]
    idx, sgn = layout.mirror_limbs()
    paf_src = np.arange(layout.paf_channel_count)
    paf_sign = np.ones(layout.paf_channel_count, np.float32)
    for j, (cx, cy) in enumerate(layout.paf_channels):
        # limb j of the original frame is limb idx[j] of the flipped one (mirroring is an involution)
        fx, fy = layout.paf_channels[idx[j]]
        paf_src[cx], paf_src[cy] = fx, fy
        paf_sign[cx] = -sgn[j]  # x points the other way in a mirror
        paf_sign[cy] = sgn[j]
    for a in (hm_src, paf_src, paf_sign):  # cached per layout (every flipped frame asks): shared, read-only
        a.flags.writeable = False
    return hm_src, paf_src, paf_sign


def sample_axis(n_out: int, n_in: int, out_scale: float, in_scale: float, stride: int, size_in: int,
                flipped: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Linear-interpolation indices and weights along one axis, from the reference grid to a run's grid.

    Args:
        n_out: reference-grid cells along the axis.
        n_in: the run's map cells along the axis.
        out_scale, in_scale: network pixels per image pixel of the reference run and of this run.
        stride: network stride.
        size_in: the run's resized frame size along the axis (network pixels; for flips).
        flipped: the run saw the frame mirrored along this axis.

    Returns:
        ``(i0, i1, w1)``: reference cell ``k`` = ``(1 - w1[k]) * run[i0[k]] + w1[k] * run[i1[k]]``
        (edge cells are clamped).
    """
    off = (stride - 1) / 2.0
    k = np.arange(n_out, dtype=np.float64)
    image = (k * stride + off + 0.5) / out_scale - 0.5  # image pixel of each reference cell's centre
    net = (image + 0.5) * in_scale - 0.5  # the same point in this run's network pixels
    if flipped:
        net = (size_in - 1) - net
    u = np.clip((net - off) / stride, 0.0, n_in - 1)
    i0 = np.floor(u).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (u - i0).astype(np.float32)


class MapAverager:
    """Sums runs' maps on a reference grid and returns their mean.

    Args:
        layout: the model's layout (for flips).
        ref_resized: ``(w, h)`` the reference run's frame was resized to (network pixels).
        src: ``(w, h)`` of the original frame.
        stride: network stride.
        grid: ``(H, W)`` of the reference grid (default: the cells covering ``ref_resized``).
        buffers: ``(hm_acc, paf_acc)`` to reuse when their shapes fit (a long stream does not
            allocate per frame).
    """

    def __init__(self, layout: Layout, ref_resized: tuple[int, int], src: tuple[int, int], stride: int,
                 grid: tuple[int, int] | None = None,
                 buffers: tuple[np.ndarray, np.ndarray] | None = None) -> None:  # fmt: skip
        self.layout = layout
        self.src = src
        self.stride = stride
        self.ref_scale = (ref_resized[0] / src[0], ref_resized[1] / src[1])
        h, w = grid or (-(-ref_resized[1] // stride), -(-ref_resized[0] // stride))
        shapes = ((layout.heatmap_channel_count, h, w), (layout.paf_channel_count, h, w))
        if buffers is not None and buffers[0].shape == shapes[0] and buffers[1].shape == shapes[1]:
            self.hm, self.paf = buffers
            self.hm.fill(0.0)
            self.paf.fill(0.0)
        else:
            self.hm, self.paf = np.zeros(shapes[0], np.float32), np.zeros(shapes[1], np.float32)
        self.count = 0

    def add(self, hm: np.ndarray, paf: np.ndarray, resized: tuple[int, int], flipped: bool = False) -> None:
        """Add one run: ``hm`` (P+1, h, w) and ``paf`` (2L, h, w) from the frame resized to ``resized``
        ``(w, h)`` (mirrored left-right when ``flipped``). Only the cells covering the frame are read."""
        s = self.stride
        vh = min(hm.shape[1], -(-resized[1] // s))
        vw = min(hm.shape[2], -(-resized[0] // s))
        H, W = self.hm.shape[1:]
        sx, sy = resized[0] / self.src[0], resized[1] / self.src[1]
        y0, y1, wy = sample_axis(H, vh, self.ref_scale[1], sy, s, resized[1])
        x0, x1, wx = sample_axis(W, vw, self.ref_scale[0], sx, s, resized[0], flipped)
        if flipped:
            hm_src, paf_src, paf_sign = flip_channels(self.layout)
            self._accumulate(self.hm, hm, hm_src, None, y0, y1, wy, x0, x1, wx)
            self._accumulate(self.paf, paf, paf_src, paf_sign, y0, y1, wy, x0, x1, wx)
        else:
            self._accumulate(self.hm, hm, None, None, y0, y1, wy, x0, x1, wx)
            self._accumulate(self.paf, paf, None, None, y0, y1, wy, x0, x1, wx)
        self.count += 1

    @staticmethod
    def _accumulate(acc, maps, chan, sign, y0, y1, wy, x0, x1, wx) -> None:
        src = maps if chan is None else maps[chan]
        rows = src[:, y0, :] * (1.0 - wy)[None, :, None]
        rows += src[:, y1, :] * wy[None, :, None]
        out = rows[:, :, x0] * (1.0 - wx)
        out += rows[:, :, x1] * wx
        if sign is not None:
            out *= sign[:, None, None]
        acc += out

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean heatmaps and PAFs on the reference grid (the accumulators, divided in place)."""
        if self.count == 0:
            raise ValueError("MapAverager: no run was added")
        if self.count > 1:
            inv = np.float32(1.0 / self.count)
            self.hm *= inv
            self.paf *= inv
            self.count = 1
        return self.hm, self.paf
