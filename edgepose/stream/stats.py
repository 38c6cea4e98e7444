"""The stream's accounting: what was read, processed, failed and dropped (and why), and how fast.

Every frame taken from the source ends in the outputs (processed, or failed with its error) or is
counted in :attr:`StreamStats.dropped` with one of the :data:`DROP_REASONS`:
``stats.read == stats.processed + stats.failed + sum(stats.dropped.values())``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["StreamStats", "DROP_REASONS", "LatencyRing"]

#: why a frame that was read is not in the outputs
DROP_REASONS = {
    "realtime": "superseded by a newer frame while inference was busy (--realtime)",
    "corrupt": "could not be decoded",
    "interrupted": "in flight when the run was interrupted",
    "outage": "a live source was down (frame rate x gap, estimated) until it was reopened or given up",
}


class LatencyRing:
    """The last ``size`` latencies in a preallocated ring (a long run does not grow)."""

    def __init__(self, size: int = 65536) -> None:
        self._a = np.zeros(size, np.float64)
        self._n = 0

    def add(self, ms: float) -> None:
        self._a[self._n % len(self._a)] = ms
        self._n += 1

    def summary(self) -> dict[str, float]:
        """``p50``, ``p99``, ``mean``, ``max`` (ms, rounded) and ``n``; empty without samples."""
        if not self._n:
            return {}
        v = self._a[: min(self._n, len(self._a))]
        p50, p99 = np.percentile(v, [50, 99])
        return {"p50": round(float(p50), 2), "p99": round(float(p99), 2), "mean": round(float(v.mean()), 2),
                "max": round(float(v.max()), 2), "n": int(self._n)}  # fmt: skip


@dataclass
class StreamStats:
    """Counts and timings of one stream.

    Attributes:
        read: frames taken from the source (corrupt ones included).
        processed: frames that went through the model and reached the sinks.
        failed: frames that reached the sinks with an error (an unreadable image, a model error).
        dropped: frames read but not in the outputs, by reason (see :data:`DROP_REASONS`).
        people: people found in all processed frames.
        source_ended: why the source stopped (``end of file``, ``stopped``, ``lost: ...``, ``ended early: ...``).
        source_lost: the source stopped and could not be reopened, or a file ended early.
        reopens: times the source was reopened after it stopped.
        loops: times a looped file started again.
        sink_errors: failed writes per sink class name.
        elapsed_s: seconds from the first frame read to the last one through the sinks.
        stage_ms: mean milliseconds per stage over processed frames.
        threads: the threads doing the work (ORT intra-op threads, FFmpeg decoding threads, stages).
        interrupted: a stop was requested (signal, :meth:`edgepose.stream.Stream.stop` or a consumer that left early).
        failures: ``(frame index, error)`` of the failed frames (the first 1000).
        latency_ms: glass-to-result latency of processed frames (from the moment a frame left the
            decoder to the moment its result was ready for the sinks, monotonic clock): ``p50``, ``p99``,
            ``mean``, ``max`` and ``n`` (over the last 65,536 frames).
        outage_s: seconds the source was down.
        sources: with several sources, one dict per source name: ``read``, ``processed``, ``failed``,
            ``dropped``, ``people``, ``source_ended``, ``source_lost``, ``reopens``, ``outage_s``,
            ``latency_ms``.
    """

    read: int = 0
    processed: int = 0
    failed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    people: int = 0
    source_ended: str = ""
    source_lost: bool = False
    reopens: int = 0
    loops: int = 0
    sink_errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    threads: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    failures: list[tuple[int, str]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    outage_s: float = 0.0
    sources: dict[str, dict] = field(default_factory=dict)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def fps(self) -> float:
        """Frames through the pipeline per second of wall time."""
        return (self.processed + self.failed) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def accounted(self) -> bool:
        """Whether every frame read is in the outputs or counted as dropped."""
        return self.read == self.processed + self.failed + self.total_dropped

    @property
    def ok(self) -> bool:
        """Nothing failed: no failed or corrupt frame, no lost source, no sink error."""
        return not (self.failed or self.dropped.get("corrupt") or self.source_lost or self.sink_errors)

    def to_dict(self) -> dict:
        return {
            "read": self.read, "processed": self.processed, "failed": self.failed, "dropped": dict(self.dropped),
            "people": self.people, "source_ended": self.source_ended, "source_lost": self.source_lost,
            "reopens": self.reopens, "loops": self.loops, "sink_errors": dict(self.sink_errors),
            "elapsed_s": round(self.elapsed_s, 3), "fps": round(self.fps, 2),
            "stage_ms": {k: round(v, 3) for k, v in self.stage_ms.items()}, "threads": dict(self.threads),
            "interrupted": self.interrupted, "accounted": self.accounted, "latency_ms": dict(self.latency_ms),
            "outage_s": round(self.outage_s, 3), **({"sources": dict(self.sources)} if self.sources else {}),
        }  # fmt: skip

    def summary(self) -> str:
        """One line: frames read, processed, failed, dropped (by reason), people, speed, source end."""
        drops = ", ".join(f"{n} {k}" for k, n in sorted(self.dropped.items()) if n)
        line = (
            f"{self.read} frames read, {self.processed} processed, {self.failed} failed, "
            f"{self.total_dropped} dropped{f' ({drops})' if drops else ''}, {self.people} people found, "
            f"{self.fps:.1f} frames/s"
        )
        if self.latency_ms.get("n"):
            line += f", latency p50 {self.latency_ms['p50']:.0f} ms p99 {self.latency_ms['p99']:.0f} ms"
        extra = [self.source_ended] if self.source_ended else []
        if self.reopens:
            extra.append(f"reopened {self.reopens}x")
        if self.outage_s:
            extra.append(f"down {self.outage_s:.1f} s")
        if self.sink_errors:
            extra.append("sink errors: " + ", ".join(f"{k} {v}" for k, v in self.sink_errors.items()))
        return line + (f"; source: {'; '.join(extra)}" if extra else "")
