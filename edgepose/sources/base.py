"""What every frame source shares: :class:`Frame`, :class:`SourceStats`, :class:`SourceError` and
:func:`classify` (which kind of source a path, index or URL is).

A source has ``kind``, ``name``, ``fps``, ``loop`` and ``stats``, and ``open()``, ``read(out=None)``
(the next :class:`Frame`, or None at the end), ``stop()`` (safe from any thread) and ``close()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepose.redact import printable, redact

__all__ = ["Frame", "SourceError", "SourceStats", "classify", "folder_files", "VIDEO_EXTENSIONS"]

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
        planes: the decoded (Y, U, V) 4:2:0 planes instead of ``image``, from a source asked for
            them (``VideoSource(want_planes=True)``; :func:`edgepose.sources.pyav.i420_to_bgr` makes BGR).
        captured: ``time.perf_counter()`` (a monotonic clock) when the picture left the decoder:
            where the stream's glass-to-result latency starts (None: when the stream took it).
    """

    index: int
    image: np.ndarray | None
    name: str
    timestamp: float | None = None
    read_ms: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    captured: float | None = None


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
        raise SourceError(f"{printable(redact(str(s)))}: no such file, folder, camera index or URL")
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        return "video"
    return "image"


def folder_files(folder: Path) -> list[Path]:
    """Every visible file in a folder (not recursive), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


@dataclass
class SourceStats:
    """What a source did.

    Attributes:
        read: frames taken from the source, corrupt ones included.
        corrupt: frames that could not be decoded (skipped).
        reopens: successful reopens after the source stopped.
        reopen_attempts: every reopen attempt, successful or not.
        loops: times a looped file started again.
        expected: frames the file's header announces (None for live sources).
        ended: why reading stopped (``end of file``, ``stopped``, ``lost: ...``, ``ended early: ...``).
        lost: True when the source stopped and could not be reopened, or a file ended early.
        outage: frames a live source would have delivered while it was down (its frame rate times
            the gap, estimated; counted in ``read`` and left out of the indices like corrupt ones).
        outage_s: seconds a live source was down, all outages together.
    """

    read: int = 0
    corrupt: int = 0
    reopens: int = 0
    reopen_attempts: int = 0
    loops: int = 0
    expected: int | None = None
    ended: str = ""
    lost: bool = False
    outage: int = 0
    outage_s: float = 0.0
