"""Streaming: one result per frame from any source, in pipelined threads, with nothing lost.

The stages run in their own threads, joined by bounded queues::

    capture ──q──> pre-process + inference + decoding (``workers`` threads) ──q──> tracking ──q──> sinks ──q──> you

FFmpeg (through OpenCV or PyAV), ONNX Runtime and most of numpy release the GIL, so reading and
decoding overlap inference. With several inference workers, results still leave in frame order
(tracking runs in order). Frames are decoded into a small pool of preallocated buffers (or
FFmpeg's own pool), large frames are halved with a box filter before the final resize
(``prescale``); a video file read with PyAV is shrunk as YUV planes and only the network-sized
picture is converted to BGR (``backend``); each worker reuses its network input and decoder
buffers, so a long run does not grow in memory.

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

The package's parts:

* :mod:`edgepose.stream.pipeline`: :class:`Stream`, which opens the sources and composes the
  stages, :func:`stream`, :func:`stop_on_signals`;
* the stages, one job each: :mod:`~edgepose.stream.capture` (reading, one thread per source),
  :mod:`~edgepose.stream.infer` (pre-processing, the network, decoding in the worker),
  :mod:`~edgepose.stream.decoding` (frame order, tracking, results), :mod:`~edgepose.stream.sink`
  (the sinks, then you);
* :mod:`edgepose.stream.queues`: what travels between the stages and the realtime mailbox that
  serves the sources in turn; :mod:`edgepose.stream.control`: stopping and a stage's error;
  :mod:`edgepose.stream.accounting`: every frame counted, in total and per source;
* :mod:`edgepose.stream.opening`: opening and closing the sources, their trackers;
* :mod:`edgepose.stream.frames`: the frame pool and shrinking (prescale, YUV planes);
* :mod:`edgepose.stream.threads`: the CPU thread policy (OpenCV and FFmpeg threads next to ORT's);
* :mod:`edgepose.stream.stats`: :class:`StreamStats` and :data:`DROP_REASONS`.

Example:
    >>> from edgepose import PoseEstimator  # doctest: +SKIP
    >>> est = PoseEstimator("models/mobilenet_thin.onnx")  # doctest: +SKIP
    >>> for r in est.stream("rtsp://camera/stream", realtime=True):  # doctest: +SKIP
    ...     print(r.index, [(p.id, p.score) for p in r.people])
"""

from edgepose.stream.pipeline import Stream, stop_on_signals, stream
from edgepose.stream.stats import DROP_REASONS, StreamStats
from edgepose.stream.threads import inference_fills_cpu

__all__ = ["Stream", "StreamStats", "stream", "stop_on_signals", "DROP_REASONS", "inference_fills_cpu"]
