"""Opening and closing the stream's sources, and their trackers.

:func:`open_sources` opens every source before any frame is read, so a missing file or an
unreachable camera fails at once. With several sources one that cannot be opened is logged and
stands as a :class:`DeadSource` (counted as lost); the others go on. :func:`close_sources` leaves
alone a source whose capture is still blocked in a read (releasing it then can crash OpenCV).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgepose.sources import Reconnect, SourceError, VideoSource, open_source
from edgepose.stream.threads import ThreadPolicy

if TYPE_CHECKING:
    from edgepose.estimator import Estimator

log = logging.getLogger(__name__)

__all__ = ["DeadSource", "open_sources", "close_sources", "make_tracker"]


class DeadSource:
    """Stands for a source that could not be opened (several sources: the others go on)."""

    kind = "stream"

    def __init__(self, name: str, error: str) -> None:
        self.name, self.error = name, error

    def close(self) -> None:
        pass


def open_sources(specs: list[Any], into: list[Any], *, several: bool, policy: ThreadPolicy, want_planes: bool,
                 loop: bool, pace: bool, reconnect: Reconnect | None, timeout_s: float, decode_threads: int | None,
                 capture_factory: Callable | None, backend: str, rtsp_transport: str) -> dict[int, str]:  # fmt: skip
    """Open each of ``specs`` into ``into`` (appended as they open, so the caller can close them if
    this raises); return the sources that could not be opened (index -> error; several only).

    Raises:
        SourceError: one source (``several`` False) or every source cannot be opened.
    """
    dead: dict[int, str] = {}
    for k, spec in enumerate(specs):
        try:
            src = open_source(
                spec, loop=loop, pace=pace, reconnect=reconnect, timeout_s=timeout_s, decode_threads=decode_threads,
                capture_factory=capture_factory, backend=backend, want_planes=want_planes, rtsp_transport=rtsp_transport,
            )  # fmt: skip
            into.append(src)
            if isinstance(src, VideoSource):
                src.reconfigure(want_planes=want_planes or None,
                                decode_threads=src.decode_threads or policy.decode_threads(src.kind))  # fmt: skip
            src.open()  # SourceError now, not at the first frame
        except SourceError as e:
            if not several:
                raise
            log.error("source %d (%s): %s; the others go on", k + 1, spec, e)
            dead[k] = str(e)
            if len(into) == k:
                into.append(DeadSource(str(spec), str(e)))
    if len(dead) == len(specs):
        raise SourceError("no source could be opened: " + "; ".join(dead.values()))
    _unique_names(into)
    return dead


def _unique_names(sources: list[Any]) -> None:
    """Sources with the same name (the same file twice, two URLs ending alike) get ``#2``, ``#3``..."""
    seen: dict[str, int] = {}
    for src in sources:
        name = getattr(src, "name", "")
        n = seen[name] = seen.get(name, 0) + 1
        if n > 1 and hasattr(src, "name"):
            src.name = f"{name}#{n}"


def make_tracker(est: Estimator, track: bool | None, smoothing: Any, max_age: int, src: Any):
    """A :class:`edgepose.tracking.Tracker` for ``src``, or None. ``track`` None: on for video,
    cameras and streams, off for images and folders (and off, with a warning, without the tracker's
    dependencies)."""
    auto = track is None
    if auto:
        track = getattr(src, "kind", "") not in ("image", "folder")
    if not track:
        if smoothing is not None:
            raise ValueError("smoothing needs tracking (track=True)")
        return None
    from edgepose.tracking import Tracker

    try:
        return Tracker(est.layout, max_age=max_age, smoothing=smoothing)
    except ImportError as e:
        if auto and smoothing is None:
            log.warning("%s; people are not tracked (ids stay -1)", e)
            return None
        raise


def close_sources(sources: list[Any], blocked: set[int]) -> None:
    """Close every source but those in ``blocked`` (their capture is still in a read: left to its time-out)."""
    for k, src in enumerate(sources):
        if k in blocked:
            log.warning("the capture of %s is still blocked in a read; leaving it to its time-out",
                        getattr(src, "name", k))  # fmt: skip
        else:
            with contextlib.suppress(Exception):
                src.close()
