"""The live view on a network (issue 24, item 6): a token or a login, a Host allow-list against DNS
rebinding, idle connections closed and capped (100 idle ones neither slow the stream nor lose output),
and a client that leaves is no traceback."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time

import pytest
from conftest import VIDEO

from edgepose.preview import PreviewSink, parse_auth

TOKEN = "s3cret-token-1234"


def _get(port: int, path: str = "/stats.json", headers: dict | None = None) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def test_auth_forms_are_checked():
    assert parse_auth(None) is None and parse_auth(f"token:{TOKEN}") == ("token", TOKEN)
    assert parse_auth("basic:cam:longenough") == ("basic", "cam", "longenough")
    for bad in ("token:short", "basic:nopass", "digest:x:y", f"{TOKEN}"):
        with pytest.raises(ValueError, match="--preview-auth") as e:
            parse_auth(bad)
        assert "short" not in str(e.value) or bad == "token:short" and "token:short" not in str(e.value)


def test_token(caplog):
    with PreviewSink(port=0, auth=f"token:{TOKEN}") as sink:
        p = sink.port
        assert _get(p)[0] == 401
        assert _get(p, headers={"Authorization": "Bearer wrong-token-123"})[0] == 401
        assert _get(p, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        status, headers, body = _get(p, f"/?token={TOKEN}")  # a browser's first visit
        assert status == 200 and b"edgepose live view" in body
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert _get(p, headers={"Cookie": cookie.split(";")[0]})[0] == 200  # the page's own requests
    assert TOKEN not in caplog.text


def test_basic_login():
    with PreviewSink(port=0, auth="basic:viewer:longpassword") as sink:
        status, headers, _ = _get(sink.port, "/")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
        good = base64.b64encode(b"viewer:longpassword").decode()
        bad = base64.b64encode(b"viewer:wrongpassword").decode()
        assert _get(sink.port, headers={"Authorization": f"Basic {good}"})[0] == 200
        assert _get(sink.port, headers={"Authorization": f"Basic {bad}"})[0] == 401


def test_host_allow_list_against_dns_rebinding():
    with PreviewSink(port=0, allow_hosts=["camera-box.lan"]) as sink:
        p = sink.port
        assert _get(p, headers={"Host": f"127.0.0.1:{p}"})[0] == 200
        assert _get(p, headers={"Host": f"localhost:{p}"})[0] == 200
        assert _get(p, headers={"Host": f"camera-box.lan:{p}"})[0] == 200
        assert _get(p, headers={"Host": f"attacker.example:{p}"})[0] == 403
        assert _get(p, headers={"Host": ""})[0] == 403


def test_a_client_that_leaves_is_no_traceback(capfd):
    with PreviewSink(port=0) as sink:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", sink.port))
            s.sendall(b"GET /stats.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            s.close()
        time.sleep(0.5)
    assert "Traceback" not in capfd.readouterr().err


def test_a_hundred_idle_connections_neither_slow_the_stream_nor_lose_output(estimator, tmp_path):
    import threading

    from edgepose.sinks import JsonLinesSink
    from edgepose.stream import Stream

    sink = PreviewSink(port=0, timeout_s=1.0)  # the default cap (64)
    idle = [socket.create_connection(("127.0.0.1", sink.port), timeout=5) for _ in range(100)]
    out = tmp_path / "o.jsonl"
    s = Stream(estimator, VIDEO, sinks=[sink, JsonLinesSink(out)], track=False, loop=True, max_frames=150)
    done: dict = {}
    t = threading.Thread(target=lambda: done.setdefault("n", sum(1 for _ in s)))
    t.start()
    try:
        # every idle connection is closed by the server: over the cap when accepted (no thread made for
        # it), the others after their idle time-out; meanwhile a new client is served
        deadline = time.monotonic() + 20
        closed = 0
        for c in idle:
            c.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                closed += c.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed == 100
        assert t.is_alive(), "the stream ended before the check: make it longer"
        status, _, body = _get(sink.port)
        assert status == 200 and json.loads(body)["sources"]
    finally:
        t.join(120)
        for c in idle:
            c.close()
    assert done["n"] == 150 and len(out.read_text().splitlines()) == 150 and s.stats.failed == 0


def test_connections_over_the_cap_are_closed_at_once():
    with PreviewSink(port=0, max_connections=2, timeout_s=30.0) as sink:
        held = [socket.create_connection(("127.0.0.1", sink.port)) for _ in range(2)]
        time.sleep(0.5)  # both accepted, each holding a handler thread
        extra = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
        t0 = time.monotonic()
        assert extra.recv(1) == b"" and time.monotonic() - t0 < 3  # closed when accepted, not after 30 s
        assert sink.server.refused == 1
        for c in (*held, extra):
            c.close()


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_a_real_browser_with_the_token(estimator, tmp_path):
    """Debian's headless chromium opens the live view with ?token= (then the cookie carries its own
    requests: the MJPEG stream and stats.json), and gets the 401 without it."""
    import subprocess
    import threading

    from conftest import need_service

    from edgepose.stream import Stream

    exe = _chromium()
    if exe is None:
        need_service("chromium is not installed (make system-deps)")
    sink = PreviewSink(port=0, auth=f"token:{TOKEN}")
    s = Stream(estimator, VIDEO, sinks=[sink], track=False, loop=True, max_frames=120)
    t = threading.Thread(target=lambda: sum(1 for _ in s))
    t.start()
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=4000"]  # fmt: skip
    try:
        time.sleep(1.0)  # a few frames in
        url = f"http://127.0.0.1:{sink.port}/?token={TOKEN}"
        dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        assert "edgepose live view" in dom and "mmaction2__demo_skeleton.mp4" in dom, dom[-1500:]
        shot = tmp_path / "preview.png"
        subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,700", url], capture_output=True, timeout=120)
        assert shot.exists() and shot.stat().st_size > 10_000
        denied = subprocess.run([*flags, "--dump-dom", f"http://127.0.0.1:{sink.port}/"], capture_output=True,
                                text=True, timeout=120).stdout  # fmt: skip
        assert "authentication required" in denied and "edgepose live view" not in denied
    finally:
        s.stop()
        t.join(120)
        sink.close()
