"""Streaming: one result per frame from any source, in pipelined threads, with nothing lost.

The stages run in their own threads, joined by bounded queues::

    capture ──q──> pre-process + inference (``workers`` threads) ──q──> decode + tracking ──q──> sinks ──q──> you

OpenCV's decoding, ONNX Runtime and most of numpy release the GIL, so reading and decoding
overlap inference. With several inference workers, results still leave in frame order. Frames
are decoded into a small pool of preallocated buffers, large frames are halved with a box filter
before the estimator's own resize (``prescale``), and each worker reuses its network input
buffer, so a long run does not grow in memory.

On a CPU, one session whose threads take every core stalls whenever capture or decoding needs a
core; two workers on sessions of half the cores each keep the cores busy (``edgepose run`` does
this for offline video; see ``benchmarks/stream_bench.py``)::

    est = PoseEstimator(model, threads=1)        # on a 2-core machine
    for r in est.stream("clip.mp4", workers=2):
        ...

Two policies:

* offline (default): every frame is processed; a slow stage makes the earlier ones wait.
* realtime: capture never waits; when inference falls behind, only the newest frame is kept and
  each frame it replaces is counted as dropped (``realtime``). A file is read at its frame rate.

Every frame taken from the source ends in the outputs (processed, or failed with its error) or
is counted in :attr:`StreamStats.dropped` with its reason (``realtime``, ``corrupt``,
``interrupted``): ``stats.read == stats.processed + stats.failed + sum(stats.dropped.values())``.

:meth:`Stream.stop` stops reading and lets every frame already read go through to the sinks;
``stop(force=True)`` (a second Ctrl-C) drops what is in flight, counted as ``interrupted``. Either
way the sinks are closed (flushed) at the end. :func:`stop_on_signals` wires SIGINT/SIGTERM to it.

Example:
    >>> from edgepose import PoseEstimator  # doctest: +SKIP
    >>> est = PoseEstimator("models/mobilenet_thin.onnx")  # doctest: +SKIP
    >>> for r in est.stream("rtsp://camera/stream", realtime=True):  # doctest: +SKIP
    ...     print(r.index, [(p.id, p.score) for p in r.people])
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edgepose.results import FrameResult
from edgepose.sources import Frame, Reconnect, open_source

log = logging.getLogger(__name__)

__all__ = ["Stream", "StreamStats", "stream", "stop_on_signals", "DROP_REASONS"]

#: why a frame that was read is not in the outputs
DROP_REASONS = {
    "realtime": "superseded by a newer frame while inference was busy (--realtime)",
    "corrupt": "could not be decoded",
    "interrupted": "in flight when the run was interrupted",
}

_END = object()


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
        interrupted: a stop was requested (signal, :meth:`Stream.stop` or a consumer that left early).
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
            "interrupted": self.interrupted, "accounted": self.accounted,
        }  # fmt: skip

    def summary(self) -> str:
        """One line: frames read, processed, failed, dropped (by reason), people, speed, source end."""
        drops = ", ".join(f"{n} {k}" for k, n in sorted(self.dropped.items()) if n)
        line = (
            f"{self.read} frames read, {self.processed} processed, {self.failed} failed, "
            f"{self.total_dropped} dropped{f' ({drops})' if drops else ''}, {self.people} people found, "
            f"{self.fps:.1f} frames/s"
        )
        extra = [self.source_ended] if self.source_ended else []
        if self.reopens:
            extra.append(f"reopened {self.reopens}x")
        if self.sink_errors:
            extra.append("sink errors: " + ", ".join(f"{k} {v}" for k, v in self.sink_errors.items()))
        return line + (f"; source: {'; '.join(extra)}" if extra else "")


@dataclass
class _Item:
    frame: Frame
    slot: bool  # holds a slot of the frame pool
    adopt: bool  # the image may be kept in the pool for reuse
    t_read: float
    box: Any = None
    hm: np.ndarray | None = None
    paf: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    result: FrameResult | None = None
    seq: int = -1  # order in which inference took it (frames leave the pipeline in this order)
    drop: str | None = None  # counted as dropped for this reason at the sink stage


class _FramePool:
    """At most ``size`` frames in flight; released images are kept and handed back to the capture."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[np.ndarray] = []
        self._out = 0
        self._cond = threading.Condition()

    def acquire(self, cancelled: Callable[[], bool]) -> tuple[bool, np.ndarray | None]:
        with self._cond:
            while self._out >= self.size:
                if cancelled():
                    return False, None
                self._cond.wait(0.1)
            self._out += 1
            return True, (self._free.pop() if self._free else None)

    def release(self, image: np.ndarray | None) -> None:
        with self._cond:
            self._out -= 1
            if (
                image is not None
                and len(self._free) < self.size
                and image.flags.c_contiguous
                and image.flags.owndata
                and image.flags.writeable
            ):
                self._free.append(image)
            self._cond.notify()


class _Latest:
    """A one-slot mailbox: ``put`` replaces (and returns) the waiting item; the end mark is never lost."""

    def __init__(self) -> None:
        self._item: Any = None
        self._ended = False
        self._cond = threading.Condition()

    def put(self, item: Any) -> Any:
        with self._cond:
            old, self._item = self._item, item
            self._cond.notify()
            return old

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify()

    def get(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None and not self._ended:
                self._cond.wait(timeout)
            if self._item is not None:
                item, self._item = self._item, None
                return item
            if self._ended:
                return _END
            raise queue.Empty


def _sink_name(sink: Any) -> str:
    return getattr(sink, "name", None) or type(sink).__name__


class Stream:
    """A running (or ready to run) pipeline; iterate it for one :class:`FrameResult` per frame.

    Args:
        estimator: a :class:`edgepose.runner.PoseEstimator` (anything with ``preprocess``, ``infer``,
            ``decode_maps`` and ``layout``).
        source: a file, folder, video, camera index, URL, GStreamer pipeline, a source object from
            :mod:`edgepose.sources`, or any iterable of BGR images.
        realtime: keep only the newest frame when inference falls behind (drops are counted);
            otherwise every frame is processed.
        sinks: objects with ``consume(result, image)`` and ``close()`` (see :mod:`edgepose.sinks`);
            they are closed (flushed) when the stream ends.
        track: give people stable ids (:class:`edgepose.tracking.Tracker`); default: on for video,
            cameras and streams, off for images and folders.
        smoothing: One-Euro smoothing of tracked keypoints (:class:`edgepose.tracking.Smoothing`), or None.
        max_age: frames a track is remembered without a match.
        loop: start a file again at its end.
        max_frames: stop after this many frames are read (None: until the source ends).
        pace: read a file at its frame rate (default: on in realtime mode).
        reconnect: reopening policy for a source that stops (:class:`edgepose.sources.Reconnect`).
        timeout_s: open/read time-out for network streams.
        decode_threads: FFmpeg threads decoding the video (None: OpenCV's default).
        queue_size: capacity of each queue between stages (offline mode).
        workers: inference threads calling the session at once (results stay in frame order). With a
            CPU session of 1 intra-op thread, ``workers=2`` keeps two cores busy without the
            barrier stalls of one 2-thread session sharing the cores with capture and decoding.
        prescale: halve large frames (exact 2x2 box filter, the cheap path of OpenCV's area resize)
            while they stay larger than the network input, then finish with a bilinear resize: a
            1080p frame costs 0.8 instead of 5.4 ms of pre-processing; keypoints move by a fraction
            of a pixel on average. Default: on for video, cameras and streams, off for images.
        frames: yield ``(frame, result)`` pairs; ``frame.image`` is valid until the next iteration.
        capture_factory: ``f(source, kind) -> VideoCapture``-like, for custom back-ends and tests.

    Raises:
        SourceError: the source does not exist or cannot be opened (raised here, before any frame).

    Example:
        >>> with Stream(est, "clip.mp4", sinks=[JsonLinesSink("out.jsonl")]) as s:  # doctest: +SKIP
        ...     for r in s:
        ...         pass
        >>> s.stats.summary()  # doctest: +SKIP
        '72 frames read, 72 processed, 0 failed, 0 dropped, 144 people found, 17.9 frames/s; source: end of file'
    """

    def __init__(
        self,
        estimator: Any,
        source: Any,
        *,
        realtime: bool = False,
        sinks: Iterable[Any] = (),
        track: bool | None = None,
        smoothing: Any = None,
        max_age: int = 10,
        loop: bool = False,
        max_frames: int | None = None,
        pace: bool | None = None,
        reconnect: Reconnect | None = None,
        timeout_s: float = 10.0,
        decode_threads: int | None = None,
        queue_size: int = 2,
        workers: int = 1,
        prescale: bool | None = None,
        frames: bool = False,
        capture_factory: Callable | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.est = estimator
        self.workers = int(workers)
        self.realtime = realtime
        self.sinks = list(sinks)
        self.frames = frames
        self.max_frames = max_frames
        self.stats = StreamStats()
        self.source = None
        try:
            self.source = open_source(
                source, loop=loop, pace=realtime if pace is None else pace, reconnect=reconnect,
                timeout_s=timeout_s, decode_threads=decode_threads, capture_factory=capture_factory,
            )  # fmt: skip
            self.source.open()  # SourceError now, not at the first frame
            self.tracker = self._make_tracker(track, smoothing, max_age)
        except BaseException:
            # the stream owns its sinks: do not leave files half-written or MQTT threads running
            for s in self.sinks:
                with contextlib.suppress(Exception):
                    s.close()
            if self.source is not None:
                with contextlib.suppress(Exception):
                    self.source.close()
            raise
        kind = getattr(self.source, "kind", "")
        self.prescale = (kind in ("video", "camera", "stream")) if prescale is None else bool(prescale)
        self.keep_images = frames or any(getattr(s, "needs_image", True) for s in self.sinks)
        q = max(1, int(queue_size))
        self._q1: Any = _Latest() if realtime else queue.Queue(q)
        self._q2: queue.Queue = queue.Queue(q)
        self._q3: queue.Queue = queue.Queue(q)
        self._out: queue.Queue = queue.Queue(q)
        # frames that can hold an image at once: capture + mailbox/queue + inference (+ the rest when kept)
        n = 1 + (1 if realtime else q) + self.workers
        if self.keep_images:
            n += 3 * q + 2 + (1 if frames else 0)
        self._pool = _FramePool(n)
        self._stop = threading.Event()
        self._force = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False
        self._got_end = False
        self._max_reached = False
        self._force_t: float | None = None
        self._error: BaseException | None = None
        self._seq = 0
        self._take = threading.Lock()  # taking a frame and numbering it is one step
        self._active_workers = self.workers
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._stage_sum: dict[str, float] = {}
        self._stage_n = 0
        self.stats.threads = {
            "ort_intra_op": getattr(estimator, "threads", None),
            "capture": 1,
            "capture_decode": getattr(self.source, "decoder_threads", None) or decode_threads,
            "inference_workers": self.workers,
            "stages": 3 + self.workers,
            "frame_buffers": n,
            "prescale": self.prescale,
        }

    # -- set-up ---------------------------------------------------------------------------------
    def _make_tracker(self, track: bool | None, smoothing: Any, max_age: int):
        auto = track is None
        if auto:
            track = getattr(self.source, "kind", "") not in ("image", "folder")
        if not track:
            if smoothing is not None:
                raise ValueError("smoothing needs tracking (track=True)")
            return None
        from edgepose.tracking import Tracker

        try:
            return Tracker(self.est.layout, max_age=max_age, smoothing=smoothing)
        except ImportError as e:
            if auto and smoothing is None:
                log.warning("%s; people are not tracked (ids stay -1)", e)
                return None
            raise

    # -- control ----------------------------------------------------------------------------------
    def start(self) -> Stream:
        """Start the stage threads (iterating does this)."""
        if self._started:
            return self
        if self._closed:
            raise RuntimeError("this stream is closed")
        self._started = True
        stages = [("capture", self._capture)] + [(f"infer{i}", self._infer) for i in range(self.workers)]
        stages += [("decode", self._decode), ("sinks", self._sink)]
        for name, fn in stages:
            t = threading.Thread(target=self._guard, args=(name, fn), name=f"edgepose-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self, force: bool = False) -> None:
        """Stop reading; frames already read still go to the sinks, unless ``force`` (then they are
        dropped as ``interrupted``). Safe from any thread and from signal handlers."""
        self.stats.interrupted = True
        self._stop.set()
        if force:
            if self._force_t is None:
                self._force_t = time.monotonic()
            self._force.set()
        stop_src = getattr(self.source, "stop", None)
        if stop_src is not None:
            stop_src()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        self.start()
        held: _Item | None = None
        try:
            while True:
                if held is not None:
                    self._release(held)
                    held = None
                item = self._get(self._out)
                if item is _END:
                    self._got_end = True
                    break
                if self.frames:
                    held = item
                    yield item.frame, item.result
                else:
                    yield item.result
        finally:
            if held is not None:
                self._release(held)
            self.close()

    def run(self, on_result: Callable[[FrameResult], Any] | None = None) -> StreamStats:
        """Consume the whole stream (sinks do the work); return the stats."""
        for r in self:
            if on_result is not None:
                on_result(r[1] if self.frames else r)
        return self.stats

    def close(self) -> StreamStats:
        """Stop, let the frames in flight reach the sinks, close sinks and source; idempotent.

        Raises:
            the first unexpected error of a stage thread, after everything is closed.
        """
        if self._closed:
            return self.stats
        self._closed = True
        try:
            if self._started:
                if not self._got_end:
                    self.stop()  # the consumer left early
                while not self._got_end:  # whatever the consumer did not take has been through the sinks already
                    item = self._get(self._out)
                    if item is _END:
                        self._got_end = True
                        break
                    self._release(item)
                for t in self._threads[1:]:
                    t.join()
                self._threads[0].join(timeout=1.0)  # capture may sit in a blocking read; it is a daemon
        finally:
            for s in self.sinks:
                try:
                    s.close()
                except Exception as e:
                    self._count_sink_error(s, e, "close")
            if self._threads and self._threads[0].is_alive():
                # releasing a capture while another thread reads it can crash OpenCV: leave it to exit
                log.warning("the capture is still blocked in a read; leaving it to its time-out")
            else:
                with contextlib.suppress(Exception):
                    self.source.close()
            self._finish_stats()
        if self._error is not None:
            raise self._error
        return self.stats

    # -- helpers ------------------------------------------------------------------------------------
    def _get(self, q: Any, give_up: Callable[[], bool] | None = None) -> Any:
        while True:
            try:
                return q.get(timeout=0.2)
            except queue.Empty:
                if give_up is not None and give_up():
                    return _END
                continue

    def _put(self, q: queue.Queue, item: Any) -> None:
        while True:
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _release(self, item: _Item) -> None:
        if item.slot:
            item.slot = False
            self._pool.release(item.frame.image if item.adopt else None)
        item.frame.image = None

    def _drop(self, item: _Item, reason: str) -> None:
        with self._lock:
            self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + 1
        self._release(item)

    def _count_sink_error(self, sink: Any, e: BaseException, what: str = "write") -> None:
        name = _sink_name(sink)
        with self._lock:
            n = self.stats.sink_errors[name] = self.stats.sink_errors.get(name, 0) + 1
        if n == 1 or n % 100 == 0:
            log.error("sink %s: %s failed (%d so far): %s: %s", name, what, n, type(e).__name__, e)

    def _guard(self, name: str, fn: Callable[[], None]) -> None:
        """Run a stage. Stages catch a bad frame's errors themselves (a failed frame); anything else
        stops the stream (force: the rest is drained and counted) and is raised by :meth:`close`.
        Each stage sends its end mark in a ``finally``, so the stages after it still finish."""
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer's thread
            self._fail(name, e)

    def _fail(self, name: str, e: BaseException) -> None:
        log.error("stage %s failed: %s: %s", name, type(e).__name__, e, exc_info=e)
        if self._error is None:
            self._error = e
        self.stop(force=True)

    # -- stages -------------------------------------------------------------------------------------
    def _capture(self) -> None:
        src = self.source
        delivered = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and delivered >= self.max_frames:
                    self._max_reached = True
                    break
                ok, buf = self._pool.acquire(self._force.is_set)
                if not ok:
                    break
                frame = src.read(buf) if buf is not None else src.read()
                if frame is None:
                    self._pool.release(None)
                    break
                now = time.perf_counter()
                if self._t_first is None:
                    self._t_first = now - frame.read_ms / 1e3
                delivered += 1
                adopt = frame.image is not None and getattr(src, "kind", "") in ("video", "camera", "stream")
                item = _Item(frame, slot=True, adopt=adopt, t_read=now)
                if self.realtime:
                    old = self._q1.put(item)
                    if old is not None:
                        self._drop(old, "realtime")
                else:
                    self._put(self._q1, item)
        finally:
            if self.realtime:
                self._q1.end()
            else:
                self._put(self._q1, _END)

    def _capture_stuck(self) -> bool:
        """Forced to stop, and the capture has not ended 2 s later (a blocking read of a dead stream)."""
        t = self._force_t
        return t is not None and time.monotonic() - t > 2.0 and self._threads[0].is_alive()

    def _take_next(self) -> Any:
        """The next frame for an inference worker, numbered in the order taken (or the end mark)."""
        with self._take:
            item = self._get(self._q1, give_up=self._capture_stuck)
            if item is _END:
                if not self.realtime:
                    self._put(self._q1, _END)  # for the other workers
                return _END
            item.seq = self._seq
            self._seq += 1
            return item

    def _preprocess(self, image: np.ndarray, x: np.ndarray | None, halves: dict) -> tuple[np.ndarray, Any]:
        """``est.preprocess`` after halving a large frame (see ``prescale``); the letterbox still
        maps to the original frame.

        After the exact 2x2 box halvings the frame is less than twice the network input, and a
        bilinear resize finishes it (0.3 ms for 960x540 -> 526x296, against 2.0 ms for OpenCV's
        general area resize): at that ratio bilinear sees every source pixel. AP on coco-val-mini
        scaled up 3x: 0.343 this way, 0.339 with area resizing after halving, 0.345 with one area
        resize of the full frame (the differences are within one person's worth on 44 images).
        """
        est = self.est
        letterbox = getattr(est, "letterbox", None)
        if not (self.prescale and letterbox is not None and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3):  # fmt: skip
            return est.preprocess(image, x)
        h, w = image.shape[:2]
        box = letterbox(w, h)
        nw, nh = box.resized
        src = image
        while src.shape[0] % 2 == 0 and src.shape[1] % 2 == 0 and src.shape[1] // 2 >= nw and src.shape[0] // 2 >= nh:
            shape = (src.shape[0] // 2, src.shape[1] // 2, 3)
            dst = halves.get(shape)
            if dst is None:
                dst = halves[shape] = np.empty(shape, np.uint8)
            cv2.resize(src, (shape[1], shape[0]), dst=dst, interpolation=cv2.INTER_AREA)
            src = dst
        if src is image:
            return est.preprocess(image, x)
        if src.shape[:2] != (nh, nw):
            dst = halves.get("final")
            if dst is None or dst.shape != (nh, nw, 3):
                dst = halves["final"] = np.empty((nh, nw, 3), np.uint8)
            cv2.resize(src, (nw, nh), dst=dst, interpolation=cv2.INTER_LINEAR)
            src = dst
        x, got = est.preprocess(src, x)
        if got.resized != box.resized or got.padded != box.padded:  # the estimator resized it again
            return est.preprocess(image, x)
        return x, box

    def _infer(self) -> None:
        est = self.est
        x: np.ndarray | None = None  # this worker's network input buffer, reused
        halves: dict = {}  # and its buffers for halved frames
        try:
            while (item := self._take_next()) is not _END:
                fr = item.frame
                item.timings["read"] = fr.read_ms
                if self._force.is_set():
                    item.drop = "interrupted"
                elif fr.error is None:
                    try:
                        t0 = time.perf_counter()
                        x, item.box = self._preprocess(fr.image, x, halves)
                        t1 = time.perf_counter()
                        if not self.keep_images:
                            self._release(item)  # the frame is in the network input now
                        item.hm, item.paf = est.infer(x[None])
                        t2 = time.perf_counter()
                        item.timings["preprocess"] = (t1 - t0) * 1e3
                        item.timings["inference"] = (t2 - t1) * 1e3
                    except Exception as e:  # one bad frame must not end the stream
                        log.warning("frame %d of %s failed: %s: %s", fr.index, fr.name, type(e).__name__, e)
                        item.error = f"{fr.name} frame {fr.index}: {type(e).__name__}: {e}"
                    except BaseException as e:  # noqa: BLE001 - e.g. MemoryError: stop, but keep counting
                        self._fail("infer", e)
                        item.drop = "interrupted"
                self._put(self._q2, item)
        finally:
            with self._take:
                self._active_workers -= 1
                last = self._active_workers == 0
            if last:
                self._put(self._q2, _END)

    def _decode(self) -> None:
        pending: dict[int, _Item] = {}
        want = 0
        try:
            while True:
                item = self._get(self._q2)
                if item is _END:
                    for k in sorted(pending):  # only after a crashed worker: keep what is there
                        self._put(self._q3, pending.pop(k))
                    return
                pending[item.seq] = item
                while want in pending or (self._force.is_set() and pending):
                    nxt = pending.pop(want) if want in pending else pending.pop(min(pending))
                    want = nxt.seq + 1
                    try:
                        self._decode_one(nxt)
                    except BaseException as e:  # noqa: BLE001 - a bug, not a bad frame
                        self._fail("decode", e)
                        nxt.drop = "interrupted"
                    self._put(self._q3, nxt)
        finally:
            self._put(self._q3, _END)

    def _decode_one(self, item: _Item) -> None:
        if self._force.is_set():
            item.drop = item.drop or "interrupted"
        if item.drop:
            item.hm = item.paf = None
            return
        est = self.est
        fr = item.frame
        error = fr.error or item.error
        people, warnings = [], list(fr.warnings)
        size = (0, 0)
        if error is None:
            try:
                t0 = time.perf_counter()
                people, w = est.decode_maps(item.hm[0], item.paf[0], item.box)
                warnings += w
                t1 = time.perf_counter()
                item.timings["decode"] = (t1 - t0) * 1e3
                if self.tracker is not None:
                    self.tracker.update(people, fr.timestamp)
                    item.timings["track"] = (time.perf_counter() - t1) * 1e3
                size = item.box.src
            except Exception as e:
                log.warning("frame %d of %s failed to decode: %s: %s", fr.index, fr.name, type(e).__name__, e)
                error = f"{fr.name} frame {fr.index}: {type(e).__name__}: {e}"
                people = []
        item.hm = item.paf = None
        item.result = FrameResult(
            people=people, image_size=size, layout=est.layout, timings=item.timings, index=fr.index,
            source=fr.name, timestamp=fr.timestamp, error=error, warnings=warnings,
        )  # fmt: skip

    def _sink(self) -> None:
        try:
            while (item := self._get(self._q3)) is not _END:
                if item.drop or self._force.is_set() or item.result is None:
                    self._drop(item, item.drop or "interrupted")
                    continue
                try:
                    self._sink_one(item)
                except BaseException as e:  # noqa: BLE001 - a bug, not a bad frame
                    self._fail("sinks", e)
                    self._drop(item, "interrupted")
                    continue
                if not self.frames:
                    self._release(item)
                self._put(self._out, item)
        finally:
            self._put(self._out, _END)

    def _sink_one(self, item: _Item) -> None:
        r = item.result
        r.timings["latency"] = (time.perf_counter() - item.t_read) * 1e3
        image = item.frame.image  # None once given back (no sink needs it)
        for s in self.sinks:
            try:
                s.consume(r, image)
            except Exception as e:
                self._count_sink_error(s, e)
        with self._lock:
            if r.error is None:
                self.stats.processed += 1
                self.stats.people += len(r.people)
                for k, v in r.timings.items():
                    self._stage_sum[k] = self._stage_sum.get(k, 0.0) + v
                self._stage_n += 1
            else:
                self.stats.failed += 1
                if len(self.stats.failures) < 1000:
                    self.stats.failures.append((r.index, r.error))
        self._t_last = time.perf_counter()

    def _finish_stats(self) -> None:
        st, src = self.stats, getattr(self.source, "stats", None)
        if src is not None:
            st.read = src.read
            if src.corrupt:
                st.dropped["corrupt"] = src.corrupt
            st.source_ended = src.ended or (f"stopped after {self.max_frames} frames" if self._max_reached else "")
            st.source_lost = src.lost
            st.reopens = src.reopens
            st.loops = src.loops
        if self._t_first is not None and self._t_last is not None:
            st.elapsed_s = self._t_last - self._t_first
        if self._stage_n:
            st.stage_ms = {k: v / self._stage_n for k, v in self._stage_sum.items()}
        if not st.accounted:  # a bug, or a capture still blocked in a read when forced to stop
            log.warning("frame accounting off: %s", st.to_dict())


def stream(estimator: Any, source: Any, **kw: Any) -> Stream:
    """``Stream(estimator, source, **kw)``: iterate it for one :class:`FrameResult` per frame.

    Example:
        >>> for r in stream(est, "clip.mp4", smoothing=Smoothing()):  # doctest: +SKIP
        ...     print(r.index, [p.id for p in r.people])
    """
    return Stream(estimator, source, **kw)


@contextlib.contextmanager
def stop_on_signals(s: Stream, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[dict]:
    """SIGINT/SIGTERM stop ``s`` cleanly (frames read still reach the sinks); a second signal forces.

    Yields a dict whose ``"signal"`` is the first signal received (or None). Does nothing outside
    the main thread (Python delivers signals only there).
    """
    got: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum, _frame):
        if got["signal"] is None:
            got["signal"] = signum
            log.warning("%s: stopping; frames already read are finished (again to drop them)",
                        signal.Signals(signum).name)  # fmt: skip
            s.stop()
        else:
            s.stop(force=True)

    old = {}
    for sig in signals:
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover - not allowed here
            pass
    try:
        yield got
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)

