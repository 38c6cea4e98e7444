"""What a benchmark worker runs: edgepose's whole pipeline on real frames, and its accuracy.

An engine is built from a JSON-able spec, does its set-up (imports, session creation) in
``__init__``, and processes one frame per :meth:`Engine.step`, returning milliseconds per stage.
Engines never print; they run inside :mod:`edgepose.bench.worker` processes.

Engines here:
    ``pipeline``    read -> pre-process -> inference -> decode with :class:`edgepose.runner.PoseEstimator`
                    on a video or a folder of frames; ``accuracy`` call: COCO AP (``eval`` extra)

Other modules add engines of their own (the checkout's ``benchmarks.engines``: TensorFlow, OpenCV
dnn, the learnopencv recipe, session-option recipes): a worker asked for ``module`` imports it and
looks the kind up in its ``ENGINES``.

Example:
    >>> eng = make_engine("pipeline", {"model": "models/mobilenet_thin.onnx", "threads": 2, "size": "small",
    ...                                "source": "../shared/data/video/mmaction2__demo_skeleton.mp4"})  # doctest: +SKIP
    >>> eng.step()["inference"]  # doctest: +SKIP
    22.1
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["Engine", "ENGINES", "make_engine", "FrameLoop", "Pipeline", "now", "set_cv_threads", "MS"]

#: seconds -> milliseconds
MS = 1e3


def now() -> float:
    """The benchmark clock (``time.perf_counter``), in seconds."""
    return time.perf_counter()


def set_cv_threads(threads: int | None) -> None:
    """Give OpenCV the configuration's thread count (its resizes and colour conversions use a pool)."""
    if threads:
        import cv2

        cv2.setNumThreads(int(threads))


class FrameLoop:
    """Frames of a video or a folder, forever (a video is re-opened at its end), with read times.

    Args:
        source: a video file or a folder of images.
        limit: use only the first ``limit`` frames (then start again).
    """

    def __init__(self, source: str | Path, limit: int | None = None) -> None:
        from edgepose.sources import classify

        self.source = str(source)
        self.kind = classify(self.source)
        if self.kind not in ("video", "folder", "image"):
            raise ValueError(f"benchmark frames must come from a video file or a folder, not a {self.kind}")
        self.limit = limit
        self._it: Iterator | None = None
        self._n = 0

    def _open(self) -> Iterator:
        from edgepose.sources import iter_frames

        self._n = 0
        return iter(iter_frames(self.source))

    def next(self):
        """The next :class:`edgepose.sources.Frame` that has an image (its ``read_ms`` is the read time)."""
        for _ in range(2):
            if self._it is None or (self.limit is not None and self._n >= self.limit):
                self._it = self._open()
            for frame in self._it:
                self._n += 1
                if frame.image is not None:
                    return frame
            self._it = None
        raise RuntimeError(f"{self.source} yields no readable frames")


class Engine:
    """One thing to measure. Subclasses set :attr:`info` in ``__init__`` and implement :meth:`step`."""

    kind = "engine"

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.info: dict = {}

    def step(self) -> dict[str, float]:
        """Process one frame; return milliseconds per stage (``total`` included)."""
        raise NotImplementedError

    def call(self, name: str, args: dict) -> dict:
        """Extra work that is not timed per frame (accuracy ...)."""
        raise ValueError(f"{self.kind} engine has no {name!r} call")


class Pipeline(Engine):
    """A whole frame through edgepose: read -> pre-process -> inference -> decode.

    Spec: model, device, threads, size (preset or WxH), source (video or folder), frames (limit).
    The stage timings are :meth:`PoseEstimator.predict`'s own; ``read`` is the wall time of getting
    the frame from the source and ``total`` the wall time of the whole frame.

    Subclasses (the checkout's baselines) replace :meth:`frame` to run another runtime or decoder
    around the same estimator's pre-processing and metadata.
    """

    kind = "pipeline"

    def __init__(self, spec: dict) -> None:
        super().__init__(spec)
        from edgepose.runner import PoseEstimator

        threads = spec.get("threads")
        set_cv_threads(threads)
        t0 = now()
        self.est = PoseEstimator(spec["model"], device=spec.get("device") or "cpu", threads=threads, size=spec.get("size"))
        self.info = {"create_ms": (now() - t0) * MS, "providers": list(self.est.providers),
                     "variant": self.est.meta.variant, "threads": self.est.threads,
                     "input_budget": list(self.est.budget)}  # fmt: skip
        self.frames = FrameLoop(spec["source"], spec.get("frames")) if spec.get("source") else None

    def frame(self, img: np.ndarray) -> tuple[list, dict[str, float]]:
        """People in one frame and the stage timings (without ``read``)."""
        res = self.est.predict(img)
        return res.people, {k: v for k, v in res.timings.items() if k != "read"}

    def step(self) -> dict[str, float]:
        if self.frames is None:
            raise RuntimeError("this pipeline has no source of frames")
        t0 = now()
        f = self.frames.next()
        t1 = now()
        _, t = self.frame(f.image)
        t["read"] = (t1 - t0) * MS  # wall time of getting the frame, including the source's own read_ms
        t["total"] = (now() - t0) * MS
        return t

    def call(self, name: str, args: dict) -> dict:
        if name != "accuracy":
            return super().call(name, args)
        return self.accuracy(args["annotations"], args["images"])

    def accuracy(self, annotations: str, images: str) -> dict:
        """COCO keypoint AP on an annotated set (:func:`edgepose.evaluate.evaluate`; ``eval`` extra)."""
        from edgepose.evaluate import evaluate

        rep = evaluate(self.est, annotations, images, progress=False)
        return {k: rep[k] for k in ("AP", "AP50", "AP75", "APm", "APl", "AR", "images", "detections")}


ENGINES: dict[str, type[Engine]] = {"pipeline": Pipeline}


def make_engine(kind: str, spec: dict, module: str | None = None) -> Engine:
    """Build the engine ``kind`` from ``spec``, from this module's or ``module``'s ``ENGINES``.

    Raises:
        ValueError: unknown kind.
        ImportError: ``module`` cannot be imported.
    """
    engines = importlib.import_module(module).ENGINES if module else ENGINES
    if kind not in engines:
        raise ValueError(f"unknown engine {kind!r}; known: {', '.join(engines)}")
    return engines[kind](spec)
