"""Credentials never leave the process (issue 24, items 3 and 4): one redactor for userinfo and
query-string credentials, ${EDGEPOSE_...} substitution, and the RTSP diagnostic that sends credentials
only after a 401, with Digest when offered (checked by a real RTSP-speaking socket server on loopback)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading

import pytest

from edgepose.redact import expand_env, printable, redact
from edgepose.sources.video import rtsp_diagnose

SECRET = "S3cr@t/pa:ss"


@pytest.mark.parametrize("url,shown", [
    ("rtsp://admin:hunter2@cam/live", "rtsp://admin:***@cam/live"),
    (f"rtsp://admin:{SECRET}@10.0.0.2:554/x", "rtsp://admin:***@10.0.0.2:554/x"),
    ("rtsp://admin:p%40ss@cam", "rtsp://admin:***@cam"),
    ("https://TOKEN123@host/x", "https://***@host/x"),
    ("rtsp://cam/cam/realmonitor?channel=1&subtype=0&user=admin&password=hunter2",
     "rtsp://cam/cam/realmonitor?channel=1&subtype=0&user=***&password=***"),
    ("http://cam/videostream.cgi?loginuse=admin&loginpas=hunter2", "http://cam/videostream.cgi?loginuse=***&loginpas=***"),
    ("rtsp://cam/h264Preview_01_main?AUTH_TOKEN=abc&api_key=k", "rtsp://cam/h264Preview_01_main?AUTH_TOKEN=***&api_key=***"),
    ("rtspsrc location=rtsp://u:hunter2@h/x latency=0 ! decodebin", "rtspsrc location=rtsp://u:***@h/x latency=0 ! decodebin"),
    ("mqtt://user:hunter2@broker:1883/t", "mqtt://user:***@broker:1883/t"),
    ("rtsp://cam:554/stream1", "rtsp://cam:554/stream1"),
    ("/videos/clip.mp4", "/videos/clip.mp4"),
])  # fmt: skip
def test_redact(url, shown):
    assert redact(url) == shown
    assert "hunter2" not in redact(f"error: cannot open {url} (timeout)")


def test_printable_escapes_control_characters_and_undecodable_bytes():
    assert printable("clip.mp4") == "clip.mp4"
    s = printable("a\nb\x1b[31mc\udcff.mp4")
    assert "\n" not in s and "\x1b" not in s and s.isprintable() and "\\udcff" in s


def test_expand_env_only_edgepose_names():
    env = {"EDGEPOSE_CAM_PW": "pw1", "HOME": "/root"}
    assert expand_env("rtsp://a:${EDGEPOSE_CAM_PW}@h/x", env) == "rtsp://a:pw1@h/x"
    assert expand_env("rtsp://a:${HOME}@h/x", env) == "rtsp://a:${HOME}@h/x"  # not ours: left alone
    with pytest.raises(KeyError, match="EDGEPOSE_NOPE is not set"):
        expand_env("rtsp://a:${EDGEPOSE_NOPE}@h/x", env)


class FakeCamera:
    """A real RTSP-speaking server on loopback: answers DESCRIBE with 401 + WWW-Authenticate until
    the right credentials come, then 200. Records every request of the diagnostic (User-Agent edgepose)."""

    def __init__(self, offers=("digest", "basic"), user="admin", password=SECRET, qop=True):
        self.offers, self.user, self.password, self.qop = offers, user, password, qop
        self.requests: list[dict[str, str]] = []
        self.nonce = "abc123nonce"
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _ok(self, req: dict[str, str]) -> bool:
        auth = req.get("authorization", "")
        if auth.startswith("Basic "):
            import base64

            return "basic" in self.offers and base64.b64decode(auth[6:]).decode() == f"{self.user}:{self.password}"
        if auth.startswith("Digest "):
            p = dict(re.findall(r'(\w+)="?([^",]*)"?', auth[7:]))

            def md5(t):
                return hashlib.md5(t.encode()).hexdigest()

            ha1, ha2 = md5(f"{self.user}:cam:{self.password}"), md5(f"DESCRIBE:{p['uri']}")
            want = md5(f"{ha1}:{self.nonce}:{p['nc']}:{p['cnonce']}:auth:{ha2}") if self.qop else md5(f"{ha1}:{self.nonce}:{ha2}")
            return p.get("response") == want and p.get("username") == self.user
        return False

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                buf = b""
                try:
                    while True:
                        while b"\r\n\r\n" not in buf:
                            chunk = conn.recv(4096)
                            if not chunk:
                                raise ConnectionError
                            buf += chunk
                        head, buf = buf.split(b"\r\n\r\n", 1)
                        lines = head.decode().split("\r\n")
                        req = {"line": lines[0]}
                        for ln in lines[1:]:
                            k, _, v = ln.partition(":")
                            req[k.strip().lower()] = v.strip()
                        if req.get("user-agent") == "edgepose":
                            self.requests.append(req)
                        cseq = req.get("cseq", "1")
                        if self._ok(req):
                            conn.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n".encode())
                            continue
                        hdr = ""
                        if "digest" in self.offers:
                            q = ', qop="auth"' if self.qop else ""
                            hdr += f'WWW-Authenticate: Digest realm="cam", nonce="{self.nonce}"{q}\r\n'
                        if "basic" in self.offers:
                            hdr += 'WWW-Authenticate: Basic realm="cam"\r\n'
                        conn.sendall(f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n{hdr}\r\n".encode())
                except (ConnectionError, OSError):
                    pass

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("qop", [True, False])
def test_diagnostic_sends_digest_only_after_the_401(qop):
    cam = FakeCamera(qop=qop)
    try:
        from urllib.parse import quote

        assert rtsp_diagnose(f"rtsp://admin:{quote(SECRET, safe='')}@127.0.0.1:{cam.port}/live") == ""
        first, second = cam.requests
        assert "authorization" not in first  # nothing before the camera asks
        assert second["authorization"].startswith("Digest ") and SECRET not in second["authorization"]
        assert SECRET not in first["line"] and "admin" not in first["line"]  # no userinfo in the request URI
        # the wrong password: refused, said so, still never in clear
        cam.requests.clear()
        assert "refused the credentials" in rtsp_diagnose(f"rtsp://admin:wrong@127.0.0.1:{cam.port}/live")
        assert all("Basic" not in r.get("authorization", "") for r in cam.requests)
    finally:
        cam.close()


def test_diagnostic_uses_basic_only_when_it_is_all_offered():
    cam = FakeCamera(offers=("basic",))
    try:
        assert rtsp_diagnose(f"rtsp://admin:{SECRET.replace('/', '%2F').replace('@', '%40').replace(':', '%3A')}"
                             f"@127.0.0.1:{cam.port}/live") == ""
        first, second = cam.requests
        assert "authorization" not in first and second["authorization"].startswith("Basic ")
    finally:
        cam.close()


def test_no_credentials_leak_from_a_failing_stream(cli, tmp_path, monkeypatch):
    cam = FakeCamera(offers=("digest",))
    stats = tmp_path / "stats.json"
    try:
        url = f"rtsp://admin:hunter2@127.0.0.1:{cam.port}/cam?channel=1&password=Q9zz&token=T0k3n"
        code, out, err = cli("-v", "run", url, "--timeout", "2", "--stats-json", stats, "--jsonl", tmp_path / "o.jsonl")
        text = out + err + (stats.read_text() if stats.exists() else "")
        assert code != 0
        for secret in ("hunter2", "Q9zz", "T0k3n"):
            assert secret not in text, text[-2000:]
        assert "admin:***@127.0.0.1" in text
        # the password from the environment: not on the command line, not in any output
        monkeypatch.setenv("EDGEPOSE_TEST_CAM_PW", "Env5ecret")
        code, out, err = cli("-v", "run", f"rtsp://admin:${{EDGEPOSE_TEST_CAM_PW}}@127.0.0.1:{cam.port}/cam",
                             "--timeout", "2")  # fmt: skip
        assert code != 0 and "Env5ecret" not in out + err
        code, out, err = cli("run", f"rtsp://admin:${{EDGEPOSE_UNSET_PW}}@127.0.0.1:{cam.port}/cam", "--timeout", "2")
        assert code != 0 and "EDGEPOSE_UNSET_PW is not set" in out + err
    finally:
        cam.close()
    assert json.dumps({"ok": True})


def test_the_summary_counts_the_failures_it_does_not_list(cli, tmp_path):
    from conftest import MODEL

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(1005):
        (folder / f"bad{i:04d}.jpg").write_bytes(b"not a picture")
    evil = folder / "evil\n\x1b[2Kfake summary line.jpg"
    evil.write_bytes(b"nope")
    code, out, err = cli("run", folder, "--model", MODEL, "--device", "cpu", "--no-progress")
    assert code == 1
    text = out + err
    assert "summary: 1006 inputs, 0 processed, 1006 failed" in text
    assert "... and 6 more failures not listed" in text  # the stream keeps the first 1000 messages
    assert "\x1b" not in text and "\nfake summary line" not in text  # a file name cannot forge a line
    assert "evil\\n\\x1b[2Kfake summary line.jpg" in text


def _run_child(python, *argv, timeout=300):
    """`python -m edgepose ARGV` in a child process (OpenCV crashes the process, not a test, on bad names)."""
    import subprocess

    return subprocess.run([python, "-m", "edgepose", *argv], capture_output=True, timeout=timeout)


def test_names_that_are_not_utf8_do_not_crash(python, tmp_path):
    import os
    import shutil

    from conftest import IMAGES, MODEL, VIDEO

    base = os.fsencode(tmp_path)
    clip = base + b"/clip\xff.mp4"
    pic = base + b"/pic\xfe.jpg"
    shutil.copy(VIDEO, clip)
    shutil.copy(IMAGES / "tfpose__p1.jpg", pic)
    out_dir = base + b"/out\xfd"
    os.mkdir(out_dir)
    common = [b"--model", os.fsencode(MODEL), b"--device", b"cpu", b"--size", b"small", b"--no-progress"]
    p = _run_child(python, b"run", clip, *common, b"--max-frames", b"3", b"--jsonl", out_dir + b"/o.jsonl",
                   b"--render", out_dir + b"/r\xff.mp4")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(line) for line in open(out_dir + b"/o.jsonl", "rb").read().splitlines()]
    assert len(rows) == 3 and rows[0]["source"] == "clip\\udcff.mp4" and rows[0]["people"]
    assert os.path.getsize(out_dir + b"/r\xff.mp4") > 1000
    p = _run_child(python, b"run", pic, *common, b"--render", out_dir + b"/r\xfe.jpg")
    assert p.returncode == 0, p.stderr[-2000:]
    assert os.path.getsize(out_dir + b"/r\xfe.jpg") > 1000
    assert not [n for n in os.listdir(out_dir) if b"partial" in n]  # no temporary file left


def test_sources_whose_names_collide_get_their_own_outputs(cli, tmp_path):
    import shutil

    from conftest import MODEL, VIDEO

    a, b = tmp_path / "cam 1.mp4", tmp_path / "cam_1.mp4"
    shutil.copy(VIDEO, a)
    shutil.copy(VIDEO, b)
    code, out, err = cli("run", a, b, "--model", MODEL, "--device", "cpu", "--size", "small", "--max-frames", "2",
                         "--json-dir", tmp_path / "json", "--render", tmp_path / "render", "--no-progress")  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == ["cam_1-2.mp4", "cam_1.mp4"]
    assert sorted(p.name for p in (tmp_path / "render").iterdir()) == ["cam_1-2.mp4", "cam_1.mp4"]
