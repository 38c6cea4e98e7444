"""Accuracy of a candidate: COCO AP with annotations, else agreement with a reference configuration.

Agreement needs no labels: the reference (the most accurate candidate, ``accurate`` fp32 when it
runs here) is run on the same frames, its people are matched one to one with the candidate's by
OKS (COCO's keypoint similarity, COCO-17 sigmas, the reference person's box as its scale), and the
score is the mean OKS over the reference's people, a missed person counting 0. ``found``/``missed``
count the reference's people matched (OKS >= 0.5) or not; ``extra`` the candidate's unmatched ones.

Example:
    >>> import numpy as np
    >>> k = np.array([[[10, 10, 1], [20, 20, 1]] + [[0, 0, 0]] * 15], np.float32)
    >>> round(float(oks_matrix(k, k)[0, 0]), 3)
    1.0
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["SIGMAS", "oks_matrix", "agreement", "check_annotations", "people17"]

#: COCO-17 per-keypoint OKS sigmas (pycocotools' values)
SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0


def people17(result) -> np.ndarray:
    """A :class:`~edgepose.results.FrameResult`'s people as (N, 17, 3) COCO-17 keypoints."""
    from edgepose.results import to_coco17

    if not result.people:
        return np.zeros((0, 17, 3), np.float32)
    return to_coco17(np.stack([p.keypoints for p in result.people]), result.layout)


def oks_matrix(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """(R, C) OKS of every reference person against every candidate person.

    Args:
        ref: (R, 17, 3) COCO-17 keypoints; parts with score 0 are not counted.
        cand: (C, 17, 3).
    """
    if len(ref) == 0 or len(cand) == 0:
        return np.zeros((len(ref), len(cand)))
    vis = ref[:, :, 2] > 0  # (R, 17)
    out = np.zeros((len(ref), len(cand)))
    for i, r in enumerate(ref):
        pts = r[vis[i], :2]
        if len(pts) == 0:
            continue
        span = pts.max(0) - pts.min(0)
        area = max(float(span[0] * span[1]), 1.0)
        d2 = ((cand[:, :, :2] - r[None, :, :2]) ** 2).sum(-1)  # (C, 17)
        k2 = (2 * SIGMAS) ** 2
        e = np.exp(-d2 / (2 * area * k2[None]))
        e = np.where(cand[:, :, 2] > 0, e, 0.0)
        out[i] = e[:, vis[i]].mean(1)
    return out


def agreement(ref_frames: list[np.ndarray], cand_frames: list[np.ndarray], threshold: float = 0.5) -> dict:
    """Agreement of a candidate's people with the reference's over the same frames.

    Args:
        ref_frames, cand_frames: per frame, (N, 17, 3) people (:func:`people17`).
        threshold: OKS at which a reference person counts as found.

    Returns:
        ``{"oks", "found", "missed", "extra", "reference_people"}``: ``oks`` is the mean over the
        reference's people of the matched OKS (0 for a missed one).
    """
    total, found, missed, extra, n = 0.0, 0, 0, 0, 0
    for ref, cand in zip(ref_frames, cand_frames, strict=True):
        m = oks_matrix(ref, cand)
        used: set[int] = set()
        # greedy on OKS, best pairs first
        pairs = sorted(((m[i, j], i, j) for i in range(m.shape[0]) for j in range(m.shape[1])), reverse=True)
        matched: dict[int, float] = {}
        for s, i, j in pairs:
            if i in matched or j in used or s <= 0:
                continue
            matched[i] = s
            used.add(j)
        n += len(ref)
        total += sum(matched.values())
        found += sum(1 for s in matched.values() if s >= threshold)
        missed += len(ref) - sum(1 for s in matched.values() if s >= threshold)
        extra += len(cand) - len(used)
    return {"oks": total / n if n else 1.0, "found": found, "missed": missed, "extra": extra, "reference_people": n}


def check_annotations(annotations: str | Path, images: str | Path) -> dict:
    """Load a COCO person-keypoints file and check it names images that are in ``images``.

    Raises:
        FileNotFoundError: the file or the folder is missing.
        ValueError: not a COCO keypoints file, or none (or only some) of its images are in the folder.
    """
    annotations, images = Path(annotations), Path(images)
    if not annotations.is_file():
        raise FileNotFoundError(f"no annotation file {annotations}")
    if not images.is_dir():
        raise FileNotFoundError(f"no image folder {images} (--images)")
    try:
        gt = json.loads(annotations.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{annotations} is not JSON: {e}") from None
    if not isinstance(gt, dict) or not gt.get("images") or "annotations" not in gt:
        raise ValueError(f"{annotations} is not a COCO keypoints file (it needs 'images' and 'annotations')")
    names = [im.get("file_name", "") for im in gt["images"]]
    missing = [n for n in names if not (images / n).is_file()]
    if missing:
        raise ValueError(f"the annotations do not match the images: {len(missing)} of the {len(names)} images "
                         f"{annotations.name} names are not in {images} (first: {missing[0]})")  # fmt: skip
    return gt
