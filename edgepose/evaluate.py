"""COCO keypoint evaluation of a model: AP/AR with pycocotools, and per-stage timings.

Example:
    >>> from edgepose.evaluate import evaluate
    >>> report = evaluate(est, "person_keypoints.json", "images/")  # doctest: +SKIP
    >>> report["AP"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from edgepose.imageio import ImageError, read_image
from edgepose.results import STAGES, coco_results

log = logging.getLogger(__name__)

__all__ = ["evaluate", "coco_ap"]


def _pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError(f"pycocotools is needed for evaluation ({e}); pip install 'edgepose[eval]'") from e
    return COCO, COCOeval


def coco_ap(annotations: str | Path | dict, detections: list[dict], image_ids: list[int] | None = None) -> dict:
    """Score COCO-17 keypoint detections; return AP, AP50, AP75, APm, APl, AR."""
    COCO, COCOeval = _pycocotools()
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(annotations, dict):
            gt = COCO()
            gt.dataset = annotations
            gt.createIndex()
        else:
            gt = COCO(str(annotations))
        if not detections:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APm": 0.0, "APl": 0.0, "AR": 0.0}
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, iouType="keypoints")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {"AP": float(s[0]), "AP50": float(s[1]), "AP75": float(s[2]), "APm": float(s[3]), "APl": float(s[4]),
            "AR": float(s[5])}  # fmt: skip


def evaluate(est, annotations: str | Path, images: str | Path, progress: bool = True) -> dict:
    """Run ``est`` over the images of a COCO keypoint file and score it.

    Returns:
        ``{"AP", "AP50", "AP75", "APm", "APl", "AR", "images", "failed", "timings_ms": {stage: {"median", "p90"}}}``.
    """
    from tqdm import tqdm

    with open(annotations) as f:
        gt = json.load(f)
    imgs = gt.get("images", [])
    if not imgs:
        raise ValueError(f"{annotations} lists no images")
    dets: list[dict] = []
    timings: dict[str, list[float]] = {s: [] for s in STAGES}
    failed = []
    for im in tqdm(imgs, desc="eval", unit="img", disable=not progress):
        path = Path(images) / im["file_name"]
        try:
            import time

            t0 = time.perf_counter()
            img, _ = read_image(path)
            read_ms = (time.perf_counter() - t0) * 1e3
        except ImageError as e:
            log.warning("skipping %s", e)
            failed.append(str(e))
            continue
        res = est.predict(img, source=path.name, read_ms=read_ms)
        for s in STAGES:
            timings[s].append(res.timings[s])
        dets.extend(coco_results(res, im["id"]))
    scores = coco_ap(gt, dets, [im["id"] for im in imgs])
    scores["images"] = len(imgs)
    scores["failed"] = failed
    scores["detections"] = len(dets)
    scores["timings_ms"] = {
        s: {"median": float(np.median(v)) if v else 0.0, "p90": float(np.percentile(v, 90)) if v else 0.0}
        for s, v in timings.items()
    }
    return scores
