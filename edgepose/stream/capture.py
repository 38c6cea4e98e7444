"""The capture stage: one thread per source reads frames into the source's buffer pool.

Offline, a frame waits for room on the bounded queue (a slow stage makes the capture wait, nothing
is lost); in realtime mode it replaces the source's waiting frame in the :class:`~edgepose.stream.
queues.Latest` mailbox, and the frame it replaces is counted as dropped (``realtime``). The last
capture to end sends the end mark.
"""

from __future__ import annotations

import time
from typing import Any

from edgepose.stream.accounting import Accounting
from edgepose.stream.control import Control
from edgepose.stream.frames import FramePool
from edgepose.stream.queues import Item, LastOut, put

__all__ = ["Capture"]

#: kinds of source whose decoded pictures may go back to the pool for the next frame
_REUSED = ("video", "camera", "stream")


class Capture:
    """Reads ``sources`` (those not in ``dead``) onto ``q`` (a queue, or a mailbox when ``realtime``)."""

    def __init__(self, sources: list[Any], dead: dict[int, str], pools: list[FramePool], q: Any, control: Control,
                 books: Accounting, *, realtime: bool, max_frames: int | None) -> None:  # fmt: skip
        self.sources, self.pools, self.q = sources, pools, q
        self.control, self.books = control, books
        self.realtime, self.max_frames = realtime, max_frames
        self.max_reached = False  # a source stopped at max_frames
        self._live = LastOut(len(sources) - len(dead))

    def run(self, k: int = 0) -> None:
        """Source ``k``'s capture thread."""
        src, pool = self.sources[k], self.pools[k]
        stopped, forced = self.control.stopped, self.control.forced
        delivered = 0
        try:
            while not stopped.is_set():
                if self.max_frames is not None and delivered >= self.max_frames:
                    self.max_reached = True
                    break
                ok, buf = pool.acquire(forced.is_set)
                if not ok:
                    break
                frame = src.read(buf) if buf is not None else src.read()
                if frame is None:
                    pool.release(None)
                    break
                now = time.perf_counter()
                self.books.first_read(now, frame.read_ms)
                delivered += 1
                adopt = frame.image is not None and getattr(src, "kind", "") in _REUSED
                item = Item(frame, slot=True, adopt=adopt, t_read=frame.captured or now, src=k, pool=pool)
                if self.realtime:
                    old = self.q.put(k, item)
                    if old is not None:
                        self.books.drop(old, "realtime")
                else:
                    put(self.q, item)
        finally:
            if self.realtime:
                self.q.end(k)
            else:
                self._live.done(self.q)
