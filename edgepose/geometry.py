"""Where a frame goes in the network input: pixel budgets, aspect-preserving fit, the letterbox.

Pure arithmetic (numpy only), shared by the local estimator, multi-scale inference and the Triton
client and server models.

Example:
    >>> fit_size(1920, 1080, (432, 368), 8)
    (526, 296, 528, 296)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SIZE_PRESETS", "Letterbox", "fit_size", "parse_size"]

#: input-size presets as pixel budgets ``(w, h)``; ``default`` is the model's preferred size
SIZE_PRESETS: dict[str, tuple[int, int] | None] = {
    "small": (320, 272),
    "default": None,
    "large": (656, 560),
    # several scales (and flips) averaged; budget, scales and flip in edgepose.multiscale.ACCURATE
    "accurate": (656, 560),
}


def parse_size(size: str | tuple[int, int] | None, preferred: tuple[int, int]) -> tuple[int, int]:
    """A preset name, ``"WxH"`` or ``(w, h)`` -> the pixel budget ``(w, h)``."""
    if size is None:
        return preferred
    if isinstance(size, str):
        if size in SIZE_PRESETS:
            return SIZE_PRESETS[size] or preferred
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"size must be one of {', '.join(SIZE_PRESETS)} or WxH, not {size!r}") from None
        size = (w, h)
    w, h = size
    if w < 16 or h < 16:
        raise ValueError(f"input size {w}x{h} is too small (at least 16x16)")
    return int(w), int(h)


def fit_size(w: int, h: int, budget: tuple[int, int], stride: int) -> tuple[int, int, int, int]:
    """Scale ``w x h`` keeping its aspect ratio so the stride-padded size fits ``budget`` pixels.

    Returns:
        ``(new_w, new_h, padded_w, padded_h)``.
    """
    area = budget[0] * budget[1]
    s = math.sqrt(area / (w * h))
    limit = 16 * max(budget)  # keep extreme aspect ratios sane
    while True:
        nw = max(1, min(limit, round(w * s)))
        nh = max(1, min(limit, round(h * s)))
        pw, ph = -(-nw // stride) * stride, -(-nh // stride) * stride
        if pw * ph <= area or s < 1e-6:
            return nw, nh, pw, ph
        s *= 0.99


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the network input: resized to ``resized`` and padded right/bottom."""

    src: tuple[int, int]  # (w, h) of the original frame
    resized: tuple[int, int]  # (w, h) after resizing
    padded: tuple[int, int]  # (w, h) of the network input

    def map_to_image(self, kp: np.ndarray, stride: int) -> np.ndarray:
        """Map-space ``(x, y, score)`` (..., 3) -> original-image pixels, in place."""
        sx = self.resized[0] / self.src[0]
        sy = self.resized[1] / self.src[1]
        off = (stride - 1) / 2.0  # centre of a map cell in input pixels
        vis = kp[..., 2] > 0
        kp[..., 0] = np.where(vis, ((kp[..., 0] * stride + off) + 0.5) / sx - 0.5, 0.0)
        kp[..., 1] = np.where(vis, ((kp[..., 1] * stride + off) + 0.5) / sy - 0.5, 0.0)
        return kp
