"""Live view in the browser: ``edgepose run ... --preview [HOST:]PORT``.

A sink that serves, from a standard-library HTTP server in a daemon thread (no extra dependency, no
front-end build):

* ``/``: a small page with one card per source: its rendered frames (MJPEG), people, fps and
  latency (p50), refreshed from ``/stats.json`` by a few lines of inline JavaScript;
* ``/stream/<source>.mjpg``: ``multipart/x-mixed-replace`` JPEG frames with the skeletons drawn
  (:func:`edgepose.sinks.render`), at most ``max_fps`` per source;
* ``/stats.json``: per source frames, people, fps, latency p50, viewers;
* ``/latest.json``: the latest frame of any source as :func:`edgepose.sinks.frame_record`;
  ``/latest/<source>.json`` per source.

``<source>`` is the source's :func:`edgepose.sinks.source_slug`. Nothing is copied, drawn or
encoded unless someone watches a source's stream: :meth:`PreviewSink.consume` then hands the
frame (shrunk to ``max_width``) to a one-slot holder per source, replacing any frame not yet sent,
and the viewer's HTTP thread draws and encodes it (once per frame, however many viewers). Without
viewers a frame costs a few counters.

The server listens on loopback unless another address is given explicitly; the socket is bound
when the sink is made, so a port in use fails before the stream starts. Safe on a network:

* ``auth``: ``token:SECRET`` (``Authorization: Bearer SECRET``, or ``?token=SECRET`` once, which sets a
  same-site HttpOnly cookie for the page's own requests) or ``basic:USER:PASSWORD`` (the browser's
  login box); compared in constant time, never logged;
* a ``Host`` header allow-list (loopback names, the bound address, ``allow_hosts``): a page on another
  site that rebinds its DNS name to this address gets 403 (DNS rebinding);
* at most ``max_connections`` connections at once (more are closed when accepted: no thread is made
  for them), each idle one closed after ``timeout_s`` seconds without a request;
* a client that leaves is a debug log line, never a traceback on stderr.

Example:
    >>> sink = PreviewSink(port=8080)  # doctest: +SKIP
    >>> print(sink.url)  # doctest: +SKIP
    http://127.0.0.1:8080/
"""

from __future__ import annotations

import errno
import html
import json
import logging
import threading
import time
from collections import deque
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from edgepose.results import FrameResult
from edgepose.sinks import UniqueSlugs, frame_record, render

log = logging.getLogger(__name__)

__all__ = ["PreviewSink", "PreviewError", "parse_bind", "BOUNDARY"]

#: the MJPEG part boundary
BOUNDARY = "edgepose-frame"
LOOPBACK = "127.0.0.1"


class PreviewError(OSError):
    """The preview server cannot listen (port in use, address not on this machine)."""


def parse_auth(spec: str | None) -> tuple[str, ...] | None:
    """``token:SECRET`` -> ``("token", SECRET)``; ``basic:USER:PASSWORD`` -> ``("basic", USER, PASSWORD)``.

    Raises:
        ValueError: another form (the message does not repeat the secret).
    """
    if not spec:
        return None
    kind, _, rest = spec.partition(":")
    if kind == "token" and len(rest) >= 8:
        return ("token", rest)
    if kind == "basic" and ":" in rest and rest.split(":", 1)[0] and len(rest.split(":", 1)[1]) >= 8:
        user, _, pw = rest.partition(":")
        return ("basic", user, pw)
    raise ValueError("--preview-auth must be token:SECRET or basic:USER:PASSWORD, with a secret of at least 8 "
                     "characters (or set $EDGEPOSE_PREVIEW_AUTH to keep it off the command line)")


def parse_bind(text: str | int) -> tuple[str, int]:
    """``[HOST:]PORT`` -> ``(host, port)``; the host is loopback unless given (``[::1]:8080`` for IPv6).

    Example:
        >>> parse_bind("8080")
        ('127.0.0.1', 8080)
        >>> parse_bind("0.0.0.0:8080")
        ('0.0.0.0', 8080)
    """
    text = str(text).strip()
    host, port = LOOPBACK, text
    if text.startswith("["):  # [v6]:port
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
    elif ":" in text:
        host, _, port = text.rpartition(":")
    try:
        n = int(port)
    except ValueError:
        raise ValueError(f"--preview {text!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080") from None
    if not 0 <= n <= 65535 or not host:
        raise ValueError(f"--preview {text!r}: expected [HOST:]PORT with a port from 0 to 65535")
    return host, n


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restart right after a stop must not wait for TIME_WAIT

    def __init__(self, address, handler, sink: PreviewSink, max_connections: int = 64) -> None:
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        self.sink = sink
        self.slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):  # full: close it here, no thread for it
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warning("live view: connection limit reached, %d connections refused so far", self.refused)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        import sys

        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError, OSError)):  # a client that left or went quiet
            log.debug("live view: %s: %s", client_address[0], e)
        else:
            log.warning("live view: error serving %s: %s", client_address[0], e, exc_info=log.isEnabledFor(logging.DEBUG))


class _Slot:
    """One source: its latest result and, while watched, its latest frame (one slot, never a queue)."""

    def __init__(self, source: str, slug: str) -> None:
        self.source, self.slug = source, slug
        self.cond = threading.Condition()
        self.viewers = 0
        self.frame: np.ndarray | None = None  # shrunk BGR frame waiting to be drawn
        self.frame_result: FrameResult | None = None
        self.seq = 0  # bumped for each frame handed over
        self.jpeg: bytes | None = None
        self.jpeg_seq = -1
        self.encode_lock = threading.Lock()
        self.last_handed = 0.0
        self.frames = 0
        self.encoded = 0
        self.people = 0
        self.record: dict | None = None
        self.result: FrameResult | None = None
        self.times: deque[float] = deque(maxlen=64)
        self.latencies: deque[float] = deque(maxlen=100)

    def stats(self, now: float) -> dict:
        t = [x for x in self.times if now - x <= 5.0]
        fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        lat = float(np.median(self.latencies)) if self.latencies else None
        return {"source": self.source, "slug": self.slug, "frames": self.frames, "people": self.people,
                "fps": round(fps, 2), "latency_p50_ms": None if lat is None else round(lat, 1),
                "viewers": self.viewers, "encoded": self.encoded,
                "stream": f"/stream/{self.slug}.mjpg", "latest": f"/latest/{self.slug}.json"}  # fmt: skip


def _scaled(result: FrameResult, s: float) -> FrameResult:
    if s == 1.0:
        return result
    people = []
    for p in result.people:
        kp = p.keypoints.copy()
        kp[:, :2] *= s
        people.append(replace(p, keypoints=kp))
    return replace(result, people=people)


class PreviewSink:
    """Serve a live view of the stream over HTTP (see the module docstring for the routes).

    Args:
        host: address to listen on (default loopback; ``0.0.0.0`` makes it reachable from the network).
        port: TCP port; 0 picks a free one (see :attr:`port` / :attr:`url`).
        max_fps: JPEG frames per second per source at most.
        max_width: frames wider than this are shrunk before drawing and encoding.
        quality: JPEG quality.

    Raises:
        PreviewError: the address cannot be bound (e.g. the port is in use).
    """

    needs_image = True

    def __init__(self, host: str = LOOPBACK, port: int = 8080, *, max_fps: float = 10.0, max_width: int = 960,
                 quality: int = 80, auth: str | None = None, allow_hosts: tuple[str, ...] | list[str] = (),
                 max_connections: int = 64, timeout_s: float = 20.0) -> None:  # fmt: skip
        self.max_fps, self.max_width, self.quality = max_fps, max_width, quality
        self.auth = parse_auth(auth)
        self.timeout_s = timeout_s
        names = {"localhost", "127.0.0.1", "::1", host.lower().strip("[]"), *(h.lower().strip("[]") for h in allow_hosts)}
        self.allow_hosts = {n for n in names if n and n not in ("0.0.0.0", "::")}
        self.slots: dict[str, _Slot] = {}
        self.slugs = UniqueSlugs()  # two sources whose slugs collide get two slots
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._latest: dict | None = None
        self._started = time.monotonic()
        try:
            self.server = _Server((host, int(port)), _Handler, self, max_connections)
        except OSError as e:
            why = (
                "the port is in use (choose another: --preview PORT)"
                if e.errno == errno.EADDRINUSE
                else e.strerror or e
            )
            raise PreviewError(f"cannot serve the live view on {host}:{port}: {why}") from e
        self.host = host
        self.port = int(self.server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::", ""):
            shown = "localhost"
        self.url = f"http://{shown}:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgepose-preview", daemon=True)  # fmt: skip
        self._thread.start()
        if host not in (LOOPBACK, "localhost", "::1") and self.auth is None:
            log.warning("live view listens on %s:%d: reachable from the network, without authentication "
                        "(--preview-auth)", host, self.port)  # fmt: skip

    # -- the stream's side ---------------------------------------------------------------------------
    def _slot(self, source: str) -> _Slot:
        slug = self.slugs(source)
        with self._lock:
            slot = self.slots.get(slug)
            if slot is None:
                slot = self.slots[slug] = _Slot(source, slug)
            elif slot.source != source and not slot.frames:  # made by a viewer who came first
                slot.source = source
            return slot

    def consume(self, result: FrameResult, image: np.ndarray | None) -> None:
        """Count the frame; when someone watches this source and a frame is due, hand it over."""
        slot = self._slot(result.source)
        now = time.monotonic()
        slot.frames += 1
        slot.times.append(now)
        slot.people = len(result.people)
        if result.latency_ms is not None:
            slot.latencies.append(float(result.latency_ms))
        slot.result = result
        slot.record = None  # made when asked for
        self._latest_slot = slot
        if (slot.viewers and image is not None and result.ok
                and now - slot.last_handed >= 1.0 / self.max_fps):  # fmt: skip
            h, w = image.shape[:2]
            s = min(1.0, self.max_width / w)
            small = (
                cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else image.copy()
            )
            with slot.cond:
                slot.frame, slot.frame_result = small, _scaled(result, s)
                slot.seq += 1
                slot.last_handed = now
                slot.cond.notify_all()

    def close(self) -> None:
        """Stop the server (viewers' streams end); idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        for slot in list(self.slots.values()):
            with slot.cond:
                slot.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> PreviewSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the server's side ---------------------------------------------------------------------------
    def stats(self) -> dict:
        now = time.monotonic()
        return {"uptime_s": round(now - self._started, 1),
                "sources": {s.slug: s.stats(now) for s in list(self.slots.values()) if s.frames}}  # fmt: skip

    def latest(self, slug: str | None = None) -> dict | None:
        slot = self.slots.get(slug) if slug else getattr(self, "_latest_slot", None)
        if slot is None or slot.result is None:
            return None
        rec = slot.record
        if rec is None:
            rec = slot.record = frame_record(slot.result)
        return rec

    def jpeg(self, slot: _Slot, after: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """Wait (up to ``timeout``) for a frame newer than ``after``; ``(seq, jpeg)``, jpeg None on time-out."""
        with slot.cond:
            if slot.seq <= after and not self._closed.is_set():
                slot.cond.wait(timeout)
            seq, frame, res = slot.seq, slot.frame, slot.frame_result
        if seq <= after or frame is None:
            return after, None
        with slot.encode_lock:  # one encoding per frame, however many viewers
            if slot.jpeg_seq != seq:
                ok, buf = cv2.imencode(".jpg", render(frame, res), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:
                    return seq, None
                slot.jpeg, slot.jpeg_seq = buf.tobytes(), seq
                slot.encoded += 1
            return slot.jpeg_seq, slot.jpeg

    def page(self) -> str:
        cards = "".join(_CARD.format(slug=html.escape(s.slug), source=html.escape(s.source))
                        for s in list(self.slots.values()) if s.frames)  # fmt: skip
        return _PAGE.replace("{cards}", cards)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "edgepose-preview"

    def log_message(self, fmt, *args) -> None:  # requests to the debug log, not stderr
        log.debug("%s " + fmt, self.address_string(), *(a.split("?", 1)[0] if isinstance(a, str) else a for a in args))

    def setup(self) -> None:
        self.timeout = self.server.sink.timeout_s  # an idle connection is closed after this long
        super().setup()

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.server.sink.allow_hosts

    def _authorized(self) -> tuple[bool, str | None]:
        """(allowed, cookie to set)."""
        import base64
        import hmac
        from urllib.parse import parse_qs, urlsplit

        auth = self.server.sink.auth
        if auth is None:
            return True, None
        given = self.headers.get("Authorization") or ""
        if auth[0] == "basic":
            want = "Basic " + base64.b64encode(f"{auth[1]}:{auth[2]}".encode()).decode()
            return hmac.compare_digest(given.encode(), want.encode()), None
        secret = auth[1].encode()
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), secret):
            return True, None
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == "edgepose_preview" and hmac.compare_digest(v.encode(), secret):
                return True, None
        q = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        if q and hmac.compare_digest(q.encode(), secret):
            return True, f"edgepose_preview={auth[1]}; HttpOnly; SameSite=Strict; Path=/"
        return False, None

    _cookie: str | None = None

    def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
        self.send_response(status)
        if self._cookie:
            self.send_header("Set-Cookie", self._cookie)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(json.dumps(obj, separators=(",", ":")).encode(), "application/json", status)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        sink = self.server.sink
        path = self.path.split("?", 1)[0]
        if not self._host_ok():  # DNS rebinding: another site's name pointed at this address
            self._json({"error": "Host not allowed (--preview-allow-host)"}, 403)
            return
        ok, cookie = self._authorized()
        if not ok:
            body = b'{"error":"authentication required"}'
            self.send_response(401)
            if sink.auth[0] == "basic":
                self.send_header("WWW-Authenticate", 'Basic realm="edgepose live view", charset="UTF-8"')
            else:
                self.send_header("WWW-Authenticate", 'Bearer realm="edgepose live view"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._cookie = cookie
        if path in ("/", "/index.html"):
            self._send(sink.page().encode(), "text/html; charset=utf-8")
        elif path == "/stats.json":
            self._json(sink.stats())
        elif path == "/latest.json":
            rec = sink.latest()
            self._json(rec if rec is not None else {"error": "no frame yet"}, 200 if rec is not None else 404)
        elif path.startswith("/latest/") and path.endswith(".json"):
            rec = sink.latest(path[len("/latest/") : -len(".json")])
            self._json(rec if rec is not None else {"error": "no such source"}, 200 if rec is not None else 404)
        elif path.startswith("/stream/") and path.endswith(".mjpg"):
            self._mjpeg(path[len("/stream/") : -len(".mjpg")])
        else:
            self._json({"error": "not found"}, 404)

    def _mjpeg(self, slug: str) -> None:
        sink = self.server.sink
        deadline = time.monotonic() + 10.0  # a viewer may come before the source's first frame
        while slug not in sink.slots and time.monotonic() < deadline and not sink._closed.is_set():
            time.sleep(0.05)
        slot = sink.slots.get(slug)
        if slot is None:
            self._json({"error": f"no source {slug!r}"}, 404)
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        with slot.cond:
            slot.viewers += 1
        seq = -1
        try:
            while not sink._closed.is_set():
                seq, jpg = sink.jpeg(slot, seq)
                if jpg is None:
                    continue
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n".encode()
                )
                self.wfile.write(jpg)
                self.wfile.write(b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer went away
        finally:
            with slot.cond:
                slot.viewers -= 1
        self.close_connection = True


_CARD = """<figure data-slug="{slug}"><img src="/stream/{slug}.mjpg" alt="{source}">
<figcaption><b>{source}</b> <span class="st">…</span></figcaption></figure>
"""

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgepose live view</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1em;background:#111;color:#ddd}
h1{font-size:1.2em;margin:0 0 .6em}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(480px,100%),1fr));gap:1em;max-width:1940px}
figure{margin:0;background:#222;padding:.5em;border-radius:6px}
img{display:block;width:100%;max-width:960px;background:#000;min-height:120px}
figcaption{margin-top:.4em}.st{color:#9c9;margin-left:.6em}
a{color:#8bf}
</style></head><body>
<h1>edgepose live view <small>(<a href="/stats.json">stats</a>, <a href="/latest.json">latest frame</a>)</small></h1>
<main id="cams">
{cards}</main>
<script>
async function tick(){
  try{
    const s=await (await fetch('/stats.json',{cache:'no-store'})).json();
    for(const [slug,v] of Object.entries(s.sources)){
      let f=document.querySelector('figure[data-slug="'+CSS.escape(slug)+'"]');
      if(!f){f=document.createElement('figure');f.dataset.slug=slug;
        f.innerHTML='<img><figcaption><b></b> <span class="st"></span></figcaption>';
        f.querySelector('img').src=v.stream;f.querySelector('b').textContent=v.source;
        document.getElementById('cams').appendChild(f);}
      f.querySelector('.st').textContent=v.people+' people · '+v.fps.toFixed(1)+' fps · latency p50 '+
        (v.latency_p50_ms==null?'–':v.latency_p50_ms.toFixed(0)+' ms');
    }
  }catch(e){}
}
tick();setInterval(tick,1000);
</script></body></html>
"""
