"""The stream's CPU thread policy: how many threads OpenCV and FFmpeg get next to ONNX Runtime.

When CPU inference keeps every core busy (``threads x workers`` >= the usable cores), extra
threads elsewhere only add switching: a video file is decoded on one FFmpeg thread and OpenCV's
resizes run single-threaded (+2.5% throughput on the 2-core CI machine; see
``benchmarks/stream_bench.py``). OpenCV's thread count is process-wide, so streams running at once
share it through a reference count and the original count comes back when the last one closes.

Example:
    >>> policy = ThreadPolicy.choose(est, workers=2)  # doctest: +SKIP
    >>> policy.fills_cpu, policy.opencv, policy.decode_threads("video")  # doctest: +SKIP
    (True, 1, 1)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import cv2

from edgepose.session import usable_cores

__all__ = ["ThreadPolicy", "OpenCVThreads", "inference_fills_cpu"]


def inference_fills_cpu(estimator: Any, workers: int) -> bool:
    """Whether ``workers`` inferences at once on ``estimator`` keep every usable core busy
    (ONNX Runtime's CPU provider with ``threads x workers`` >= the cores)."""
    providers = list(getattr(estimator, "providers", None) or getattr(getattr(estimator, "device", None), "providers", []))
    if not providers or providers[0] != "CPUExecutionProvider":
        return False
    threads = getattr(estimator, "threads", None)
    return isinstance(threads, int) and threads * max(1, workers) >= usable_cores()


@dataclass(frozen=True)
class ThreadPolicy:
    """Thread counts for one stream.

    Attributes:
        fills_cpu: CPU inference alone keeps every core busy (:func:`inference_fills_cpu`).
        opencv: OpenCV's thread count while the stream runs (None: leave it alone).
    """

    fills_cpu: bool
    opencv: int | None

    @classmethod
    def choose(cls, estimator: Any, workers: int, opencv_threads: int | None = None) -> ThreadPolicy:
        """``opencv_threads`` when given, else 1 when inference fills the CPU, else untouched."""
        fills = inference_fills_cpu(estimator, workers)
        return cls(fills, opencv_threads if opencv_threads is not None else (1 if fills else None))

    def decode_threads(self, kind: str) -> int | None:
        """FFmpeg decoding threads for a source of this kind when none were asked for (None: FFmpeg's
        default): one for a video file when inference fills the CPU."""
        return 1 if self.fills_cpu and kind == "video" else None


class OpenCVThreads:
    """OpenCV's global thread count, set while streams that asked for it run (reference-counted;
    the original count comes back when the last one closes)."""

    _lock = threading.Lock()
    _users = 0
    _saved: int | None = None

    @classmethod
    def acquire(cls, n: int) -> None:
        with cls._lock:
            if cls._users == 0:
                cls._saved = cv2.getNumThreads()
            cls._users += 1
            cv2.setNumThreads(int(n))

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._saved is not None:
                cv2.setNumThreads(cls._saved)
                cls._saved = None
