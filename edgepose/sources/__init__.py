"""Frame sources: an image, a folder of images, a video file, a camera index or a stream URL.

Every input yields a :class:`Frame`; one that cannot be read yields a frame with ``error`` set
instead of stopping the run, so that a bad file in a folder is recorded and the rest go on.

Example:
    >>> for frame in iter_frames("photos/"):  # doctest: +SKIP
    ...     print(frame.name, frame.error or frame.image.shape)

The package's parts: :mod:`edgepose.sources.base` (:class:`Frame`, :class:`SourceStats`,
:func:`classify`), :mod:`edgepose.sources.images` (image files, folders, iterables of images),
:mod:`edgepose.sources.video` (video files, cameras, streams; reconnection). This module picks the
right one (:func:`open_source`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edgepose.sources.base import VIDEO_EXTENSIONS, Frame, SourceError, SourceStats, classify, folder_files
from edgepose.sources.images import ImageSource, IterableSource
from edgepose.sources.video import RTSP_TRANSPORTS, Reconnect, VideoSource, check_url, open_capture

__all__ = [
    "Frame", "SourceError", "SourceStats", "Reconnect", "VideoSource", "ImageSource", "IterableSource",
    "classify", "open_source", "open_capture", "iter_frames", "frame_count", "VIDEO_EXTENSIONS", "folder_files",
    "check_url", "RTSP_TRANSPORTS",
]  # fmt: skip


def open_source(
    source: str | int | Path | Iterable,
    *,
    loop: bool = False,
    pace: bool = False,
    reconnect: Reconnect | None = None,
    timeout_s: float = 10.0,
    decode_threads: int | None = None,
    capture_factory: Callable | None = None,
    backend: str = "auto",
    want_planes: bool = False,
    rtsp_transport: str = "auto",
):
    """The right source object for anything :func:`classify` knows, or an iterable of images.

    Returns:
        a :class:`VideoSource`, :class:`ImageSource` or :class:`IterableSource` (not opened yet).

    Raises:
        SourceError: a path that does not exist.
    """
    if isinstance(source, (VideoSource, ImageSource, IterableSource)):
        return source
    if not isinstance(source, (str, int, Path)):
        if isinstance(source, np.ndarray):
            return IterableSource([source], name="array")
        return IterableSource(source)
    kind = classify(source)
    if kind in ("image", "folder"):
        return ImageSource(source, kind)
    return VideoSource(source, kind, loop=loop, pace=pace, reconnect=reconnect, timeout_s=timeout_s,
                       decode_threads=decode_threads, capture_factory=capture_factory, backend=backend,
                       want_planes=want_planes, rtsp_transport=rtsp_transport)  # fmt: skip


def iter_frames(source: str | int | Path, **kw) -> Iterator[Frame]:
    """Yield the frames of any source (keyword arguments as :func:`open_source`).

    Raises:
        SourceError: the source does not exist or cannot be opened.
    """
    src = open_source(source, **kw)
    src.open()
    try:
        while (frame := src.read()) is not None:
            yield frame
    finally:
        src.close()


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
