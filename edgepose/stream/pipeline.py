"""The stream's pipeline: stage threads joined by bounded queues, in frame order, with nothing lost.

::

    capture ──q1──> inference (``workers`` threads) ──q2──> ordering ──q3──> sinks ──out──> you

:class:`Stream` opens the sources and composes the stages, one job each:

* :class:`~edgepose.stream.capture.Capture` (one thread per source) reads frames into buffer pools;
* :class:`~edgepose.stream.infer.Inference` pre-processes, runs the network and decodes the maps;
* :class:`~edgepose.stream.decoding.Ordering` restores frame order, tracks, makes the results;
* :class:`~edgepose.stream.sink.SinkStage` hands each result to the sinks, then to the consumer;
* :class:`~edgepose.stream.accounting.Accounting` counts every frame (totals, per source) and
  :class:`~edgepose.stream.queues.Latest` is the realtime mailbox that serves the sources in turn;
* :class:`~edgepose.stream.control.Control` holds the stop/force flags and the first stage error.

Offline every frame is processed and a slow stage makes the earlier ones wait; ``realtime`` puts a
one-slot mailbox after the capture, so that only the newest frame waits for inference.
:meth:`Stream.stop` stops reading and lets the frames read go through; ``stop(force=True)`` drops
them (counted). :func:`stop_on_signals` wires SIGINT/SIGTERM to it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from edgepose.results import FrameResult
from edgepose.sources import Reconnect
from edgepose.stream.accounting import Accounting
from edgepose.stream.capture import Capture
from edgepose.stream.control import Control
from edgepose.stream.decoding import Ordering
from edgepose.stream.frames import FramePool
from edgepose.stream.infer import Inference
from edgepose.stream.opening import close_sources, make_tracker, open_sources
from edgepose.stream.queues import END, Item, Latest, get
from edgepose.stream.sink import SinkStage
from edgepose.stream.stats import StreamStats
from edgepose.stream.threads import OpenCVThreads, ThreadPolicy

if TYPE_CHECKING:
    from edgepose.estimator import Estimator

log = logging.getLogger(__name__)

__all__ = ["Stream", "stream", "stop_on_signals"]


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
        workers: inference threads calling the session at once (results stay in frame order); with
            1-thread CPU sessions, ``workers=2`` keeps two cores busy without a 2-thread session's stalls.
        batch: frames one inference call may take at once, of those already waiting (:mod:`edgepose.
            stream.infer`); for GPUs: on a 2-core CPU 4 was no faster per frame than 1, the default
            (docs/streaming.md). Ignored with an estimator that decodes itself (``infer_people``).
        prescale: shrink large frames by exact 2x2 halvings, then bilinear (:func:`edgepose.stream.
            frames.shrink`: 0.8 instead of 5.4 ms a 1080p frame). Default: on but for images.
        frames: yield ``(frame, result)`` pairs; ``frame.image`` is valid until the next iteration.
        capture_factory: ``f(source, kind) -> VideoCapture``-like, for custom back-ends and tests.
        backend: video-file decoding (:class:`edgepose.sources.VideoSource`): ``auto`` uses PyAV when
            installed and no sink needs full-size frames (YUV planes shrunk, 1.5 ms less CPU a 1080p
            frame); ``opencv`` or ``pyav`` force one.
        opencv_threads: OpenCV's thread count while the stream runs. Default: 1 when CPU inference
            uses every core, untouched otherwise (:mod:`edgepose.stream.threads`).

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
        if (source is None) == (sources is None):
            raise ValueError("give either source or sources")
        specs = [source] if sources is None else list(sources)
        if not specs:
            raise ValueError("sources is empty")
        self.est: Estimator = estimator
        self.workers = int(workers)
        self.batch = 1 if getattr(estimator, "infer_people", None) is not None else int(batch)
        self.realtime, self.frames, self.max_frames = realtime, frames, max_frames
        self.sinks = list(sinks)
        self.stats = StreamStats()
        self.source = None
        self.sources: list[Any] = []
        self.keep_images = frames or any(getattr(s, "needs_image", True) for s in self.sinks)
        # Decoded pictures as YUV planes when nothing needs the full-size BGR frame (see frames.preprocess_planes).
        want_planes = prescale is not False and not self.keep_images and hasattr(estimator, "letterbox")
        # When inference keeps every core busy: one FFmpeg thread for a file, OpenCV single-threaded.
        policy = ThreadPolicy.choose(estimator, self.workers, opencv_threads)
        self.opencv_threads = policy.opencv
        try:
            self._dead = open_sources(
                specs, self.sources, several=sources is not None, policy=policy, want_planes=want_planes, loop=loop,
                pace=realtime if pace is None else pace, reconnect=reconnect, timeout_s=timeout_s,
                decode_threads=decode_threads, capture_factory=capture_factory, backend=backend,
                rtsp_transport=rtsp_transport,
            )  # fmt: skip
            self.source = self.sources[0]
            self.trackers = [make_tracker(estimator, track, smoothing, max_age, src) for src in self.sources]
            self.tracker = self.trackers[0]
        except BaseException:
            # the stream owns its sinks: do not leave files half-written or MQTT threads running
            for s in self.sinks:
                with contextlib.suppress(Exception):
                    s.close()
            close_sources(self.sources, set())
            raise
        live = [src for k, src in enumerate(self.sources) if k not in self._dead]
        kind = getattr(live[0], "kind", "")
        self.prescale = (kind in ("video", "camera", "stream")) if prescale is None else bool(prescale)
        q = max(1, int(queue_size))
        q1: Any = Latest(len(self.sources)) if realtime else queue.Queue(q)
        if realtime:
            for k in self._dead:
                q1.end(k)
        q2, q3, self._out = queue.Queue(q), queue.Queue(q), queue.Queue(q)
        # frames that can hold an image at once: capture + mailbox/queue + inference (+ the rest when kept)
        n = 1 + (1 if realtime else q) + self.workers * self.batch
        if self.keep_images:
            n += 3 * q + 2 + (1 if frames else 0)
        pools = [FramePool(n) for _ in self.sources]  # a source's frames share one size
        self._control = Control(self.sources, self.stats)
        self._books = Accounting(self.stats, len(self.sources))
        self._capture = Capture(self.sources, self._dead, pools, q1, self._control, self._books, realtime=realtime,
                                max_frames=max_frames)  # fmt: skip
        self._infer = Inference(estimator, q1, q2, self._control, workers=self.workers, batch=self.batch,
                                realtime=realtime, prescale=self.prescale, release=not self.keep_images)  # fmt: skip
        self._order = Ordering(estimator, self.trackers, q2, q3, self._control)
        self._sink = SinkStage(self.sinks, q3, self._out, self._control, self._books, keep_frames=frames)
        self._threads: list[threading.Thread] = []
        self._started = self._cv_held = self._closed = self._got_end = False
        live_n = len(self.sources) - len(self._dead)
        self.stats.threads = {
            "ort_intra_op": getattr(estimator, "threads", None), "capture": live_n,
            "capture_decode": (getattr(self.source, "decoder_threads", None) or getattr(self.source, "decode_threads", None)
                               or decode_threads),
            "inference_workers": self.workers, "batch": self.batch, "stages": 2 + live_n + self.workers,
            "frame_buffers": n, "prescale": self.prescale, "video_backend": getattr(self.source, "backend_used", None),
            "opencv": self.opencv_threads,
        }  # fmt: skip

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
        multi = len(self.sources) > 1
        stages = [("decode", self._order.run, None), ("sinks", self._sink.run, None)]  # (name, run, source index)
        stages += [(f"infer{i}", self._infer.run, None) for i in range(self.workers)]
        stages += [(f"capture{k}" if multi else "capture", functools.partial(self._capture.run, k), k)
                   for k in range(len(self.sources)) if k not in self._dead]  # fmt: skip
        for name, run, k in stages:
            t = threading.Thread(target=self._control.guard, args=(name, run), name=f"edgepose-{name}", daemon=True)
            self._threads.append(t)
            if k is not None:
                self._control.captures[k] = t
            t.start()
        return self

    def stop(self, force: bool = False) -> None:
        """Stop reading; frames already read still go to the sinks, unless ``force`` (then they are
        dropped as ``interrupted``). Safe from any thread and from signal handlers."""
        self._control.stop(force)

    @property
    def stopping(self) -> bool:
        return self._control.stopped.is_set()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        self.start()
        held: Item | None = None
        try:
            while True:
                if held is not None:
                    held.release()
                    held = None
                item = get(self._out)
                if item is END:
                    self._got_end = True
                    break
                if self.frames:
                    held = item
                    yield item.frame, item.result
                else:
                    yield item.result
        finally:
            if held is not None:
                held.release()
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
        captures = list(self._control.captures.values())
        try:
            if self._started:
                if not self._got_end:
                    self.stop()  # the consumer left early
                while not self._got_end:  # whatever the consumer did not take has been through the sinks already
                    item = get(self._out)
                    if item is END:
                        self._got_end = True
                        break
                    item.release()
                for t in self._threads:
                    if t not in captures:
                        t.join()
                for t in captures:
                    t.join(timeout=1.0)  # a capture may sit in a blocking read; it is a daemon
        finally:
            self._sink.close()
            close_sources(self.sources, {k for k, t in self._control.captures.items() if t.is_alive()})
            self._books.finish(self.sources, self._dead, self.max_frames, self._capture.max_reached)
            if self._cv_held:
                self._cv_held = False
                OpenCVThreads.release()
        if self._control.error is not None:
            raise self._control.error
        return self.stats


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
