"""Video files decoded with PyAV (FFmpeg's own Python binding), handing out the decoded YUV planes.

OpenCV's ``VideoCapture`` always converts a decoded picture to full-size BGR (0.7 ms for a 1080p
frame on the CI machine) before the stream shrinks it to the network input (another 0.8 ms).
:class:`AVCapture` gives the stream the picture as FFmpeg decoded it: zero-copy views of its
Y, U and V planes (4:2:0). The stream shrinks the planes and converts only the network-sized
result to BGR (``edgepose.stream``), which costs 0.5 ms for the same frame.

:class:`AVCapture` has the part of ``cv2.VideoCapture``'s interface that
:class:`edgepose.sources.VideoSource` uses (``read``, ``grab``, ``get``, ``set``, ``isOpened``,
``release``), so the source's fault handling (corrupt frames, reopening, looping) is the same for
both back-ends. PyAV is optional (``pip install edgepose[video]``); without it, or for pictures
that are not limited-range 4:2:0, files are read with OpenCV as before.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

__all__ = ["AVCapture", "i420_to_bgr"]

_AV = None


def _av():
    global _AV
    if _AV is None:
        import av  # noqa: PLC0415 - optional dependency

        _AV = av
    return _AV


def _fast_format(fmt_name: str | None, color_range: int, width: int, height: int) -> bool:
    """Planes the stream can convert itself: 8-bit 4:2:0 of even size, limited ("MPEG") range, the
    BT.601 conversion OpenCV's FFmpeg back-end applies (``cv2.COLOR_YUV2BGR_I420``)."""
    return fmt_name == "yuv420p" and int(color_range) != 2 and width % 2 == 0 and height % 2 == 0


def _fast_frame(f) -> bool:
    """:func:`_fast_format` for a decoded frame (older PyAV frames have no ``color_range``)."""
    return _fast_format(f.format.name, int(getattr(f, "color_range", 0) or 0), f.width, f.height)


def i420_to_bgr(planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Full-size BGR from (Y, U, V) 4:2:0 planes of an even-sized picture (what ``cv2.VideoCapture``
    would have returned)."""
    y, u, v = planes
    h, w = y.shape
    buf = np.empty((h * 3 // 2, w), np.uint8)
    flat = buf.reshape(-1)
    buf[:h] = y
    flat[w * h : w * h + w * h // 4].reshape(h // 2, w // 2)[:] = u
    flat[w * h + w * h // 4 :].reshape(h // 2, w // 2)[:] = v
    return cv2.cvtColor(buf, cv2.COLOR_YUV2BGR_I420)


class AVCapture:
    """A video file read with PyAV, with the ``cv2.VideoCapture`` calls a :class:`VideoSource` makes.

    Args:
        path: the video file.
        threads: FFmpeg decoding threads (None or 0: FFmpeg's choice, one per core).

    Raises:
        ImportError: PyAV is not installed.
        OSError / av.FFmpegError: the file cannot be opened or has no video stream.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        av = _av()
        self._container = av.open(str(path))
        try:
            if not self._container.streams.video:
                raise av.error.InvalidDataError(-1, f"{path}: no video stream")  # type: ignore[call-arg]
            self._vs = self._container.streams.video[0]
            self._vs.thread_type = "AUTO"
            self._vs.thread_count = int(threads or 0)
            cc = self._vs.codec_context
            self.width, self.height = int(cc.width), int(cc.height)
            self.pix_fmt = cc.pix_fmt
            rate = self._vs.average_rate or self._vs.guessed_rate
            self.fps = float(rate) if rate else 0.0
            n = int(self._vs.frames or 0)
            if n <= 0 and self._vs.duration and self._vs.time_base and self.fps:
                n = int(round(float(self._vs.duration * self._vs.time_base) * self.fps))
            self.frame_count = n
            self._start = float(self._vs.start_time * self._vs.time_base) if self._vs.start_time else 0.0
        except BaseException:
            self._container.close()
            raise
        self._restart()

    @property
    def fast_planes(self) -> bool:
        """Whether the stream's pictures come as planes :func:`i420_to_bgr` converts correctly."""
        color_range = int(getattr(self._vs.codec_context, "color_range", 0) or 0)
        return _fast_format(self.pix_fmt, color_range, self.width, self.height)

    # -- decoding ---------------------------------------------------------------------------------
    def _restart(self) -> None:
        self._packets = self._container.demux(self._vs)
        self._ready: deque = deque()
        self._frame = None
        self._pos = 0
        self._eof = False

    def grab(self) -> bool:
        """Decode the next frame; False at the end or when this frame cannot be decoded."""
        av = _av()
        self._frame = None
        while not self._ready:
            if self._eof:
                return False
            try:
                packet = next(self._packets)
            except StopIteration:
                self._eof = True
                return False
            except av.error.FFmpegError as e:  # a damaged container: the rest cannot be read
                log.warning("demuxing failed: %s", e)
                self._eof = True
                return False
            try:
                self._ready.extend(self._vs.decode(packet))
            except av.error.FFmpegError as e:  # a damaged packet: this frame is lost, the next may decode
                log.debug("decoding failed: %s", e)
                self._pos += 1
                return False
        self._frame = self._ready.popleft()
        self._pos += 1
        return True

    def _planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Zero-copy (Y, U, V) views of the grabbed frame (each row cut to the picture's width)."""
        return tuple(  # type: ignore[return-value]
            np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in self._frame.planes
        )

    def retrieve(self, image: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        if self._frame is None:
            return False, None
        f = self._frame
        if _fast_frame(f):
            bgr = i420_to_bgr(self._planes())
        else:
            bgr = f.to_ndarray(format="bgr24")
        if image is not None and image.shape == bgr.shape and image.dtype == bgr.dtype:
            image[...] = bgr
            return True, image
        return True, bgr

    def read(self, image: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        if not self.grab():
            return False, None
        return self.retrieve(image)

    def read_planes(self) -> tuple[bool, tuple | None, np.ndarray | None]:
        """The next frame as ``(ok, planes, None)`` when it is limited-range 4:2:0, else as
        ``(ok, None, bgr)``. The planes stay valid while the caller holds them."""
        if not self.grab():
            return False, None, None
        f = self._frame
        if _fast_frame(f):
            return True, self._planes(), None
        ok, bgr = self.retrieve()
        return ok, None, bgr

    # -- cv2.VideoCapture's properties ------------------------------------------------------------
    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(self.frame_count)
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self.width)
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self.height)
        if prop == cv2.CAP_PROP_POS_FRAMES:
            return float(self._pos)
        if prop == cv2.CAP_PROP_POS_MSEC:
            t = None if self._frame is None else self._frame.time
            return 0.0 if t is None else (float(t) - self._start) * 1e3
        if prop == cv2.CAP_PROP_N_THREADS:
            return float(self._vs.codec_context.thread_count or 0)
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        """Only ``CAP_PROP_POS_FRAMES``: back to the start, then decode forward to the frame."""
        if prop != cv2.CAP_PROP_POS_FRAMES:
            return False
        target = max(0, int(value))
        av = _av()
        try:
            self._container.seek(0, stream=self._vs)
            self._vs.codec_context.flush_buffers()
        except av.error.FFmpegError as e:
            log.warning("seeking failed: %s", e)
            return False
        self._restart()
        while self._pos < target:
            if not self.grab() and self._eof:
                return False
        return True

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self._container is not None

    def release(self) -> None:
        if self._container is not None:
            self._frame = None
            self._ready.clear()
            self._container.close()
            self._container = None
