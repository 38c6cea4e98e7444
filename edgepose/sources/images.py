"""Image sources: an image file, a folder of images, or any iterable of images in memory.

A file that cannot be read becomes a :class:`~edgepose.sources.Frame` with ``error`` set, so that a
bad file in a folder is recorded and the rest go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgepose.imageio import IMAGE_EXTENSIONS, ImageError, read_image
from edgepose.sources.base import Frame, SourceStats, classify, folder_files

__all__ = ["ImageSource", "IterableSource"]


def _image_frame(i: int, path: Path) -> Frame:
    t0 = time.perf_counter()
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return Frame(i, None, path.name, error=f"{path.name}: not an image file (extension {path.suffix or 'none'})")
    try:
        img, warnings = read_image(path)
    except ImageError as e:
        return Frame(i, None, path.name, error=str(e))
    return Frame(i, img, path.name, read_ms=(time.perf_counter() - t0) * 1e3, warnings=warnings)


class IterableSource:
    """Frames from any iterable of BGR images (numpy arrays) or :class:`Frame` objects, e.g. a
    camera library's generator; indices count from 0 and timestamps are wall-clock when absent."""

    def __init__(self, frames: Iterable, name: str = "frames", fps: float = 0.0) -> None:
        self._it = iter(frames)
        self.kind = "frames"
        self.name = name
        self.fps = fps
        self.loop = False
        self.stats = SourceStats()
        self._i = 0
        self._stop = threading.Event()

    def open(self) -> IterableSource:
        """Nothing to open; returns the source."""
        return self

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # pragma: no cover - a generator already running elsewhere
                pass

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        if self._stop.is_set():
            self.stats.ended = self.stats.ended or "stopped"
            return None
        t0 = time.perf_counter()
        try:
            item = next(self._it)
        except StopIteration:
            self.stats.ended = self.stats.ended or "end of input"
            return None
        self.stats.read += 1
        if isinstance(item, Frame):
            self._i = item.index + 1
            return item
        i = self._i
        self._i += 1
        if not isinstance(item, np.ndarray):
            return Frame(i, None, self.name, timestamp=time.time(), error=f"frame {i}: not an image ({type(item).__name__})")
        return Frame(i, item, self.name, timestamp=time.time(), read_ms=(time.perf_counter() - t0) * 1e3)


class ImageSource(IterableSource):
    """Frames from an image file or every file of a folder, in name order; a file that cannot be read
    is a frame with ``error`` set (the run goes on)."""

    def __init__(self, source: str | Path, kind: str | None = None) -> None:
        kind = kind or classify(source)
        path = Path(source)
        self.paths = [path] if kind == "image" else folder_files(path)
        super().__init__((_image_frame(i, p) for i, p in enumerate(self.paths)), name=path.name)
        self.kind = kind
        self.stats.expected = len(self.paths)
