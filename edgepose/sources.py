"""Frame sources: an image, a folder of images, a video file, a camera index or a stream URL.

Every input yields a :class:`Frame`; one that cannot be read yields a frame with ``error`` set
instead of stopping the run, so that a bad file in a folder is recorded and the rest go on.

Example:
    >>> for frame in iter_frames("photos/"):  # doctest: +SKIP
    ...     print(frame.name, frame.error or frame.image.shape)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgepose.imageio import IMAGE_EXTENSIONS, ImageError, read_image

__all__ = ["Frame", "SourceError", "classify", "iter_frames", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}


class SourceError(RuntimeError):
    """A source cannot be opened at all."""


@dataclass
class Frame:
    """One frame (or the failure to get it).

    Attributes:
        index: position in the source (0-based).
        image: BGR uint8 (H, W, 3), None when ``error`` is set.
        name: file name (images) or the source name (video, camera).
        timestamp: seconds from the start of a video, or wall-clock seconds for a camera.
        read_ms: time spent reading/decoding it.
        error: why it could not be read.
        warnings: oddities that did not stop reading.
    """

    index: int
    image: np.ndarray | None
    name: str
    timestamp: float | None = None
    read_ms: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def classify(source: str | int | Path) -> str:
    """``image``, ``folder``, ``video``, ``camera`` or ``stream`` (URL / GStreamer pipeline).

    Raises:
        SourceError: a path that does not exist.
    """
    s = str(source)
    if isinstance(source, int) or s.isdigit():
        return "camera"
    if "://" in s or "!" in s:
        return "stream"
    p = Path(s)
    if p.is_dir():
        return "folder"
    if not p.exists():
        raise SourceError(f"{s}: no such file, folder, camera index or URL")
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        return "video"
    return "image"


def folder_files(folder: Path) -> list[Path]:
    """Every visible file in a folder (not recursive), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def _image_frame(i: int, path: Path) -> Frame:
    t0 = time.perf_counter()
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return Frame(i, None, path.name, error=f"{path.name}: not an image file (extension {path.suffix or 'none'})")
    try:
        img, warnings = read_image(path)
    except ImageError as e:
        return Frame(i, None, path.name, error=str(e))
    return Frame(i, img, path.name, read_ms=(time.perf_counter() - t0) * 1e3, warnings=warnings)


def open_capture(source: str | int, kind: str) -> cv2.VideoCapture:
    """Open a video, camera or stream with OpenCV.

    Raises:
        SourceError: OpenCV cannot open it.
    """
    if kind == "camera":
        cap = cv2.VideoCapture(int(source))
    elif kind == "stream" and "!" in str(source):
        cap = cv2.VideoCapture(str(source), cv2.CAP_GSTREAMER)
    else:
        cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        cap.release()
        hint = " (is the camera connected and free?)" if kind == "camera" else ""
        raise SourceError(f"cannot open {kind} {source}{hint}")
    return cap


def _video_frames(source: str | int, kind: str) -> Iterator[Frame]:
    cap = open_capture(source, kind)
    name = Path(str(source)).name if kind == "video" else str(source)
    try:
        i = 0
        while True:
            t0 = time.perf_counter()
            ok, img = cap.read()
            if not ok:
                break
            ts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3 if kind == "video" else time.time()
            yield Frame(i, img, name, timestamp=ts, read_ms=(time.perf_counter() - t0) * 1e3)
            i += 1
    finally:
        cap.release()


def iter_frames(source: str | int | Path) -> Iterator[Frame]:
    """Yield the frames of any source.

    Raises:
        SourceError: the source does not exist or cannot be opened.
    """
    kind = classify(source)
    if kind == "image":
        yield _image_frame(0, Path(source))
    elif kind == "folder":
        for i, p in enumerate(folder_files(Path(source))):
            yield _image_frame(i, p)
    else:
        yield from _video_frames(source, kind)


def frame_count(source: str | int | Path) -> int | None:
    """Number of frames when known up front (folders, files), else None."""
    kind = classify(source)
    if kind == "image":
        return 1
    if kind == "folder":
        return len(folder_files(Path(source)))
    if kind == "video":
        cap = cv2.VideoCapture(str(source))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        return n if n > 0 else None
    return None
