"""The stream's books: every frame read is counted once, as processed, failed or dropped (and why),
in the totals and per source, with latencies and the mean time of each step.

:class:`Accounting` is written by the stages (the capture notes the first read, any stage a drop,
the sink stage each result) and fills :class:`~edgepose.stream.stats.StreamStats` when the stream
closes (:meth:`Accounting.finish`), from its own counts and the sources' (read, corrupt, outages,
reopens).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from edgepose.stream.stats import LatencyRing, StreamStats

if TYPE_CHECKING:
    from edgepose.results import FrameResult
    from edgepose.stream.queues import Item

log = logging.getLogger(__name__)

__all__ = ["Accounting"]


def _sink_name(sink: Any) -> str:
    return getattr(sink, "name", None) or type(sink).__name__


class Accounting:
    """Counts for ``stats`` over ``n_sources`` sources; thread-safe."""

    def __init__(self, stats: StreamStats, n_sources: int) -> None:
        self.stats = stats
        self.lock = threading.Lock()
        self.per = [{"processed": 0, "failed": 0, "people": 0, "dropped": {}, "latency": LatencyRing(8192)}
                    for _ in range(n_sources)]  # fmt: skip
        self.t_first: float | None = None
        self.t_last: float | None = None
        self._stage_sum: dict[str, float] = {}
        self._stage_n = 0
        self._latency = LatencyRing()

    def first_read(self, now: float, read_ms: float) -> None:
        """A frame was read at ``now``; the run's clock starts when the first one began to be read."""
        if self.t_first is None:
            self.t_first = now - read_ms / 1e3

    def drop(self, item: Item, reason: str) -> None:
        """``item`` leaves the pipeline unprocessed for ``reason`` (one of ``DROP_REASONS``)."""
        with self.lock:
            self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + 1
            d = self.per[item.src]["dropped"]
            d[reason] = d.get(reason, 0) + 1
        item.release()

    def sink_error(self, sink: Any, e: BaseException, what: str = "write") -> None:
        name = _sink_name(sink)
        with self.lock:
            n = self.stats.sink_errors[name] = self.stats.sink_errors.get(name, 0) + 1
        if n == 1 or n % 100 == 0:
            log.error("sink %s: %s failed (%d so far): %s: %s", name, what, n, type(e).__name__, e)

    def result(self, src: int, r: FrameResult) -> None:
        """A result went to the sinks: processed (people, latency, step times) or failed (its error)."""
        with self.lock:
            per = self.per[src]
            if r.error is None:
                self._latency.add(r.latency_ms)
                per["latency"].add(r.latency_ms)
                per["processed"] += 1
                per["people"] += len(r.people)
                self.stats.processed += 1
                self.stats.people += len(r.people)
                for k, v in r.timings.items():
                    self._stage_sum[k] = self._stage_sum.get(k, 0.0) + v
                self._stage_n += 1
            else:
                per["failed"] += 1
                self.stats.failed += 1
                if len(self.stats.failures) < 1000:
                    self.stats.failures.append((r.index, r.error))
        self.t_last = time.perf_counter()

    def finish(self, sources: list[Any], dead: dict[int, str], max_frames: int | None, max_reached: bool) -> None:
        """Fill ``stats`` at the end: read counts and endings from the sources, times, latencies."""
        st = self.stats
        if len(sources) > 1:
            self._finish_multi(sources, dead, max_reached)
        src = getattr(sources[0], "stats", None) if sources else None
        if src is not None and len(sources) == 1:
            st.read = src.read
            if src.corrupt:
                st.dropped["corrupt"] = src.corrupt
            st.source_ended = src.ended or (f"stopped after {max_frames} frames" if max_reached else "")
            st.source_lost = src.lost
            st.reopens = src.reopens
            st.loops = src.loops
            st.outage_s = getattr(src, "outage_s", 0.0)
            if getattr(src, "outage", 0):
                st.dropped["outage"] = src.outage
        if self.t_first is not None and self.t_last is not None:
            st.elapsed_s = self.t_last - self.t_first
        if self._stage_n:
            st.stage_ms = {k: v / self._stage_n for k, v in self._stage_sum.items()}
        st.latency_ms = self._latency.summary()
        if len(sources) > 1:
            st.source_ended = "; ".join(f"{n}: {d['source_ended'] or 'not started'}" for n, d in st.sources.items())
        if not st.accounted:  # a bug, or a capture still blocked in a read when forced to stop
            log.warning("frame accounting off: %s", st.to_dict())

    def _finish_multi(self, sources: list[Any], dead: dict[int, str], max_reached: bool) -> None:
        """Several sources: the totals and ``stats.sources`` (one dict per source, by name)."""
        st = self.stats
        st.read = st.reopens = st.loops = 0
        st.outage_s = 0.0
        st.source_lost = False
        for reason in ("corrupt", "outage"):
            st.dropped.pop(reason, None)
        for k, src in enumerate(sources):
            ss = getattr(src, "stats", None)
            per = self.per[k]
            dropped = dict(per["dropped"])
            d: dict[str, Any] = {"read": 0, "processed": per["processed"], "failed": per["failed"], "dropped": dropped,
                                 "people": per["people"], "source_ended": "", "source_lost": False, "reopens": 0,
                                 "outage_s": 0.0, "latency_ms": per["latency"].summary()}  # fmt: skip
            if k in dead:
                d.update(source_ended=f"cannot open: {dead[k]}", source_lost=True)
            elif ss is not None:
                for reason, n in (("corrupt", ss.corrupt), ("outage", getattr(ss, "outage", 0))):
                    if n:
                        dropped[reason] = n
                        st.dropped[reason] = st.dropped.get(reason, 0) + n
                d.update(read=ss.read, source_ended=ss.ended or ("stopped after the frames asked for" if max_reached
                         else ""), source_lost=ss.lost, reopens=ss.reopens, outage_s=round(getattr(ss, "outage_s", 0.0), 3))  # fmt: skip
                st.loops += ss.loops
            st.read += d["read"]
            st.reopens += d["reopens"]
            st.outage_s += d["outage_s"]
            st.source_lost = st.source_lost or d["source_lost"]
            st.sources[getattr(src, "name", str(k))] = d
