"""Pose decoder: heatmaps + Part Affinity Fields -> people, in pure numpy.

The runtime calls only this::

    from edgepose.decode import DecoderConfig, decode, Workspace
    keypoints, scores = decode(heatmaps, pafs, layout, config=None, workspace=None)

Stages (free functions, each testable with hand-made arrays; shapes in their module docstrings):

==============  =================================  ==============================================
stage           function                           (P parts, L limbs, n peaks, k connections)
==============  =================================  ==============================================
1 peaks         :func:`find_peaks`                 (P, h, w) maps -> :class:`Peaks` (n,)
2 refine        :func:`refine_peaks`               (P, h, w), Peaks -> Peaks with sub-pixel ``xy``
3 paf_score     :func:`paf_scores`                 (2L, h, w), Peaks -> candidate :class:`Connections`
4 assign        :func:`assign_connections`         Connections -> chosen Connections (greedy/hungarian)
5 group         :func:`group_people`               Peaks, Connections -> :class:`People` (M, P)
6 all           :func:`decode`                     maps -> keypoints (M, P, 3), scores (M,)
==============  =================================  ==============================================

The decoder works at the network's output resolution (it never resizes the maps), keeps fixed
maxima (``max_peaks_per_part``, ``max_people``), and writes map-sized intermediates into a
:class:`Workspace` that is reused across frames. There is no module-level mutable state; give each
thread its own workspace.

Example:
    >>> import numpy as np
    >>> from edgepose.layouts import get_layout
    >>> from edgepose.decode import DecoderConfig, Workspace, decode
    >>> from edgepose.decode.synthetic import render_maps, stick_figure
    >>> lay = get_layout("coco18")
    >>> hm, paf = render_maps(lay, [stick_figure(lay, (27.0, 23.0), 30.0)], (46, 54))
    >>> ws = Workspace()
    >>> kps, scores = decode(hm, paf, lay, DecoderConfig(), ws)
    >>> kps.shape, int((kps[0, :, 2] > 0).sum())
    ((1, 18, 3), 18)
"""

from __future__ import annotations

from edgepose.decode.assign import assign_connections, assign_greedy, assign_hungarian
from edgepose.decode.config import MATCHING_METHODS, PERSON_SCORE_MODES, DecoderConfig
from edgepose.decode.group import group_people, person_scores
from edgepose.decode.paf import limb_pairs, paf_scores, sample_pafs
from edgepose.decode.peaks import find_peaks, refine_peaks, smooth_heatmaps
from edgepose.decode.pipeline import check_maps, decode
from edgepose.decode.structs import Connections, Peaks, People
from edgepose.decode.workspace import Workspace

__all__ = [
    "DecoderConfig",
    "Workspace",
    "decode",
    "check_maps",
    "find_peaks",
    "smooth_heatmaps",
    "refine_peaks",
    "limb_pairs",
    "sample_pafs",
    "paf_scores",
    "assign_connections",
    "assign_greedy",
    "assign_hungarian",
    "group_people",
    "person_scores",
    "Peaks",
    "Connections",
    "People",
    "MATCHING_METHODS",
    "PERSON_SCORE_MODES",
]
