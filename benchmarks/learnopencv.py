"""Baseline: learnopencv's multi-person OpenPose post-processing, re-implemented from its description.

The popular learnopencv notebooks ("Multi-Person Pose Estimation in OpenCV using OpenPose") decode
the network outputs like this; this module follows that description, written afresh:

1. every heatmap and PAF channel is resized (bilinear) to the *image* size;
2. keypoints: each part's map is Gaussian-blurred (3x3), thresholded at 0.1, and every blob
   (outer contour) of the mask gives one keypoint at its maximum;
3. limbs: for each limb, each candidate pair (a, b) of its two parts is tested on 10 points sampled
   along the segment; the pair is valid when at least 70 % of the samples have a PAF aligned with
   the segment by more than 0.1; each ``a`` keeps its best-scoring ``b`` (mean alignment);
4. people: limbs are taken in order; a pair whose first keypoint already belongs to a person adds
   its second keypoint to that person, otherwise (for the skeleton's main limbs only, not the
   redundant ear-shoulder ones) it starts a new person. A person's score is the sum of its keypoint
   scores and limb scores; no person is dropped.

It is not edgepose code: it exists to measure edgepose's decoder against the recipe most people
start from, on the same network outputs. The blob masks are filled in each contour's bounding box
(the same maximum as a full-image mask, without the cost), so the comparison is not made against
a needlessly slow version of it.

Example:
    >>> from edgepose.layouts import get_layout
    >>> kps, scores = multi_person(hm, paf, get_layout("coco18"), (640, 480))  # doctest: +SKIP
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["multi_person", "resize_maps", "blob_keypoints", "valid_pairs", "assemble"]

THRESHOLD = 0.1  # keypoint map threshold
N_SAMPLES = 10  # samples along a candidate limb
PAF_THRESHOLD = 0.1  # a sample is aligned when PAF . unit vector > this
MIN_ALIGNED = 0.7  # fraction of aligned samples a valid limb needs


def resize_maps(maps: np.ndarray, image_size: tuple[int, int], *, resized: tuple[int, int] | None = None,
                stride: int = 8) -> list[np.ndarray]:  # fmt: skip
    """(C, h, w) maps -> C maps of the image's size (H, W), each resized on its own.

    Args:
        image_size: ``(W, H)`` of the original image.
        resized: ``(w, h)`` the image had inside a letterboxed network input (its top-left part);
            None when the network input was the whole image stretched.
        stride: network output stride (input pixels per map cell).
    """
    W, H = image_size
    if resized is None:
        return [cv2.resize(m, (W, H), interpolation=cv2.INTER_LINEAR) for m in maps]
    # The map cells covering the image, scaled so that cell centres land on image pixels.
    sx, sy = resized[0] / W, resized[1] / H
    ch, cw = min(maps.shape[1], -(-resized[1] // stride)), min(maps.shape[2], -(-resized[0] // stride))
    tw, th = max(W, round(cw * stride / sx)), max(H, round(ch * stride / sy))
    return [cv2.resize(m[:ch, :cw], (tw, th), interpolation=cv2.INTER_LINEAR)[:H, :W] for m in maps]


def blob_keypoints(prob: np.ndarray, threshold: float = THRESHOLD) -> list[tuple[float, float, float]]:
    """One image-sized probability map -> ``(x, y, score)`` at the maximum of each blob above threshold."""
    smooth = cv2.GaussianBlur(prob, (3, 3), 0, 0)
    mask = (smooth > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        blob = np.zeros((h, w), np.uint8)
        cv2.drawContours(blob, [c], -1, 1, thickness=-1, offset=(-x, -y))
        _, _, _, (mx, my) = cv2.minMaxLoc(smooth[y : y + h, x : x + w] * blob)
        out.append((float(x + mx), float(y + my), float(prob[y + my, x + mx])))
    return out


def valid_pairs(cand_a: np.ndarray, cand_b: np.ndarray, paf_x: np.ndarray, paf_y: np.ndarray) -> list[tuple[int, int, float]]:
    """Best partner in ``cand_b`` for each keypoint of ``cand_a``: ``(i, j, mean alignment)`` triples.

    Args:
        cand_a, cand_b: (n, 3) and (m, 3) keypoints ``(x, y, score)`` in image pixels.
        paf_x, paf_y: the limb's two PAF channels at image size.
    """
    H, W = paf_x.shape
    pairs = []
    for i in range(len(cand_a)):
        best, best_score = -1, -np.inf
        for j in range(len(cand_b)):
            d = cand_b[j, :2] - cand_a[i, :2]
            norm = float(np.hypot(d[0], d[1]))
            if norm == 0.0:
                continue
            u = d / norm
            xs = np.clip(np.rint(np.linspace(cand_a[i, 0], cand_b[j, 0], N_SAMPLES)).astype(int), 0, W - 1)
            ys = np.clip(np.rint(np.linspace(cand_a[i, 1], cand_b[j, 1], N_SAMPLES)).astype(int), 0, H - 1)
            align = paf_x[ys, xs] * u[0] + paf_y[ys, xs] * u[1]
            if np.count_nonzero(align > PAF_THRESHOLD) / N_SAMPLES >= MIN_ALIGNED:
                score = float(align.mean())
                if score > best_score:
                    best, best_score = j, score
        if best >= 0:
            pairs.append((i, best, best_score))
    return pairs


def assemble(keypoints: list[np.ndarray], limbs, limb_pairs: list[list[tuple[int, int, float]]],
             main_limbs: set[int]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Limb pairs -> people: (M, P) keypoint indices (-1 = none) and (M,) scores."""
    P = len(keypoints)
    people: list[list[int]] = []
    scores: list[float] = []
    for k, ((a, b), pairs) in enumerate(zip(limbs, limb_pairs, strict=True)):
        for i, j, s in pairs:
            for n, person in enumerate(people):
                if person[a] == i:
                    person[b] = j
                    scores[n] += float(keypoints[b][j, 2]) + s
                    break
            else:
                if k in main_limbs:
                    person = [-1] * P
                    person[a], person[b] = i, j
                    people.append(person)
                    scores.append(float(keypoints[a][i, 2] + keypoints[b][j, 2]) + s)
    return np.asarray(people, np.int64).reshape(-1, P), np.asarray(scores, np.float32)


def multi_person(hm: np.ndarray, paf: np.ndarray, layout, image_size: tuple[int, int], *,
                 resized: tuple[int, int] | None = None, stride: int = 8) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The whole recipe: network maps -> people in image pixels.

    Args:
        hm: (P+1, h, w) heatmaps (the last channel is the background).
        paf: (2L, h, w) PAFs, channels as in ``layout.paf_channels``.
        layout: an :class:`edgepose.layouts.Layout`.
        image_size: ``(W, H)`` of the original image.
        resized, stride: see :func:`resize_maps`.

    Returns:
        ``keypoints`` (M, P, 3) ``(x, y, score)`` in image pixels (score 0 = missing), ``scores`` (M,).
    """
    P = layout.num_parts
    parts = resize_maps(hm[:P], image_size, resized=resized, stride=stride)
    found = [np.asarray(blob_keypoints(m), np.float32).reshape(-1, 3) for m in parts]
    del parts
    limb_pairs = []
    for (a, b), (cx, cy) in zip(layout.limbs, layout.paf_channels, strict=True):
        if len(found[a]) == 0 or len(found[b]) == 0:
            limb_pairs.append([])
            continue
        px, py = resize_maps(paf[[cx, cy]], image_size, resized=resized, stride=stride)
        limb_pairs.append(valid_pairs(found[a], found[b], px, py))
    main = set(layout.render_limbs) if layout.render_limbs is not None else set(range(layout.num_limbs))
    people, scores = assemble(found, layout.limbs, limb_pairs, main)
    kps = np.zeros((len(people), P, 3), np.float32)
    for m, person in enumerate(people):
        for p, idx in enumerate(person):
            if idx >= 0:
                kps[m, p] = found[p][idx]
    return kps, scores
