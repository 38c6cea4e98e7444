"""The stream's pipeline: stage threads joined by bounded queues, in frame order, with nothing lost.

::

    capture ──q──> pre-process + inference + decoding (``workers`` threads) ──q──> tracking ──q──> sinks ──q──> you

:class:`Stream` owns the source, the sinks and the threads: offline every frame is processed and a
slow stage makes the earlier ones wait; ``realtime`` puts a one-slot mailbox after the capture, so
that only the newest frame waits for inference. Inference workers number the frames they take
and the tracking stage puts them back in order. :meth:`Stream.stop` stops reading and lets the
frames read go through; ``stop(force=True)`` drops them (counted). :func:`stop_on_signals` wires
SIGINT/SIGTERM to it. Buffers and shrinking are in :mod:`edgepose.stream.frames`, thread counts
in :mod:`edgepose.stream.threads`, the accounting in :mod:`edgepose.stream.stats`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepose.decode import Workspace
from edgepose.results import FrameResult
from edgepose.sources import Frame, Reconnect, SourceError, VideoSource, open_source
from edgepose.stream.frames import FramePool, preprocess_image, preprocess_planes
from edgepose.stream.stats import LatencyRing, StreamStats
from edgepose.stream.threads import OpenCVThreads, ThreadPolicy

if TYPE_CHECKING:
    from edgepose.estimator import Estimator
    from edgepose.geometry import Letterbox

log = logging.getLogger(__name__)

__all__ = ["Stream", "stream", "stop_on_signals"]

_END = object()


@dataclass
class _Item:
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


class _Latest:
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
                return _END
            raise queue.Empty


def _sink_name(sink: Any) -> str:
    return getattr(sink, "name", None) or type(sink).__name__


class Stream:
    """A running (or ready to run) pipeline; iterate it for one :class:`FrameResult` per frame.

    Args:
        estimator: an :class:`edgepose.estimator.Estimator`, e.g. :class:`edgepose.runner.PoseEstimator`
            (``preprocess``, ``infer``, ``decode_maps`` and ``layout`` are required, the rest optional).
            An estimator with ``infer_people(x, box) -> (people, warnings)`` (a Triton client, whose
            server decodes) is called with each preprocessed frame instead of ``infer`` + ``decode_maps``.
        source: a file, folder, video, camera index, URL, GStreamer pipeline, a source object from
            :mod:`edgepose.sources`, or any iterable of BGR images.
        sources: several of those at once (instead of ``source``): one capture thread each, feeding
            the same inference, decoding and sinks; each source has its own tracker (ids), its frames
            carry its name (``FrameResult.source``, made unique), and ``stats.sources`` counts per
            source. A source that cannot be opened or is lost never stops the others (it counts as
            lost); in realtime mode each source keeps its newest frame and inference takes them in turn.
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
        decode_threads: FFmpeg threads decoding the video (None: 1 for a file when CPU inference uses
            every core, else FFmpeg's default).
        queue_size: capacity of each queue between stages (offline mode).
        workers: inference threads calling the session at once (results stay in frame order). With a
            CPU session of 1 intra-op thread, ``workers=2`` keeps two cores busy without the
            barrier stalls of one 2-thread session sharing the cores with capture and decoding.
        batch: frames one inference call may take at once: a worker takes the frames already waiting
            (up to ``batch``, never waiting for more; in realtime mode one per source, in turn) and runs
            those of one input size as one (N, 3, H, W) call. Useful where the provider gains from
            batches (GPUs); on this project's 2-core CPU a batch of 4 was no faster per frame than
            single calls (docs/streaming.md), so the default is 1. Ignored (1) with an estimator that
            decodes itself (``infer_people``: a Triton client, several scales).
        prescale: halve large frames (exact 2x2 box filter, the cheap path of OpenCV's area resize)
            while they stay larger than the network input, then finish with a bilinear resize: a
            1080p frame costs 0.8 instead of 5.4 ms of pre-processing; keypoints move by a fraction
            of a pixel on average. Default: on for video, cameras and streams, off for images.
        frames: yield ``(frame, result)`` pairs; ``frame.image`` is valid until the next iteration.
        capture_factory: ``f(source, kind) -> VideoCapture``-like, for custom back-ends and tests.
        backend: video-file decoding (:class:`edgepose.sources.VideoSource`): ``auto`` reads files with
            PyAV when it is installed, the pictures are 4:2:0 and no sink needs full-size frames: the
            stream then shrinks the decoded YUV planes and converts only the network-sized picture to
            BGR (1.5 ms less CPU a 1080p frame than OpenCV's BGR frame + prescaling); ``opencv`` or
            ``pyav`` force one.
        opencv_threads: OpenCV's thread count while the stream runs (restored when the last stream
            closes). Default: 1 when CPU inference uses every core (``threads x workers`` >= cores),
            untouched otherwise; then a video file is also decoded on one FFmpeg thread unless
            ``decode_threads`` says otherwise. Together +2.5% throughput on the 2-core CI machine.

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
        estimator: Estimator,
        source: Any = None,
        *,
        sources: Iterable[Any] | None = None,
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
        batch: int = 1,
        prescale: bool | None = None,
        frames: bool = False,
        capture_factory: Callable | None = None,
        backend: str = "auto",
        opencv_threads: int | None = None,
        rtsp_transport: str = "auto",
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.est: Estimator = estimator
        self._infer_people = getattr(estimator, "infer_people", None)
        self.workers = int(workers)
        self.batch = 1 if self._infer_people is not None else int(batch)
        self.realtime = realtime
        self.sinks = list(sinks)
        self.frames = frames
        self.max_frames = max_frames
        self.stats = StreamStats()
        self.source = None
        if (source is None) == (sources is None):
            raise ValueError("give either source or sources")
        specs = [source] if sources is None else list(sources)
        if not specs:
            raise ValueError("sources is empty")
        self.sources: list[Any] = []
        self._dead: dict[int, str] = {}  # sources that could not be opened (several sources only)
        self.keep_images = frames or any(getattr(s, "needs_image", True) for s in self.sinks)
        # Decoded pictures as YUV planes when nothing needs the full-size BGR frame (see frames.preprocess_planes).
        want_planes = prescale is not False and not self.keep_images and hasattr(estimator, "letterbox")
        # When inference keeps every core busy: one FFmpeg thread for a file, OpenCV single-threaded.
        policy = ThreadPolicy.choose(estimator, self.workers, opencv_threads)
        self.opencv_threads = policy.opencv
        try:
            for k, spec in enumerate(specs):
                try:
                    src = open_source(
                        spec, loop=loop, pace=realtime if pace is None else pace, reconnect=reconnect,
                        timeout_s=timeout_s, decode_threads=decode_threads, capture_factory=capture_factory,
                        backend=backend, want_planes=want_planes, rtsp_transport=rtsp_transport,
                    )  # fmt: skip
                    self.sources.append(src)
                    if isinstance(src, VideoSource):
                        src.reconfigure(want_planes=want_planes or None,
                                        decode_threads=src.decode_threads or policy.decode_threads(src.kind))  # fmt: skip
                    src.open()  # SourceError now, not at the first frame
                except SourceError as e:
                    if sources is None:
                        raise
                    log.error("source %d (%s): %s; the others go on", k + 1, spec, e)
                    self._dead[k] = str(e)
                    if len(self.sources) == k:
                        self.sources.append(_DeadSource(str(spec), str(e)))
            if len(self._dead) == len(specs):
                raise SourceError("no source could be opened: " + "; ".join(self._dead.values()))
            self._unique_names()
            self.source = self.sources[0]
            self.trackers = [self._make_tracker(track, smoothing, max_age, src) for src in self.sources]
            self.tracker = self.trackers[0]
        except BaseException:
            # the stream owns its sinks: do not leave files half-written or MQTT threads running
            for s in self.sinks:
                with contextlib.suppress(Exception):
                    s.close()
            for src in self.sources:
                with contextlib.suppress(Exception):
                    src.close()
            raise
        live = [src for k, src in enumerate(self.sources) if k not in self._dead]
        kind = getattr(live[0], "kind", "")
        self.prescale = (kind in ("video", "camera", "stream")) if prescale is None else bool(prescale)
        q = max(1, int(queue_size))
        self._q1: Any = _Latest(len(self.sources)) if realtime else queue.Queue(q)
        if realtime:
            for k in self._dead:
                self._q1.end(k)
        self._q2: queue.Queue = queue.Queue(q)
        self._q3: queue.Queue = queue.Queue(q)
        self._out: queue.Queue = queue.Queue(q)
        # frames that can hold an image at once: capture + mailbox/queue + inference (+ the rest when kept)
        n = 1 + (1 if realtime else q) + self.workers * self.batch
        if self.keep_images:
            n += 3 * q + 2 + (1 if frames else 0)
        self._pools = [FramePool(n) for _ in self.sources]  # a source's frames share one size
        self._pool = self._pools[0]
        self._live_captures = len(self.sources) - len(self._dead)
        self._per = [{"processed": 0, "failed": 0, "people": 0, "dropped": {}, "latency": LatencyRing(8192)}
                     for _ in self.sources]  # fmt: skip
        self._stop = threading.Event()
        self._force = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._captures: list[threading.Thread] = []
        self._started = False
        self._cv_held = False
        self._closed = False
        self._got_end = False
        self._max_reached = False
        self._force_t: float | None = None
        self._error: BaseException | None = None
        self._seq = 0
        self._take = threading.Lock()  # taking a frame and numbering it is one step
        self._active_workers = self.workers
        # Workers decode their own frames when the estimator takes a workspace per thread.
        try:
            self._decode_in_workers = "workspace" in inspect.signature(estimator.decode_maps).parameters
        except (TypeError, ValueError, AttributeError):
            self._decode_in_workers = False
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._stage_sum: dict[str, float] = {}
        self._stage_n = 0
        self._latency = LatencyRing()
        self.stats.threads = {
            "ort_intra_op": getattr(estimator, "threads", None),
            "capture": len(self.sources) - len(self._dead),
            "capture_decode": (getattr(self.source, "decoder_threads", None) or getattr(self.source, "decode_threads", None)
                               or decode_threads),
            "inference_workers": self.workers,
            "batch": self.batch,
            "stages": 2 + len(self.sources) - len(self._dead) + self.workers,
            "frame_buffers": n,
            "prescale": self.prescale,
            "video_backend": getattr(self.source, "backend_used", None),
            "opencv": self.opencv_threads,
        }

    # -- set-up ---------------------------------------------------------------------------------
    def _unique_names(self) -> None:
        """Sources with the same name (the same file twice, two URLs ending alike) get ``#2``, ``#3``..."""
        seen: dict[str, int] = {}
        for src in self.sources:
            name = getattr(src, "name", "")
            n = seen[name] = seen.get(name, 0) + 1
            if n > 1 and hasattr(src, "name"):
                src.name = f"{name}#{n}"

    def _make_tracker(self, track: bool | None, smoothing: Any, max_age: int, src: Any = None):
        auto = track is None
        if auto:
            track = getattr(src if src is not None else self.source, "kind", "") not in ("image", "folder")
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
        if self.opencv_threads is not None:
            OpenCVThreads.acquire(self.opencv_threads)
            self._cv_held = True
        stages = [("decode", self._decode), ("sinks", self._sink)]
        stages += [(f"infer{i}", self._infer) for i in range(self.workers)]
        multi = len(self.sources) > 1
        for k in range(len(self.sources)):
            if k in self._dead:
                continue
            stages.append((f"capture{k}" if multi else "capture", lambda k=k: self._capture(k)))
        for name, fn in stages:
            t = threading.Thread(target=self._guard, args=(name, fn), name=f"edgepose-{name}", daemon=True)
            self._threads.append(t)
            if name.startswith("capture"):
                self._captures.append(t)
            t.start()
        if not self._captures:  # every source is dead (cannot happen: refused in __init__)
            self._q1.end(0) if self.realtime else self._put(self._q1, _END)
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
        for src in self.sources:
            stop_src = getattr(src, "stop", None)
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
                for t in self._threads:
                    if t not in self._captures:
                        t.join()
                for t in self._captures:
                    t.join(timeout=1.0)  # a capture may sit in a blocking read; it is a daemon
        finally:
            for s in self.sinks:
                try:
                    s.close()
                except Exception as e:
                    self._count_sink_error(s, e, "close")
            blocked = {t.name for t in self._captures if t.is_alive()}
            for k, src in enumerate(self.sources):
                name = f"edgepose-capture{k}" if len(self.sources) > 1 else "edgepose-capture"
                if name in blocked:
                    # releasing a capture while another thread reads it can crash OpenCV: leave it to exit
                    log.warning("the capture of %s is still blocked in a read; leaving it to its time-out",
                                getattr(src, "name", k))  # fmt: skip
                else:
                    with contextlib.suppress(Exception):
                        src.close()
            self._finish_stats()
            if self._cv_held:
                self._cv_held = False
                OpenCVThreads.release()
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
            self._pools[item.src].release(item.frame.image if item.adopt else None)
        item.frame.image = None
        item.frame.planes = None  # gives the decoder's picture back

    def _drop(self, item: _Item, reason: str) -> None:
        with self._lock:
            self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + 1
            d = self._per[item.src]["dropped"]
            d[reason] = d.get(reason, 0) + 1
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
    def _capture(self, k: int = 0) -> None:
        """Source ``k``'s capture thread (one per source)."""
        src = self.sources[k]
        pool = self._pools[k]
        delivered = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and delivered >= self.max_frames:
                    self._max_reached = True
                    break
                ok, buf = pool.acquire(self._force.is_set)
                if not ok:
                    break
                frame = src.read(buf) if buf is not None else src.read()
                if frame is None:
                    pool.release(None)
                    break
                now = time.perf_counter()
                if self._t_first is None:
                    self._t_first = now - frame.read_ms / 1e3
                delivered += 1
                adopt = frame.image is not None and getattr(src, "kind", "") in ("video", "camera", "stream")
                item = _Item(frame, slot=True, adopt=adopt, t_read=frame.captured or now, src=k)
                if self.realtime:
                    old = self._q1.put(k, item)
                    if old is not None:
                        self._drop(old, "realtime")
                else:
                    self._put(self._q1, item)
        finally:
            if self.realtime:
                self._q1.end(k)
            else:
                with self._lock:
                    self._live_captures -= 1
                    last = self._live_captures == 0
                if last:
                    self._put(self._q1, _END)

    def _capture_stuck(self) -> bool:
        """Forced to stop, and the capture has not ended 2 s later (a blocking read of a dead stream)."""
        t = self._force_t
        return t is not None and time.monotonic() - t > 2.0 and any(c.is_alive() for c in self._captures)

    def _take_next(self, n: int = 1) -> list[_Item]:
        """The next frames for an inference worker (empty at the end): one, waiting for it, and up to
        ``n - 1`` more of those already waiting; numbered in the order taken."""
        with self._take:
            item = self._get(self._q1, give_up=self._capture_stuck)
            if item is _END:
                if not self.realtime:
                    self._put(self._q1, _END)  # for the other workers
                return []
            items = [item]
            while len(items) < n:
                try:
                    more = self._q1.get_nowait()
                except queue.Empty:
                    break
                if more is _END:
                    self._put(self._q1, _END)
                    break
                items.append(more)
            for it in items:
                it.seq = self._seq
                self._seq += 1
            return items

    def _infer(self) -> None:
        est = self.est
        xs: list[np.ndarray | None] = [None] * self.batch  # this worker's network input buffers, reused
        stacked: dict[tuple, np.ndarray] = {}  # and its batch buffers, per input shape
        bufs: dict = {}  # and its buffers for shrunk frames
        workspace = Workspace() if self._decode_in_workers else None  # and its decoder buffers
        try:
            while items := self._take_next(self.batch):
                ready: dict[tuple, list[tuple[_Item, np.ndarray]]] = {}  # input shape -> its frames
                for i, item in enumerate(items):
                    fr = item.frame
                    item.timings["read"] = fr.read_ms
                    if self._force.is_set():
                        item.drop = "interrupted"
                    elif fr.error is None:
                        try:
                            t0 = time.perf_counter()
                            if fr.planes is not None:
                                xs[i], item.box = preprocess_planes(est, fr.planes, xs[i], bufs, self.prescale)
                            else:
                                xs[i], item.box = preprocess_image(est, fr.image, xs[i], bufs, self.prescale)
                            item.timings["preprocess"] = (time.perf_counter() - t0) * 1e3
                            if not self.keep_images:
                                self._release(item)  # the frame is in the network input now
                            ready.setdefault(xs[i].shape, []).append((item, xs[i]))
                        except Exception as e:  # one bad frame must not end the stream
                            self._frame_failed(item, e)
                        except BaseException as e:  # noqa: BLE001 - e.g. MemoryError: stop, but keep counting
                            self._fail("infer", e)
                            item.drop = "interrupted"
                for group in ready.values():  # one call per input shape
                    self._run_network(group, stacked, workspace)
                for item in items:
                    self._put(self._q2, item)
        finally:
            with self._take:
                self._active_workers -= 1
                last = self._active_workers == 0
            if last:
                self._put(self._q2, _END)

    def _frame_failed(self, item: _Item, e: BaseException) -> None:
        fr = item.frame
        log.warning("frame %d of %s failed: %s: %s", fr.index, fr.name, type(e).__name__, e)
        item.error = f"{fr.name} frame {fr.index}: {type(e).__name__}: {e}"

    def _run_network(self, group: list[tuple[_Item, np.ndarray]], stacked: dict, workspace: Workspace | None) -> None:
        """One inference call for frames of one input size (then, in the worker, their decoding)."""
        try:
            t1 = time.perf_counter()
            if self._infer_people is not None:  # the estimator decodes (a server): people, no maps
                item, x = group[0]
                item.people, item.warnings = self._infer_people(x, item.box)
            elif len(group) == 1:
                item, x = group[0]
                item.hm, item.paf = self.est.infer(x[None])
            else:
                key = (len(group),) + group[0][1].shape
                xb = stacked.get(key)
                if xb is None:
                    xb = stacked[key] = np.empty(key, np.float32)
                for i, (_, x) in enumerate(group):
                    xb[i] = x
                hm, paf = self.est.infer(xb)
                for i, (item, _) in enumerate(group):
                    item.hm, item.paf = hm[i : i + 1], paf[i : i + 1]
            ms = (time.perf_counter() - t1) * 1e3 / len(group)
            for item, _ in group:
                item.timings["inference"] = ms  # the call's time shared by its frames
        except Exception as e:  # one bad call must not end the stream
            if len(group) > 1:  # nor take the other frames of its batch with it: one call each
                log.debug("a batch of %d failed (%s: %s); running its frames one by one", len(group), type(e).__name__, e)
                for one in group:
                    self._run_network([one], stacked, workspace)
                return
            for item, _ in group:
                self._frame_failed(item, e)
            return
        except BaseException as e:  # noqa: BLE001 - e.g. MemoryError: stop, but keep counting
            self._fail("infer", e)
            for item, _ in group:
                item.drop = "interrupted"
            return
        if workspace is not None:
            for item, _ in group:
                self._decode_maps(item, workspace)

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

    def _decode_maps(self, item: _Item, workspace: Workspace | None) -> None:
        """Maps -> people, in the inference worker right after the network: the maps are still in
        this core's cache (0.5 instead of 1.1 ms a 1080p frame when a separate thread decoded them).
        Tracking needs frame order and runs later, in the decode stage."""
        fr = item.frame
        if item.hm is None or fr.error is not None or item.error is not None:
            return
        try:
            t0 = time.perf_counter()
            kw = {} if workspace is None else {"workspace": workspace}
            item.people, item.warnings = self.est.decode_maps(item.hm[0], item.paf[0], item.box, **kw)
            item.timings["decode"] = (time.perf_counter() - t0) * 1e3
        except Exception as e:
            log.warning("frame %d of %s failed to decode: %s: %s", fr.index, fr.name, type(e).__name__, e)
            item.error = f"{fr.name} frame {fr.index}: {type(e).__name__}: {e}"
        item.hm = item.paf = None

    def _decode_one(self, item: _Item) -> None:
        if self._force.is_set():
            item.drop = item.drop or "interrupted"
        if item.drop:
            item.hm = item.paf = item.people = None
            return
        est = self.est
        fr = item.frame
        if fr.error is None and item.error is None and item.people is None:
            self._decode_maps(item, None)  # an estimator without per-thread workspaces: decoded here
        error = fr.error or item.error
        people, warnings = [], list(fr.warnings)
        size = (0, 0)
        if error is None:
            people = item.people or []
            warnings += item.warnings
            try:
                t1 = time.perf_counter()
                tracker = self.trackers[item.src]
                if tracker is not None:
                    tracker.update(people, fr.timestamp)
                    item.timings["track"] = (time.perf_counter() - t1) * 1e3
                size = item.box.src
            except Exception as e:
                log.warning("frame %d of %s failed to track: %s: %s", fr.index, fr.name, type(e).__name__, e)
                error = f"{fr.name} frame {fr.index}: {type(e).__name__}: {e}"
                people = []
        item.hm = item.paf = item.people = None
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
        image = item.frame.image  # None once given back (no sink needs it)
        r.latency_ms = r.timings["latency"] = (time.perf_counter() - item.t_read) * 1e3
        for s in self.sinks:
            try:
                s.consume(r, image)
            except Exception as e:
                self._count_sink_error(s, e)
        with self._lock:
            per = self._per[item.src]
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
        self._t_last = time.perf_counter()

    def _finish_stats(self) -> None:
        st = self.stats
        if len(self.sources) > 1:
            self._finish_multi()
        src = getattr(self.source, "stats", None)
        if src is not None and len(self.sources) == 1:
            st.read = src.read
            if src.corrupt:
                st.dropped["corrupt"] = src.corrupt
            st.source_ended = src.ended or (f"stopped after {self.max_frames} frames" if self._max_reached else "")
            st.source_lost = src.lost
            st.reopens = src.reopens
            st.loops = src.loops
            st.outage_s = getattr(src, "outage_s", 0.0)
            if getattr(src, "outage", 0):
                st.dropped["outage"] = src.outage
        if self._t_first is not None and self._t_last is not None:
            st.elapsed_s = self._t_last - self._t_first
        if self._stage_n:
            st.stage_ms = {k: v / self._stage_n for k, v in self._stage_sum.items()}
        st.latency_ms = self._latency.summary()
        if len(self.sources) > 1:
            st.source_ended = "; ".join(f"{n}: {d['source_ended'] or 'not started'}" for n, d in st.sources.items())
        if not st.accounted:  # a bug, or a capture still blocked in a read when forced to stop
            log.warning("frame accounting off: %s", st.to_dict())


    def _finish_multi(self) -> None:
        """Several sources: the totals and ``stats.sources`` (one dict per source, by name)."""
        st = self.stats
        st.read = st.reopens = st.loops = 0
        st.outage_s = 0.0
        st.source_lost = False
        for reason in ("corrupt", "outage"):
            st.dropped.pop(reason, None)
        for k, src in enumerate(self.sources):
            ss = getattr(src, "stats", None)
            per = self._per[k]
            dropped = dict(per["dropped"])
            d: dict[str, Any] = {"read": 0, "processed": per["processed"], "failed": per["failed"], "dropped": dropped,
                                 "people": per["people"], "source_ended": "", "source_lost": False, "reopens": 0,
                                 "outage_s": 0.0, "latency_ms": per["latency"].summary()}  # fmt: skip
            if k in self._dead:
                d.update(source_ended=f"cannot open: {self._dead[k]}", source_lost=True)
            elif ss is not None:
                for reason, n in (("corrupt", ss.corrupt), ("outage", getattr(ss, "outage", 0))):
                    if n:
                        dropped[reason] = n
                        st.dropped[reason] = st.dropped.get(reason, 0) + n
                d.update(read=ss.read, source_ended=ss.ended or ("stopped after the frames asked for" if self._max_reached
                         else ""), source_lost=ss.lost, reopens=ss.reopens, outage_s=round(getattr(ss, "outage_s", 0.0), 3))  # fmt: skip
                st.loops += ss.loops
            st.read += d["read"]
            st.reopens += d["reopens"]
            st.outage_s += d["outage_s"]
            st.source_lost = st.source_lost or d["source_lost"]
            st.sources[getattr(src, "name", str(k))] = d


class _DeadSource:
    """Stands for a source that could not be opened (several sources: the others go on)."""

    kind = "stream"

    def __init__(self, name: str, error: str) -> None:
        self.name, self.error = name, error

    def close(self) -> None:
        pass


def stream(estimator: Estimator, source: Any = None, **kw: Any) -> Stream:
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
