"""Stopping the stream, and a stage's unexpected error: the state every stage reads.

:meth:`Control.stop` stops reading (the sources' blocking reads are woken); ``force`` also drops
what is in flight. A stage's unexpected error (a bug, not a bad frame) is kept for
:meth:`edgepose.stream.Stream.close` to raise and forces the stop, so the other stages drain and
count what they hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from edgepose.stream.stats import StreamStats

log = logging.getLogger(__name__)

__all__ = ["Control"]


class Control:
    """The stop and force flags, the first stage error and the capture threads of one stream."""

    def __init__(self, sources: list[Any], stats: StreamStats) -> None:
        self.sources = sources
        self.stats = stats
        self.stopped = threading.Event()
        self.forced = threading.Event()
        self.force_t: float | None = None  # when the stop was forced (monotonic)
        self.error: BaseException | None = None
        self.captures: dict[int, threading.Thread] = {}  # source index -> its capture thread

    def stop(self, force: bool = False) -> None:
        """Stop reading; ``force``: drop what is in flight too. Safe from any thread and signal handlers."""
        self.stats.interrupted = True
        self.stopped.set()
        if force:
            if self.force_t is None:
                self.force_t = time.monotonic()
            self.forced.set()
        for src in self.sources:
            stop_src = getattr(src, "stop", None)
            if stop_src is not None:
                stop_src()

    def guard(self, name: str, fn: Callable[[], None]) -> None:
        """Run a stage. Stages catch a bad frame's errors themselves (a failed frame); anything else
        stops the stream (force: the rest is drained and counted) and is raised by ``Stream.close``.
        Each stage sends its end mark in a ``finally``, so the stages after it still finish."""
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer's thread
            self.fail(name, e)

    def fail(self, name: str, e: BaseException) -> None:
        log.error("stage %s failed: %s: %s", name, type(e).__name__, e, exc_info=e)
        if self.error is None:
            self.error = e
        self.stop(force=True)

    def capture_stuck(self) -> bool:
        """Forced to stop, and a capture has not ended 2 s later (a blocking read of a dead stream)."""
        t = self.force_t
        return t is not None and time.monotonic() - t > 2.0 and any(c.is_alive() for c in self.captures.values())
