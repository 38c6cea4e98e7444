"""Where results go: OpenPose JSON files, COCO results, rendered images and videos.

All file writers write atomically (temporary file, then rename), so nothing already written is
lost or half-written when a later input fails or the run is interrupted.

Example:
    >>> sink = OpenPoseJsonDir("out/json")  # doctest: +SKIP
    >>> sink.write(result)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edgepose.results import FrameResult, coco_results

__all__ = ["write_json_atomic", "OpenPoseJsonDir", "CocoWriter", "render", "RenderSink"]


def write_json_atomic(path: str | Path, obj) -> Path:
    """Write JSON to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def frame_stem(result: FrameResult, per_frame: bool) -> str:
    stem = Path(result.source).stem or "frame"
    return f"{stem}_{result.index:012d}" if per_frame else stem


class OpenPoseJsonDir:
    """One OpenPose JSON file per frame: ``<image stem>_keypoints.json`` or
    ``<video stem>_<frame:012d>_keypoints.json`` (OpenPose's own naming)."""

    def __init__(self, folder: str | Path, per_frame: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.per_frame = per_frame

    def write(self, result: FrameResult) -> Path:
        return write_json_atomic(self.folder / f"{frame_stem(result, self.per_frame)}_keypoints.json",
                                 result.to_openpose_json())  # fmt: skip

    def close(self) -> None:
        pass


class CocoWriter:
    """COCO keypoint results (COCO-17 order) for a whole run, written on :meth:`close`.

    Args:
        path: output JSON file.
        image_ids: optional map from file name to COCO image id; otherwise the frame index is used.
    """

    def __init__(self, path: str | Path, image_ids: dict[str, int] | None = None) -> None:
        self.path = Path(path)
        self.image_ids = image_ids or {}
        self.items: list[dict] = []
        self.failures: list[dict] = []

    def write(self, result: FrameResult) -> None:
        image_id = self.image_ids.get(Path(result.source).name, result.index)
        if result.error:
            self.failures.append({"image_id": image_id, "source": result.source, "error": result.error})
        self.items.extend(coco_results(result, image_id))

    def close(self) -> Path:
        write_json_atomic(self.path, self.items)
        if self.failures:
            write_json_atomic(self.path.with_suffix(".failures.json"), self.failures)
        return self.path


def _colors(n: int) -> list[tuple[int, int, int]]:
    hsv = np.zeros((1, n, 3), np.uint8)
    hsv[0, :, 0] = np.linspace(0, 179, n, endpoint=False).astype(np.uint8)
    hsv[0, :, 1:] = 255
    return [tuple(int(c) for c in bgr) for bgr in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]]


def render(image: np.ndarray, result: FrameResult, thickness: int | None = None) -> np.ndarray:
    """Draw every person's skeleton on a copy of ``image`` (BGR)."""
    out = image.copy()
    lay = result.layout
    limbs = lay.drawn_limbs()
    colors = _colors(max(len(limbs), 1))
    t = thickness or max(2, round(max(out.shape[:2]) / 300))
    for p in result.people:
        kp = p.keypoints
        for (a, b), c in zip(limbs, colors):
            if kp[a, 2] > 0 and kp[b, 2] > 0:
                cv2.line(out, (int(kp[a, 0]), int(kp[a, 1])), (int(kp[b, 0]), int(kp[b, 1])), c, t, cv2.LINE_AA)
        for x, y, s in kp:
            if s > 0:
                cv2.circle(out, (int(x), int(y)), t + 1, (255, 255, 255), -1, cv2.LINE_AA)
        if p.id >= 0:
            vis = kp[kp[:, 2] > 0]
            if len(vis):
                org = (int(vis[:, 0].min()), max(12, int(vis[:, 1].min()) - 6))
                cv2.putText(out, f"#{p.id}", org, cv2.FONT_HERSHEY_SIMPLEX, 0.4 + t / 6, (0, 255, 255), max(1, t // 2))
    return out


class RenderSink:
    """Rendered overlays: one image file, a folder of images, or a video file.

    Args:
        path: ``out.jpg`` (single image), a folder, or ``out.mp4`` (video).
        fps: frames per second of a video output.
    """

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        self.path = Path(path)
        self.fps = fps or 25.0
        suffix = self.path.suffix.lower()
        self.kind = "video" if suffix in (".mp4", ".avi", ".mkv", ".mov") else "image" if suffix else "dir"
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        if self.kind == "dir":
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, image: np.ndarray, result: FrameResult) -> None:
        drawn = render(image, result)
        if self.kind == "video":
            if self._writer is None:
                self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() in (".mp4", ".mov") else "MJPG"))
                h, w = drawn.shape[:2]
                self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
                if not self._writer.isOpened():
                    raise OSError(f"OpenCV cannot write video {self.path}")
                self._size = (w, h)
            if (drawn.shape[1], drawn.shape[0]) != self._size:
                drawn = cv2.resize(drawn, self._size)
            self._writer.write(drawn)
            return
        target = self.path if self.kind == "image" else self.path / f"{frame_stem(result, False)}_rendered.jpg"
        if self.kind == "dir" and result.timestamp is not None:
            target = self.path / f"{frame_stem(result, True)}_rendered.jpg"
        tmp = target.with_name(f".{target.stem}.partial{target.suffix}")
        if not cv2.imwrite(str(tmp), drawn):
            raise OSError(f"OpenCV cannot write {target}")
        os.replace(tmp, target)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if self._tmp is not None and self._tmp.exists():
                os.replace(self._tmp, self.path)
