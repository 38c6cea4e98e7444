"""What travels between the stream's stages, and the queues it travels on.

* :class:`Item`: one frame on its way through the stages, with everything they add to it (letterbox,
  maps, people, timings, error, result); :meth:`Item.release` gives its buffer back to the pool.
* :data:`END`: the end mark each stage passes on when it is done.
* :class:`Latest`: the realtime mailbox after the capture (one slot per source, taken in turn, so no
  camera starves); offline the stages use bounded :class:`queue.Queue` objects.
* :class:`LastOut`: several threads feeding one queue; the last to finish sends the end mark.
* :func:`get` and :func:`put`: blocking queue calls that wake up every 0.2 s, so a stage can give up.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepose.results import FrameResult
from edgepose.sources import Frame

if TYPE_CHECKING:
    from edgepose.geometry import Letterbox
    from edgepose.stream.frames import FramePool

__all__ = ["END", "Item", "Latest", "LastOut", "get", "put"]

#: the end mark: a stage that takes it finishes and passes it on
END = object()


@dataclass
class Item:
    frame: Frame
    slot: bool  # holds a slot of the frame pool
    adopt: bool  # the image may be kept in the pool for reuse
    t_read: float
    box: Letterbox | None = None
    hm: np.ndarray | None = None
    paf: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    result: FrameResult | None = None
    people: list | None = None  # decoded by the inference worker, tracked by the decode stage
    warnings: list[str] = field(default_factory=list)
    seq: int = -1  # order in which inference took it (frames leave the pipeline in this order)
    drop: str | None = None  # counted as dropped for this reason at the sink stage
    src: int = 0  # which of the stream's sources it came from
    pool: FramePool | None = None  # the source's frame pool (its slot goes back there)

    def release(self) -> None:
        """Give the frame's slot (and its image, for reuse) back to the pool; idempotent."""
        if self.slot:
            self.slot = False
            self.pool.release(self.frame.image if self.adopt else None)
        self.frame.image = None
        self.frame.planes = None  # gives the decoder's picture back


class Latest:
    """One-slot mailboxes, one per source: ``put(k, item)`` replaces (and returns) source ``k``'s
    waiting item; ``get`` takes the sources' newest frames in turn (round robin from the source after
    the one served last), so no camera starves; the end mark comes once every source has ended."""

    def __init__(self, n: int = 1) -> None:
        self._items: list[Any] = [None] * n
        self._ended = [False] * n
        self._next = 0
        self._cond = threading.Condition()

    def put(self, k: int, item: Any) -> Any:
        with self._cond:
            old, self._items[k] = self._items[k], item
            self._cond.notify()
            return old

    def end(self, k: int = 0) -> None:
        with self._cond:
            self._ended[k] = True
            self._cond.notify()

    def _take(self) -> Any:
        n = len(self._items)
        for j in range(n):
            k = (self._next + j) % n
            if self._items[k] is not None:
                item, self._items[k] = self._items[k], None
                self._next = (k + 1) % n
                return item
        return None

    def get_nowait(self) -> Any:
        """A waiting frame (the next source's in turn), or :class:`queue.Empty`; never the end mark."""
        with self._cond:
            item = self._take()
        if item is None:
            raise queue.Empty
        return item

    def get(self, timeout: float) -> Any:
        with self._cond:
            item = self._take()
            if item is None and not all(self._ended):
                self._cond.wait(timeout)
                item = self._take()
            if item is not None:
                return item
            if all(self._ended):
                return END
            raise queue.Empty


class LastOut:
    """``n`` threads feeding one queue: the last of them to finish puts the end mark on it."""

    def __init__(self, n: int) -> None:
        self._left = n
        self._lock = threading.Lock()

    def done(self, q: queue.Queue) -> None:
        """One feeder has finished; the last one sends :data:`END` on ``q``."""
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            put(q, END)


def get(q: Any, give_up: Callable[[], bool] | None = None) -> Any:
    """The next item of ``q``, waiting as long as it takes; :data:`END` once ``give_up()`` says so."""
    while True:
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            if give_up is not None and give_up():
                return END
            continue


def put(q: queue.Queue, item: Any) -> None:
    """Put ``item`` on ``q``, waiting as long as it takes."""
    while True:
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue
