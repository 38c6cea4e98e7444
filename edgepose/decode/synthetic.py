"""Synthetic network outputs: stick figures rendered as Gaussian heatmaps and PAF rectangles.

For tests and decoder benchmarks only (nothing in the runtime path uses it). It renders maps the
way OpenPose's training targets are made: per part, the maximum of Gaussians centred on each
person's keypoint; per limb, the unit vector from part ``a`` to part ``b`` on every cell within
``paf_width`` of the segment, averaged where people overlap; background = 1 - max over parts.

Example:
    >>> from edgepose.layouts import get_layout
    >>> lay = get_layout("mpi15")
    >>> fig = stick_figure(lay, (20.0, 22.0), 30.0)
    >>> hm, paf = render_maps(lay, [fig], (46, 54))
    >>> hm.shape, paf.shape, fig.shape
    ((16, 46, 54), (28, 46, 54), (15, 2))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgepose.layouts import Layout

__all__ = ["TEMPLATE", "stick_figure", "render_maps"]

#: a standing figure facing the camera, height 1, by lower-cased part name: (x, y) relative to the
#: figure's centre (y down; the person's right side is on the image's left)
TEMPLATE: dict[str, tuple[float, float]] = {
    "head": (0.0, -0.47),
    "nose": (0.0, -0.40),
    "reye": (-0.035, -0.44),
    "leye": (0.035, -0.44),
    "rear": (-0.075, -0.42),
    "lear": (0.075, -0.42),
    "neck": (0.0, -0.31),
    "rshoulder": (-0.13, -0.29),
    "lshoulder": (0.13, -0.29),
    "relbow": (-0.20, -0.13),
    "lelbow": (0.20, -0.13),
    "rwrist": (-0.24, 0.02),
    "lwrist": (0.24, 0.02),
    "chest": (0.0, -0.15),
    "midhip": (0.0, 0.02),
    "rhip": (-0.09, 0.02),
    "lhip": (0.09, 0.02),
    "rknee": (-0.10, 0.23),
    "lknee": (0.10, 0.23),
    "rankle": (-0.11, 0.43),
    "lankle": (0.11, 0.43),
    "rbigtoe": (-0.16, 0.50),
    "rsmalltoe": (-0.20, 0.49),
    "rheel": (-0.09, 0.48),
    "lbigtoe": (0.16, 0.50),
    "lsmalltoe": (0.20, 0.49),
    "lheel": (0.09, 0.48),
}


def stick_figure(layout: Layout, centre: tuple[float, float], height: float) -> np.ndarray:
    """Keypoints (P, 2) ``(x, y)`` of a standing person, from the layout's part names.

    Args:
        layout: a layout whose part names are in :data:`TEMPLATE` (coco18, mpi15, body25, coco17).
        centre: ``(x, y)`` of the figure's centre (about the hips), map coordinates.
        height: head-to-toe height in cells.

    Raises:
        KeyError: a part name the template does not know.
    """
    rel = np.array([TEMPLATE[n.lower().replace("_", "")] for n in layout.names], np.float64)
    return (np.asarray(centre, np.float64) + rel * height).astype(np.float32)


def render_maps(
    layout: Layout,
    people: Sequence[np.ndarray],
    shape: tuple[int, int],
    *,
    sigma: float = 1.0,
    paf_width: float = 1.0,
    peak: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps and PAFs for people given as (P, 2) keypoint arrays (NaN rows = part absent).

    Args:
        layout: the layout (``names``, ``limbs``, ``paf_channels``).
        people: one (P, 2) float array of ``(x, y)`` map coordinates per person.
        shape: ``(h, w)`` of the maps.
        sigma: Gaussian sigma of a part, in cells.
        paf_width: half-width of a limb's PAF rectangle, in cells.
        peak: height of the Gaussians.

    Returns:
        ``(heatmaps (P+1, h, w), pafs (2L, h, w))`` float32, background channel last.
    """
    h, w = shape
    p = layout.num_parts
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    hm = np.zeros((p + 1, h, w), np.float64)
    paf = np.zeros((2 * layout.num_limbs, h, w), np.float64)
    cnt = np.zeros((layout.num_limbs, h, w), np.float64)
    for kp in people:
        kp = np.asarray(kp, np.float64)
        for i in range(p):
            if np.isfinite(kp[i]).all():
                g = peak * np.exp(-((xx - kp[i, 0]) ** 2 + (yy - kp[i, 1]) ** 2) / (2 * sigma**2))
                np.maximum(hm[i], g, out=hm[i])
        for j, ((a, b), (cx, cy)) in enumerate(zip(layout.limbs, layout.paf_channels, strict=True)):
            if not (np.isfinite(kp[a]).all() and np.isfinite(kp[b]).all()):
                continue
            d = kp[b] - kp[a]
            n = float(np.hypot(*d))
            if n < 1e-6:
                continue
            u = d / n
            rx, ry = xx - kp[a, 0], yy - kp[a, 1]
            along = rx * u[0] + ry * u[1]
            across = np.abs(rx * u[1] - ry * u[0])
            on = (along >= -paf_width) & (along <= n + paf_width) & (across <= paf_width)
            paf[cx][on] += u[0]
            paf[cy][on] += u[1]
            cnt[j][on] += 1
    for j, (cx, cy) in enumerate(layout.paf_channels):
        np.divide(paf[cx], cnt[j], out=paf[cx], where=cnt[j] > 0)
        np.divide(paf[cy], cnt[j], out=paf[cy], where=cnt[j] > 0)
    hm[p] = np.clip(1.0 - hm[:p].max(axis=0), 0.0, 1.0)
    return hm.astype(np.float32), paf.astype(np.float32)
