"""The network input from a frame, in two halves that the local estimator and the Triton wire share.

1. :func:`resize_for` — the frame resized to its letterbox (area filter when shrinking, linear when
   enlarging), still BGR uint8. A Triton client does this half and sends the small picture.
2. :func:`to_input` — a resized BGR uint8 picture -> the (3, ph, pw) float32 network input: channel
   order, ``(pixel - mean) * scale`` from the model's metadata, padding right/bottom with the value
   a black pixel normalises to. A server (or the local estimator) does this half.

Both halves are the same code wherever they run, so a frame sent letterboxed gives the network the
same values bit for bit as a local run.

Example:
    >>> import numpy as np
    >>> from edgepose.geometry import Letterbox
    >>> from edgepose.meta import ModelMeta  # doctest: +SKIP
    >>> box = Letterbox((64, 48), (32, 24), (32, 24))
    >>> resize_for(np.zeros((48, 64, 3), np.uint8), box).shape
    (24, 32, 3)
"""

from __future__ import annotations

import cv2
import numpy as np

from edgepose.geometry import Letterbox

__all__ = ["resize_for", "to_input", "pad_value"]


def resize_for(img: np.ndarray, box: Letterbox) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> (nh, nw, 3) as ``box.resized`` says (the frame itself when no resize is needed).

    Area to shrink; to enlarge, ``INTER_LINEAR_EXACT``, which rounds the same on arm64 and x86
    (``INTER_LINEAR`` on uint8 does not: docs/boards.md)."""
    (w, h), (nw, nh) = box.src, box.resized
    if img.shape[:2] != (h, w):
        raise ValueError(f"frame is {img.shape[1]}x{img.shape[0]} but the letterbox is for {w}x{h}")
    if (nw, nh) == (w, h):
        return img
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR_EXACT)


def pad_value(meta) -> float:
    """The normalised value of a black (0) pixel: what padding holds."""
    return (0.0 - meta.mean) * meta.scale


def to_input(resized: np.ndarray, box: Letterbox, meta, out: np.ndarray | None = None) -> np.ndarray:
    """A resized BGR uint8 picture (at least ``box.resized`` in size; the rest is ignored) -> the
    network input (3, ph, pw) float32.

    Args:
        resized: from :func:`resize_for`, or a padded frame whose top-left ``box.resized`` part it is.
        box: the letterbox (``padded`` is the network size).
        meta: the model's :class:`edgepose.meta.ModelMeta` (channel order, mean, scale).
        out: a (3, ph, pw) float32 buffer to fill (a new one when None or the wrong shape).
    """
    (nw, nh), (pw, ph) = box.resized, box.padded
    pic = resized[:nh, :nw]
    if meta.channel_order == "RGB":
        pic = cv2.cvtColor(np.ascontiguousarray(pic), cv2.COLOR_BGR2RGB)
    if out is None or out.shape != (3, ph, pw):
        out = np.empty((3, ph, pw), np.float32)
    chw = out[:, :nh, :nw]
    np.copyto(chw, pic.transpose(2, 0, 1), casting="unsafe")
    if meta.mean:
        chw -= meta.mean
    if meta.scale != 1.0:
        chw *= meta.scale
    pad = pad_value(meta)
    out[:, nh:, :] = pad
    out[:, :nh, nw:] = pad
    return out
