"""The sink stage: each result, in frame order, to every sink (:mod:`edgepose.sinks`), then to you.

A sink that fails to write is counted (``stats.sink_errors``) and the others still get the result;
frames marked dropped (realtime, interrupted) are counted and never reach a sink. Each result is
counted in the books (processed or failed, per source, latency) as it passes.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from edgepose.stream.accounting import Accounting
from edgepose.stream.control import Control
from edgepose.stream.queues import END, Item, get, put

__all__ = ["SinkStage"]


class SinkStage:
    """From ``q_in`` through ``sinks`` to ``q_out`` (the consumer's queue). ``keep_frames``: the
    consumer gets the frames too, so their buffers are released by the consumer, not here."""

    def __init__(self, sinks: list[Any], q_in: queue.Queue, q_out: queue.Queue, control: Control, books: Accounting,
                 *, keep_frames: bool) -> None:  # fmt: skip
        self.sinks, self.q_in, self.q_out = sinks, q_in, q_out
        self.control, self.books, self.keep_frames = control, books, keep_frames

    def run(self) -> None:
        forced = self.control.forced
        try:
            while (item := get(self.q_in)) is not END:
                if item.drop or forced.is_set() or item.result is None:
                    self.books.drop(item, item.drop or "interrupted")
                    continue
                try:
                    self.one(item)
                except BaseException as e:  # noqa: BLE001 - a bug, not a bad frame
                    self.control.fail("sinks", e)
                    self.books.drop(item, "interrupted")
                    continue
                if not self.keep_frames:
                    item.release()
                put(self.q_out, item)
        finally:
            put(self.q_out, END)

    def one(self, item: Item) -> None:
        r = item.result
        image = item.frame.image  # None once given back (no sink needs it)
        r.latency_ms = r.timings["latency"] = (time.perf_counter() - item.t_read) * 1e3
        for s in self.sinks:
            try:
                s.consume(r, image)
            except Exception as e:
                self.books.sink_error(s, e)
        self.books.result(item.src, r)

    def close(self) -> None:
        """Close (flush) every sink; a failure is counted and the others are still closed."""
        for s in self.sinks:
            try:
                s.close()
            except Exception as e:
                self.books.sink_error(s, e, "close")
