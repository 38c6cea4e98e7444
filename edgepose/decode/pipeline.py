"""Stage 6: :func:`decode` runs peaks -> refine -> paf_score -> assign -> group on one frame's maps.

Tensor contract (P parts, L limbs, map h x w at the network's stride, M people):

============  =========================================  ============================================
argument      shape, dtype                               notes
============  =========================================  ============================================
heatmaps      (P+1, h, w) or (P, h, w), any real dtype   a trailing background channel is ignored
pafs          (2L, h, w), any real dtype                 channels as in ``layout.paf_channels``
keypoints     -> (M, P, 3) float32                       ``(x, y, score)`` in map coordinates, zeros
                                                         for a missing part
scores        -> (M,) float32                            person scores, descending
============  =========================================  ============================================

Map coordinates: the value at row ``i``, column ``j`` is at ``x = j, y = i`` (multiply by the
stride, and undo any letterbox, to get image pixels). NaN and inf in the maps count as 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgepose.decode.assign import assign_connections
from edgepose.decode.config import DecoderConfig
from edgepose.decode.group import group_people
from edgepose.decode.paf import paf_scores
from edgepose.decode.peaks import _nms, load_heatmaps, refine_peaks
from edgepose.decode.workspace import Workspace

if TYPE_CHECKING:
    from edgepose.layouts import Layout

__all__ = ["decode", "check_maps"]

_DEFAULT = DecoderConfig()


def check_maps(heatmaps: np.ndarray, pafs: np.ndarray, layout: Layout) -> int:
    """Check the maps' shapes against the layout; return the number of parts P.

    Raises:
        ValueError: wrong number of dimensions or channels, or heatmaps and PAFs of different sizes.
    """
    p, l2 = layout.num_parts, 2 * layout.num_limbs
    if not layout.paf_channels:
        raise ValueError(f"layout {layout.id} has no PAF channels; it cannot be decoded")
    if heatmaps.ndim != 3 or pafs.ndim != 3:
        raise ValueError(f"heatmaps and pafs must be (C, h, w) (one image), got {heatmaps.shape} and {pafs.shape}")
    if heatmaps.shape[0] not in (p, p + 1):
        raise ValueError(f"layout {layout.id} needs {p} or {p + 1} heatmap channels, got {heatmaps.shape[0]}")
    if pafs.shape[0] != l2:
        raise ValueError(f"layout {layout.id} needs {l2} PAF channels, got {pafs.shape[0]}")
    if heatmaps.shape[1:] != pafs.shape[1:]:
        raise ValueError(f"heatmaps {heatmaps.shape[1:]} and pafs {pafs.shape[1:]} differ in size")
    if min(heatmaps.shape[1:]) < 1:
        raise ValueError(f"empty maps: {heatmaps.shape}")
    return p


def decode(
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    layout: Layout,
    config: DecoderConfig | None = None,
    workspace: Workspace | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """People from one image's heatmaps and PAFs.

    Args:
        heatmaps: (P+1, h, w) or (P, h, w) part maps (float32, float16, any strides).
        pafs: (2L, h, w) part affinity fields.
        layout: the model's :class:`edgepose.layouts.Layout` (``num_parts``, ``limbs``, ``paf_channels``).
        config: thresholds; :class:`DecoderConfig` defaults when None.
        workspace: reusable buffers (one per thread; pass the same one every frame). A temporary
            one is made when None.

    Returns:
        ``(keypoints, scores)``: (M, P, 3) float32 ``(x, y, score)`` in map coordinates with zeros
        for missing parts, and (M,) float32 person scores sorted descending (M may be 0).

    Raises:
        ValueError: maps that do not fit the layout.

    Example:
        >>> from edgepose.layouts import get_layout
        >>> lay = get_layout("coco18")
        >>> kps, scores = decode(np.zeros((19, 46, 54), np.float32), np.zeros((38, 46, 54), np.float32), lay)
        >>> kps.shape, scores.shape
        ((0, 18, 3), (0,))
    """
    cfg = _DEFAULT if config is None else config
    heatmaps = np.asarray(heatmaps)
    pafs = np.asarray(pafs)
    p = check_maps(heatmaps, pafs, layout)
    ws = workspace if workspace is not None else Workspace()

    maps, _ = load_heatmaps(heatmaps[:p], ws, cfg.smooth_sigma if cfg.smooth else None)
    peaks = _nms(ws, cfg.peak_threshold, cfg.max_peaks_per_part)
    if len(peaks) == 0:
        return np.zeros((0, p, 3), np.float32), np.zeros(0, np.float32)
    if cfg.refine:
        peaks = refine_peaks(maps, peaks)
    cands = paf_scores(
        pafs,
        peaks,
        layout,
        samples=cfg.paf_samples,
        inlier_threshold=cfg.paf_inlier_threshold,
        min_inlier_fraction=cfg.paf_min_inlier_fraction,
        min_score=cfg.paf_min_score,
        workspace=ws,
    )
    chosen = assign_connections(cands, cfg.matching)
    people = group_people(
        peaks,
        chosen,
        layout,
        min_parts=cfg.min_parts,
        min_mean_score=cfg.min_mean_score,
        max_people=cfg.max_people,
        person_score=cfg.person_score,
    )
    return people.keypoints(peaks), people.score
