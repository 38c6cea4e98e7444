"""Video sources: a video file, a camera, an RTSP/HTTP URL or a GStreamer pipeline, read with OpenCV
(or PyAV for files, :mod:`edgepose.sources.pyav`), with fault handling: corrupt frames skipped and
counted, sources that stop reopened with back-off (:class:`Reconnect`), files looped or paced.

Example:
    >>> src = VideoSource("clip.mp4", loop=True)  # doctest: +SKIP
    >>> src.open(); frame = src.read(); src.close()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgepose import imageio
from edgepose.redact import expand_env, printable, redact
from edgepose.sources.base import Frame, SourceError, SourceStats, classify

log = logging.getLogger(__name__)

__all__ = ["VideoSource", "Reconnect", "open_capture", "check_url", "STREAM_SCHEMES", "RTSP_TRANSPORTS"]

#: URL schemes OpenCV's FFmpeg back-end reads
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt", "hls", "mms", "file")
#: ``rtsp_transport`` values: FFmpeg's default (``auto``: UDP, then TCP), UDP only, TCP only (through firewalls and NAT)
RTSP_TRANSPORTS = ("auto", "udp", "tcp")

# OpenCV reads FFmpeg's options from this variable when a capture opens: opening is one step per process
_ENV_LOCK = threading.Lock()
_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


_SAFE_DIRS: list[str] = []


def opencv_safe_path(path: str) -> str:
    """A path OpenCV and FFmpeg can open for a file whose name is not valid UTF-8.

    Python gives such names as ``str`` with lone surrogates (``\udcff``), on which OpenCV crashes the
    process (a segfault, not an exception). Such a file is reached through a symlink with a plain name
    in a private temporary folder (mode 0700, removed at exit); any other path is returned as it is.
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="edgepose-name-")
    if not _SAFE_DIRS:
        atexit.register(lambda: [shutil.rmtree(x, ignore_errors=True) for x in _SAFE_DIRS])
    _SAFE_DIRS.append(d)
    target = os.path.abspath(os.fsencode(path))
    link = os.path.join(d, "source" + "".join(c for c in Path(path).suffix if c.isascii() and c.isalnum() or c == "."))
    os.symlink(target, os.fsencode(link))
    return link


def check_url(url: str) -> None:
    """Raise :class:`SourceError` for a URL whose scheme OpenCV's FFmpeg cannot read (one clear line).

    Example:
        >>> check_url("rtsp://127.0.0.1:8554/cam0")
        >>> check_url("rtps://camera/stream")
        Traceback (most recent call last):
        ...
        edgepose.sources.base.SourceError: rtps://camera/stream: unsupported URL scheme 'rtps' (expected rtsp, rtsps, rtmp, rtmps, http, https, udp, tcp, rtp, srt, hls, mms, file)
    """
    if "!" in url and "://" not in url.split("!", 1)[0]:  # a GStreamer pipeline
        return
    scheme = url.split("://", 1)[0].lower()
    if scheme not in STREAM_SCHEMES:
        raise SourceError(f"{redact(url)}: unsupported URL scheme {scheme!r} (expected {', '.join(STREAM_SCHEMES)})")


def _rtsp_request(s: socket.socket, url: str, cseq: int, auth: str | None) -> tuple[str, dict[str, list[str]]]:
    """Send ``DESCRIBE`` and read the answer's status line and headers (lower-case names)."""
    req = f"DESCRIBE {url} RTSP/1.0\r\nCSeq: {cseq}\r\nAccept: application/sdp\r\nUser-Agent: edgepose\r\n"
    if auth:
        req += f"Authorization: {auth}\r\n"
    s.sendall((req + "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1", "replace").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return head[0] if head else "", headers


def _challenge(values: list[str]) -> tuple[str, dict[str, str]] | None:
    """The strongest scheme a camera offers in its ``WWW-Authenticate`` headers: Digest, else Basic."""
    import re

    offers = []
    for v in values:
        scheme, _, rest = v.partition(" ")
        params = {k.lower(): a if a else b for k, a, b in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', rest)}
        offers.append((scheme.lower(), params))
    for want in ("digest", "basic"):
        for scheme, params in offers:
            if scheme == want and (want == "basic" or params.get("algorithm", "MD5").upper() in ("MD5", "MD5-SESS")):
                return scheme, params
    return None


def digest_authorization(user: str, password: str, method: str, uri: str, params: dict[str, str],
                         cnonce: str | None = None) -> str:
    """An ``Authorization: Digest`` value (RFC 2617/7616, MD5, ``qop=auth`` when offered)."""
    import hashlib
    import secrets

    def md5(t: str) -> str:
        return hashlib.md5(t.encode(), usedforsecurity=False).hexdigest()

    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    ha1 = md5(f"{user}:{realm}:{password}")
    if params.get("algorithm", "").upper() == "MD5-SESS":
        cnonce = cnonce or secrets.token_hex(8)
        ha1 = md5(f"{ha1}:{nonce}:{cnonce}")
    ha2 = md5(f"{method}:{uri}")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in qops:
        cnonce = cnonce or secrets.token_hex(8)
        resp = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
    else:
        resp = md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{resp}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    if "algorithm" in params:
        fields.append(f"algorithm={params['algorithm']}")
    return "Digest " + ", ".join(fields)


def rtsp_diagnose(url: str, timeout_s: float = 3.0) -> str:
    """Why an RTSP URL cannot be opened, in words: connection refused, no answer, or the server's
    own status for ``DESCRIBE`` (``401 Unauthorized``: credentials refused, ``404 Not Found``: no
    such stream); ``""`` when the server describes the stream (then OpenCV cannot decode it).

    The credentials are sent only when the camera asks (a 401), with Digest when it offers it, Basic
    (the password merely base64-encoded) only when that is all it offers."""
    import base64
    from urllib.parse import unquote, urlsplit

    u = urlsplit(url)
    host, port = u.hostname or "", u.port or (322 if u.scheme == "rtsps" else 554)
    if u.scheme == "rtsps":
        return ""
    user, password = unquote(u.username or ""), unquote(u.password or "")
    netloc = host if u.port is None else f"{host}:{u.port}"
    clean = u._replace(netloc=netloc).geturl()
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            line, headers = _rtsp_request(s, clean, 1, None)
            code = line.split(" ", 2)[1] if len(line.split(" ", 2)) >= 2 else ""
            if code == "401" and u.username:
                offer = _challenge(headers.get("www-authenticate", []))
                if offer is not None:
                    scheme, params = offer
                    auth = (digest_authorization(user, password, "DESCRIBE", clean, params) if scheme == "digest"
                            else "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())  # fmt: skip
                    line, headers = _rtsp_request(s, clean, 2, auth)
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (no RTSP server there)"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout_s:g} s"
    except OSError as e:
        return f"cannot reach {host}:{port}: {e.strerror or e}"
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("RTSP/"):
        return f"{host}:{port} does not speak RTSP (answered {line[:60]!r})"
    code, reason = parts[1], parts[2] if len(parts) > 2 else ""
    if code == "200":
        return ""
    if code == "401":
        return "the server refused the credentials (401 Unauthorized)" if u.username else \
            "the server wants credentials (401 Unauthorized; rtsp://USER:PASSWORD@HOST/...)"
    if code == "404":
        return f"the server has no stream {u.path or '/'} (404 Not Found)"
    return f"the server answered {code} {reason}".rstrip()


def _has_backend(api: int) -> bool:
    try:
        return bool(cv2.videoio_registry.hasBackend(api))
    except Exception:  # pragma: no cover - very old OpenCV
        return True


def open_capture(
    source: str | int, kind: str, *, timeout_s: float | None = None, decode_threads: int | None = None,
    rtsp_transport: str = "auto",
) -> cv2.VideoCapture:
    """Open a video, camera or stream with OpenCV.

    Args:
        source: file path, camera index, URL or GStreamer pipeline (contains ``!``).
        kind: what :func:`classify` says it is.
        timeout_s: open and read time-out for network streams (FFmpeg back-end).
        decode_threads: FFmpeg decoding threads (None: OpenCV's default, one per core).
        rtsp_transport: ``udp``, ``tcp`` or ``auto`` (FFmpeg's default) for ``rtsp://`` URLs: set as
            FFmpeg's ``rtsp_transport`` option (through ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, with the
            options already there, for this open only).

    Raises:
        SourceError: OpenCV cannot open it (or has no back-end for it, e.g. no GStreamer).
    """
    if kind == "camera":
        cap = cv2.VideoCapture(int(source))
    elif kind == "stream" and "!" in str(source):
        if not _has_backend(cv2.CAP_GSTREAMER):
            raise SourceError(
                f"cannot open GStreamer pipeline {redact(str(source))!r}: this OpenCV build has no GStreamer support "
                "(pip's opencv-python wheels do not; use an OpenCV built with GStreamer, e.g. JetPack's)"
            )
        cap = cv2.VideoCapture(str(source), cv2.CAP_GSTREAMER)
    elif _has_backend(cv2.CAP_FFMPEG):
        params: list[int] = []
        if timeout_s and kind == "stream":
            ms = int(timeout_s * 1000)
            params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        if decode_threads:
            params += [cv2.CAP_PROP_N_THREADS, int(decode_threads)]
        rtsp = kind == "stream" and str(source).lower().startswith(("rtsp://", "rtsps://"))
        if rtsp and rtsp_transport != "auto":
            if rtsp_transport not in RTSP_TRANSPORTS:
                raise ValueError(f"rtsp_transport must be one of {', '.join(RTSP_TRANSPORTS)}, not {rtsp_transport!r}")
            with _ENV_LOCK:
                old = os.environ.get(_ENV)
                kept = [o for o in (old or "").split("|") if o and not o.startswith("rtsp_transport;")]
                os.environ[_ENV] = "|".join([f"rtsp_transport;{rtsp_transport}", *kept])
                try:
                    cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
                finally:
                    if old is None:
                        os.environ.pop(_ENV, None)
                    else:
                        os.environ[_ENV] = old
        else:
            cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
    else:  # pragma: no cover - OpenCV without FFmpeg
        cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        cap.release()
        hint = " (is the camera connected and free?)" if kind == "camera" else ""
        if kind == "video":
            hint = " (not a video OpenCV can decode, or damaged)"
        if kind == "stream" and str(source).lower().startswith("rtsp://"):
            why = rtsp_diagnose(str(source), min(3.0, timeout_s or 3.0))
            hint = f": {why}" if why else ": the server describes the stream but OpenCV cannot read it (codec?)"
        raise SourceError(f"cannot open {kind} {printable(redact(str(source)))}{hint}")
    return cap


@dataclass(frozen=True)
class Reconnect:
    """How a source that stops is reopened: bounded tries with exponential back-off.

    Attributes:
        tries: consecutive failed reopen attempts before the source counts as lost (0: never reopen).
        delay: seconds before the first attempt.
        factor: each further wait is this much longer ...
        max_delay: ... up to this many seconds.
    """

    tries: int = 15
    delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 1.0  # a camera that comes back is picked up within ~1 s (+ opening it)

    def delays(self) -> Iterator[float]:
        d = self.delay
        for _ in range(self.tries):
            yield d
            d = min(self.max_delay, d * self.factor)


class VideoSource:
    """Frames from a video file, a camera, an RTSP/HTTP URL or a GStreamer pipeline, with fault handling.

    * A frame that fails to decode while later ones decode is skipped and counted (``stats.corrupt``);
      it comes back from :meth:`read` as a :class:`Frame` with ``error`` set, so it keeps its index.
    * A source that stops (camera unplugged, connection dropped, a file that fails part-way) is
      reopened after a back-off, at most ``reconnect.tries`` times in a row, each attempt logged; a
      file is reopened at the frame where it stopped. A file that still fails there ended early
      (truncated); a live source that cannot be reopened is ``lost``.
    * ``loop=True`` starts a file again at its end (timestamps keep increasing).
    * ``pace=True`` delivers a file's frames no faster than its frame rate, like a camera.

    Args:
        source: file path, camera index, URL or GStreamer pipeline.
        kind: ``video``, ``camera`` or ``stream`` (default: :func:`classify`).
        loop: restart a file at its end.
        pace: deliver a file's frames at its frame rate.
        reconnect: reopening policy.
        retry_reads: failed reads in a row that are still treated as corrupt frames (the next read
            is tried) before the source counts as stopped.
        timeout_s: open/read time-out for network streams.
        decode_threads: FFmpeg decoding threads (None: OpenCV's default).
        capture_factory: ``f(source, kind) -> cv2.VideoCapture``-like object (tests, custom back-ends).
        backend: how a video file is decoded: ``opencv``; ``pyav`` (:class:`edgepose.sources.pyav.AVCapture`,
            needs ``edgepose[video]``); ``auto``: PyAV when ``want_planes`` is set, PyAV is installed and
            the file's pictures are limited-range 4:2:0, OpenCV otherwise. Cameras and streams: OpenCV.
        want_planes: hand out 4:2:0 frames as ``Frame.planes`` (no BGR conversion) when the back-end can.
        rtsp_transport: ``auto``, ``udp`` or ``tcp`` for RTSP URLs (see :func:`open_capture`).
        name: the name its frames carry (default: the file name, or the URL without its password).

    Raises:
        SourceError: from :meth:`open` when the source cannot be opened at all; at once for a URL
            whose scheme OpenCV cannot read.

    Example:
        >>> src = VideoSource("clip.mp4", loop=True)  # doctest: +SKIP
        >>> src.open(); frame = src.read(); src.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        source: str | int | Path,
        kind: str | None = None,
        *,
        loop: bool = False,
        pace: bool = False,
        reconnect: Reconnect | None = None,
        retry_reads: int = 3,
        timeout_s: float = 10.0,
        decode_threads: int | None = None,
        capture_factory: Callable[[str | int, str], cv2.VideoCapture] | None = None,
        backend: str = "auto",
        want_planes: bool = False,
        rtsp_transport: str = "auto",
        name: str | None = None,
    ) -> None:
        if backend not in ("auto", "opencv", "pyav"):
            raise ValueError(f"backend must be auto, opencv or pyav, not {backend!r}")
        if rtsp_transport not in RTSP_TRANSPORTS:
            raise ValueError(f"rtsp_transport must be one of {', '.join(RTSP_TRANSPORTS)}, not {rtsp_transport!r}")
        shown = printable(redact(str(source)))  # what leaves the process: never the credentials
        try:  # ${EDGEPOSE_...} from the environment: the password stays out of the command line
            self.source = source if isinstance(source, int) else expand_env(str(source))
        except KeyError as e:
            raise SourceError(f"{shown}: {e.args[0]}") from None
        self.kind = kind or classify(source)
        if self.kind == "video" and isinstance(self.source, str):
            self.source = opencv_safe_path(self.source)
        if self.kind not in ("video", "camera", "stream"):
            raise SourceError(f"{shown}: a {self.kind} is not a video, camera or stream")
        if self.kind == "stream" and capture_factory is None:
            check_url(self.source)
        self.rtsp_transport = rtsp_transport
        self.name = name or (printable(Path(str(source)).name) if self.kind == "video" else shown)
        self.loop = loop and self.kind == "video"
        self.pace = pace and self.kind == "video"
        self.reconnect = reconnect if reconnect is not None else Reconnect()
        self.retry_reads = max(0, retry_reads)
        self.timeout_s = timeout_s
        self.decode_threads = decode_threads
        self.backend = backend
        self.want_planes = want_planes
        self.backend_used: str | None = None  # "opencv" or "pyav" once open (None: a custom factory)
        self._factory = capture_factory or self._open_capture
        self.stats = SourceStats()
        self.fps: float = 0.0
        self.size: tuple[int, int] | None = None
        self.decoder_threads: int | None = None  # FFmpeg's decoding threads, as OpenCV reports them
        self._cap = None
        self._pos = 0  # next frame number within the file (files only)
        self._index = 0  # next frame index handed out (across loops and reopens)
        self._t_offset = 0.0  # seconds added to a looped file's timestamps
        self._last_ts = 0.0
        self._delays: Iterator[float] | None = None
        self._attempt = 0
        self._stop = threading.Event()
        self._t0: float | None = None
        self._t_good: float | None = None  # monotonic time of the last good frame (outage accounting)
        self._down = False  # a live source stopped and has not delivered since

    def _open_capture(self, source: str | int, kind: str):
        """The default factory: PyAV or OpenCV (see ``backend``)."""
        if kind == "video" and (self.backend == "pyav" or (self.backend == "auto" and self.want_planes)):
            from edgepose.sources.pyav import AVCapture

            try:
                cap = AVCapture(source, threads=self.decode_threads)
            except ImportError as e:
                if self.backend == "pyav":
                    raise SourceError(f"cannot read {self.name} with PyAV: {e} (pip install 'edgepose[video]')") from e
            except Exception as e:  # PyAV's errors; OpenCV may still read it
                if self.backend == "pyav":
                    raise SourceError(f"cannot open video {self.name} with PyAV: {e}") from e
                log.info("PyAV cannot open %s (%s); using OpenCV", self.name, e)
            else:
                if self.backend == "pyav" or cap.fast_planes:
                    self.backend_used = "pyav"
                    return cap
                cap.release()  # pictures it would convert to BGR anyway: OpenCV does that as well
        cap = open_capture(source, kind, timeout_s=self.timeout_s, decode_threads=self.decode_threads,
                           rtsp_transport=self.rtsp_transport)  # fmt: skip
        self.backend_used = "opencv"
        return cap

    def reconfigure(self, *, want_planes: bool | None = None, decode_threads: int | None = None) -> bool:
        """Change ``want_planes`` / ``decode_threads`` before the first frame is read, reopening
        the source if it is open and the change needs another capture (e.g. PyAV instead of
        OpenCV). A stream calls this on a source it was handed. False once frames were read."""
        if self.stats.read:
            return False
        changed = False
        if want_planes is not None and want_planes != self.want_planes:
            self.want_planes = want_planes
            changed = self.backend == "auto" and self.kind == "video"
        if decode_threads is not None and decode_threads != self.decode_threads:
            self.decode_threads = decode_threads
            changed = True
        if changed and self._cap is not None and self._factory == self._open_capture:
            self._cap.release()
            self._cap = None
            self.open()
        return True

    # -- life cycle ----------------------------------------------------------------------------
    def open(self) -> VideoSource:
        """Open the source (once); raises :class:`SourceError` when it cannot be opened."""
        if self._cap is None:
            self._cap = self._factory(self.source, self.kind)
            fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 1.0 <= fps <= 240.0 else 0.0
            w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            self.size = (w, h) if w > 0 and h > 0 else None
            cap = imageio.MAX_PIXELS
            if self.size and cap and w * h > cap:
                self._cap.release()
                self._cap = None
                raise SourceError(f"{self.name}: {w}x{h} = {w * h} pixels a frame is above the cap of {cap} pixels "
                                  "(--max-pixels)")
            if self.kind == "video":
                n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
                self.stats.expected = n if n > 0 else None
            try:
                nt = int(self._cap.get(cv2.CAP_PROP_N_THREADS) or 0)
            except Exception:  # a wrapper or back-end without the property
                nt = 0
            self.decoder_threads = nt or None
            log.info("opened %s %s (%s fps, %s)", self.kind, self.name, self.fps or "?", self.size or "size ?")
        return self

    def stop(self) -> None:
        """Make :meth:`read` return None soon (interrupts a back-off wait); safe from any thread."""
        self._stop.set()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> VideoSource:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        self.open()
        try:
            while (frame := self.read()) is not None:
                yield frame
        finally:
            self.close()

    # -- reading -------------------------------------------------------------------------------
    def _grab(self, out: np.ndarray | None) -> np.ndarray | tuple | None:
        """The next picture: a BGR image, (Y, U, V) planes (see ``want_planes``), or None."""
        try:
            if self.want_planes and hasattr(self._cap, "read_planes"):
                ok, planes, img = self._cap.read_planes()
                if ok and planes is not None:
                    return planes
            else:
                ok, img = self._cap.read(out) if out is not None else self._cap.read()
        except Exception as e:  # a back-end or a wrapper may raise instead of returning False
            log.warning("%s: read failed: %s: %s", self.name, type(e).__name__, e)
            return None
        if not ok or img is None:
            return None
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.size == 0:
            log.warning("%s: frame of unexpected shape %s dtype %s", self.name, img.shape, img.dtype)
            return None
        return img

    def _timestamp(self) -> float:
        if self.kind != "video":
            return time.time()
        ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        if ms <= 0 and self.fps and self._pos > 1:
            ms = (self._pos - 1) * 1000.0 / self.fps
        return self._t_offset + ms / 1e3

    def _past_end(self) -> bool:
        n = self.stats.expected
        return n is None or self._pos >= n

    def _reopen(self, why: str) -> bool:
        """Reopen after a back-off; a file at the frame where it stopped. False once the tries are spent."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._delays is None:
            self._delays = self.reconnect.delays()
            self._attempt = 0
        for delay in self._delays:
            self._attempt += 1
            if self.kind == "video":
                delay = min(delay, 0.1)  # a file does not come back by waiting
            log.warning("%s: %s; reopening in %.1f s (attempt %d of %d)", self.name, why, delay, self._attempt,
                        self.reconnect.tries)  # fmt: skip
            if self._stop.wait(delay):
                return False
            self.stats.reopen_attempts += 1
            try:
                cap = self._factory(self.source, self.kind)
            except SourceError as e:
                log.warning("%s: reopen attempt %d failed: %s", self.name, self._attempt, e)
                why = "still unavailable"
                continue
            if self.kind == "video" and self._pos > 0 and not self._seek(cap, self._pos):
                cap.release()
                log.warning("%s: cannot get back to frame %d after reopening", self.name, self._pos)
                return False
            self._cap = cap
            self.stats.reopens += 1
            log.warning("%s: reopened (attempt %d)%s", self.name, self._attempt,
                        f" at frame {self._pos}" if self.kind == "video" else "")  # fmt: skip
            return True
        return False

    def _seek(self, cap, pos: int) -> bool:
        """Put ``cap`` at frame ``pos``; a seek that lands early is finished by reading forward."""
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, pos)
            got = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            for _ in range(max(0, pos - got) + self.retry_reads):
                if got >= pos:
                    break
                cap.grab()
                got = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            return got == pos
        except Exception as e:  # a wrapper or back-end that raises
            log.warning("%s: seek to frame %d failed: %s", self.name, pos, e)
            return False

    def _restart_loop(self) -> bool:
        step = 1.0 / self.fps if self.fps else 0.04
        self._t_offset = self._last_ts + step
        self.stats.loops += 1
        self._pos = 0
        if self._cap is not None and self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return True
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        try:
            self._cap = self._factory(self.source, self.kind)
        except SourceError as e:
            self.stats.lost = True
            self.stats.ended = f"lost: cannot reopen for the next loop: {e}"
            return False
        return True

    def _pace(self, ts: float) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter() - ts
        wait = self._t0 + ts - time.perf_counter()
        if wait > 0:
            self._stop.wait(wait)

    def _count_outage(self, now: float) -> None:
        """A live source delivers again (or is given up): the frames it would have sent meanwhile
        (frame rate x gap, less the one that arrives) are counted as read and lost (``outage``)."""
        self._down = False
        if self._t_good is None:
            return
        gap = now - self._t_good
        self.stats.outage_s += gap
        missed = max(0, round(gap * self.fps) - 1) if self.fps else 0
        if missed:
            self.stats.outage += missed
            self.stats.read += missed
            self._index += missed
        log.warning("%s: down for %.2f s; %d frame(s) lost meanwhile", self.name, gap, missed)

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        """The next good frame, or None when the source ended, was lost or :meth:`stop` was called.

        Frames that fail to decode are skipped: they are counted in ``stats.corrupt`` (and
        ``stats.read``) and their indices are left out, so a gap in ``Frame.index`` marks them.

        Args:
            out: a buffer of the frame's shape to decode into (no allocation per frame).
        """
        self.open()
        failures = 0
        reopened = False
        while not self._stop.is_set():
            t0 = time.perf_counter()
            img = self._grab(out) if self._cap is not None else None
            if img is not None:
                now = time.perf_counter()
                if self._down:
                    self._count_outage(now)
                self._t_good = now
                if failures:
                    log.warning("%s: %d frame(s) before frame %d could not be decoded; skipped", self.name,
                                failures, self._index + failures)  # fmt: skip
                    self.stats.corrupt += failures
                    self.stats.read += failures
                    self._index += failures
                self._pos += 1
                self._delays = None
                i = self._index
                self._index += 1
                self.stats.read += 1
                ts = self._last_ts = self._timestamp()
                if self.pace:
                    self._pace(ts)
                planes = img if isinstance(img, tuple) else None
                return Frame(i, None if planes is not None else img, self.name, timestamp=ts,
                             read_ms=(now - t0) * 1e3, planes=planes, captured=now)  # fmt: skip
            failures += 1
            self._pos += 1
            at_end = self.kind == "video" and self._past_end()
            if failures <= self.retry_reads and not at_end and self._cap is not None:
                continue  # maybe one bad frame: try the next
            # The source stopped; the failed reads were its end, not corrupt frames.
            self._pos -= failures
            failures = 0
            if self.kind == "video" and self._past_end():
                if self.loop and self.stats.read > 0 and self._restart_loop():
                    continue
                self.stats.ended = self.stats.ended or "end of file"
                return None
            if self.kind == "video" and (reopened or not self._reopen(f"stopped at frame {self._pos}")):
                if self._stop.is_set():
                    break
                n = self.stats.expected
                self.stats.lost = True
                self.stats.ended = f"ended early: frame {self._pos} of {n} cannot be read (truncated or damaged file)"
                log.warning("%s: %s", self.name, self.stats.ended)
                return None
            if self.kind != "video":
                self._down = True
            if self.kind != "video" and not self._reopen(f"stopped after frame {self._index - 1}"):
                if self._stop.is_set():
                    break
                self._count_outage(time.perf_counter())
                self.stats.lost = True
                self.stats.ended = (f"lost: stopped after frame {self._index - 1} and could not be reopened "
                                    f"({self.reconnect.tries} tries)")  # fmt: skip
                log.error("%s: %s", self.name, self.stats.ended)
                return None
            reopened = True
        self.stats.ended = self.stats.ended or "stopped"
        return None
