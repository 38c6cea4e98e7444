"""Results as dataclasses, and their OpenPose JSON / COCO forms.

Example:
    >>> import numpy as np
    >>> from edgepose.layouts import get_layout
    >>> p = Person(keypoints=np.zeros((18, 3), np.float32), score=0.5)
    >>> FrameResult(people=[p], image_size=(640, 480), layout=get_layout("coco18")).to_openpose_json()["version"]
    1.3
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepose.layouts import Layout

__all__ = ["Person", "FrameResult", "to_coco17", "coco_results", "STAGES"]

#: stage names in the order a frame goes through them; timings are in milliseconds
STAGES = ("read", "preprocess", "inference", "decode")


@dataclass
class Person:
    """One person.

    Attributes:
        keypoints: (K, 3) float32, ``(x, y, score)`` in original-image pixels in the model's layout;
            a missing part has score 0 (and x = y = 0).
        score: person confidence (used to rank people, e.g. for COCO AP).
        id: track id, -1 when not tracked.
    """

    keypoints: np.ndarray
    score: float
    id: int = -1

    @property
    def num_parts(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())

    def bbox(self) -> tuple[float, float, float, float]:
        """``(x, y, w, h)`` around the visible keypoints (zeros when none)."""
        vis = self.keypoints[self.keypoints[:, 2] > 0]
        if len(vis) == 0:
            return (0.0, 0.0, 0.0, 0.0)
        x0, y0 = vis[:, 0].min(), vis[:, 1].min()
        return (float(x0), float(y0), float(vis[:, 0].max() - x0), float(vis[:, 1].max() - y0))


@dataclass
class FrameResult:
    """What one frame gave.

    Attributes:
        people: the people found, best first.
        image_size: ``(width, height)`` of the original frame.
        layout: the model's keypoint layout.
        timings: milliseconds per stage (see :data:`STAGES`).
        index: frame index within its source.
        source: the file, camera or stream it came from.
        timestamp: seconds since the start of the source (video) or the epoch (camera), if known.
        error: why this frame produced nothing, when it failed.
        warnings: anything odd about this frame that did not stop it (e.g. NaN in the network output).
        latency_ms: glass-to-result latency (from the moment the frame left the decoder until its
            result was ready for the sinks, monotonic clock), set by the stream.
    """

    people: list[Person]
    image_size: tuple[int, int]
    layout: Layout
    timings: dict[str, float] = field(default_factory=dict)
    index: int = 0
    source: str = ""
    timestamp: float | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    latency_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def keypoints(self) -> np.ndarray:
        """(M, K, 3) array of every person's keypoints."""
        k = self.layout.num_parts
        if not self.people:
            return np.zeros((0, k, 3), np.float32)
        return np.stack([p.keypoints for p in self.people]).astype(np.float32, copy=False)

    def to_openpose_json(self) -> dict:
        """OpenPose's per-frame JSON (``version`` 1.3, ``pose_keypoints_2d`` flat x, y, c)."""
        out: dict = {
            "version": 1.3,
            "people": [
                {
                    "person_id": [int(p.id)],
                    "pose_keypoints_2d": [round(float(v), 3) for v in p.keypoints.reshape(-1)],
                    "face_keypoints_2d": [],
                    "hand_left_keypoints_2d": [],
                    "hand_right_keypoints_2d": [],
                    "pose_keypoints_3d": [],
                    "face_keypoints_3d": [],
                    "hand_left_keypoints_3d": [],
                    "hand_right_keypoints_3d": [],
                }
                for p in self.people
            ],
        }
        if self.error:
            out["error"] = self.error
        return out


def to_coco17(keypoints: np.ndarray, layout: Layout) -> np.ndarray:
    """Map (..., K, 3) keypoints of ``layout`` to COCO-17 order; absent parts become zeros.

    Raises:
        ValueError: the layout has no COCO-17 mapping.
    """
    if layout.to_coco17 is None:
        raise ValueError(f"layout {layout.id} has no COCO-17 mapping")
    idx = np.asarray(layout.to_coco17)
    out = np.zeros(keypoints.shape[:-2] + (17, 3), np.float32)
    have = idx >= 0
    out[..., have, :] = keypoints[..., idx[have], :]
    return out


def coco_results(result: FrameResult, image_id: int) -> list[dict]:
    """COCO keypoint results (``category_id`` 1, COCO-17 order, visibility = our score) for a frame."""
    out = []
    for p in result.people:
        k17 = to_coco17(p.keypoints, result.layout)
        out.append({
            "image_id": int(image_id),
            "category_id": 1,
            "keypoints": [round(float(v), 2) for v in k17.reshape(-1)],
            "score": float(p.score),
        })  # fmt: skip
    return out
