"""RTSP against a real server on loopback: GStreamer's RTSP server (tests/rtsp_server.py, run with
the system Python and Debian's gir1.2-gst-rtsp-server-1.0; `make system-deps` installs it) serving
H.264 from the test video at 640x360 25 fps. Frames arrive over UDP and TCP; a server stopped and
restarted mid-stream is reconnected with back-off (the outage's frames counted as lost, with the
reason); a camera that never comes back ends with exit 1 and a summary; dead addresses, refused
streams, wrong credentials and wrong schemes each give one clear message and do not hang."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, VIDEO, need_service

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")
SMALL = ("--device", "cpu", "--threads", "2", "--size", "small", "--no-progress")


def _have_server() -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON}"
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                        "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
                        "assert Gst.ElementFactory.find('x264enc'), 'x264enc'"],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        return "GStreamer's RTSP server is not installed (make system-deps): " + r.stderr.strip().splitlines()[-1]
    return None


_MISSING = _have_server()


@pytest.fixture(autouse=True)
def _server_installed():
    if _MISSING is not None:
        need_service(_MISSING)


class RtspServer:
    """tests/rtsp_server.py in a process: ``urls`` once it accepts connections; ``stop()`` (SIGTERM)."""

    def __init__(self, port: int = 0, mounts: str = "cam0", user: str | None = None) -> None:
        cmd = [SYSTEM_PYTHON, str(SERVER), str(VIDEO), "--port", str(port), "--mounts", mounts]
        if user:
            cmd += ["--user", user]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        n = len(mounts.split(","))
        self.urls = [self.proc.stdout.readline().strip() for _ in range(n)]
        if not all(u.startswith("rtsp://") for u in self.urls):
            self.proc.kill()
            raise AssertionError(f"RTSP server did not start: {self.urls} {self.proc.stderr.read()}")
        self.ready = time.time()
        self.port = int(self.urls[0].rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> RtspServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture
def server():
    s = RtspServer()
    yield s
    s.stop()


def jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def start_run(out: Path, model_path: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgepose", "run", *args, "--model", str(model_path), *SMALL,
           "--jsonl", str(out / "poses.jsonl"), "--stats-json", str(out / "stats.json")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 90.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = jsonl(path)
        if len(recs) >= n:
            return recs
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"fewer than {n} lines in {timeout} s: {proc.communicate()}")


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_frames_arrive(cli, model_path, server, tmp_path, transport):
    out = tmp_path / "poses.jsonl"
    code, stdout, stderr = cli("run", server.urls[0], "--model", model_path, *SMALL, "--realtime",
                               "--rtsp-transport", transport, "--max-frames", "25", "--jsonl", out)  # fmt: skip
    assert code == 0, stdout + stderr
    recs = jsonl(out)
    assert len(recs) >= 1 and all(r["width"] == 640 and r["height"] == 360 for r in recs)
    assert all(r["source"] == server.urls[0] for r in recs)
    assert sum(len(r["people"]) for r in recs) >= len(recs)  # the clip's two people are seen
    assert all(r["latency_ms"] > 0 for r in recs)
    assert "summary: 25 frames read" in stdout and "latency p50" in stdout


def test_server_restart_reconnects(model_path, tmp_path):
    out = tmp_path / "out"
    first = RtspServer()
    url, port = first.urls[0], first.port
    # the default back-off (0.5 s doubling up to 1 s, 15 tries): the figure in docs/streaming.md
    proc = start_run(out, model_path, url, "--realtime", "--rtsp-transport", "tcp", "--timeout", "3")
    second = None
    try:
        wait_lines(out / "poses.jsonl", 10, proc)
        t_down = time.time()
        first.stop()
        time.sleep(3.0)
        second = RtspServer(port=port)
        before = len(jsonl(out / "poses.jsonl"))
        recs = wait_lines(out / "poses.jsonl", before + 10, proc, timeout=60)
        back = next(r for r in recs if r["timestamp"] > second.ready)
        reconnect_s = back["timestamp"] - second.ready
        print(f"\nreconnected {reconnect_s:.2f} s after the server was back (down {second.ready - t_down:.1f} s)")
        assert reconnect_s < 4.0  # the figure (docs/streaming.md) is ~1.5 s; loose for a loaded machine
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        first.stop()
        if second is not None:
            second.stop()
    assert proc.returncode == 0, stdout + stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["reopens"] >= 1 and stats["accounted"] and not stats["source_lost"]
    assert stats["dropped"].get("outage", 0) >= 25  # 25 fps x at least 3 s, estimated
    assert stats["outage_s"] >= 2.5
    assert "outage" in stdout and "down " in stdout
    frames = [r["frame"] for r in jsonl(out / "poses.jsonl")]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)


def test_camera_that_never_comes_back(model_path, tmp_path):
    out = tmp_path / "out"
    srv = RtspServer()
    proc = start_run(out, model_path, srv.urls[0], "--realtime", "--timeout", "2", "--reconnect-tries", "2",
                     "--reconnect-delay", "0.2")  # fmt: skip
    try:
        wait_lines(out / "poses.jsonl", 5, proc)
        srv.stop()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
    assert proc.returncode == 1, stdout + stderr
    assert "summary:" in stdout and "lost: stopped after frame" in stdout
    stats = json.loads((out / "stats.json").read_text())
    assert stats["source_lost"] and stats["accounted"] and stats["processed"] >= 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_addresses_one_clear_message(cli, model_path, server):
    def run(url, *extra):
        t0 = time.monotonic()
        code, stdout, stderr = cli("run", url, "--model", model_path, *SMALL, "--max-frames", "2", "--timeout", "2",
                                   *extra)  # fmt: skip
        return code, stderr, time.monotonic() - t0

    code, err, _ = run(f"rtsp://127.0.0.1:{free_port()}/cam0")
    assert code == 2 and "connection refused" in err and err.count("\n") <= 2, err
    code, err, _ = run(server.urls[0].rsplit("/", 1)[0] + "/nothing")
    assert code == 2 and "404 Not Found" in err, err
    code, err, _ = run("rtps://127.0.0.1/cam0")
    assert code == 2 and "unsupported URL scheme 'rtps'" in err, err
    # a listening socket that never answers: the open time-out ends it
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        code, err, took = run(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam0")
    assert code == 2 and "no answer" in err and took < 20, (err, took)


def test_wrong_credentials(cli, model_path):
    with RtspServer(user="edge:secret") as srv:
        url = srv.urls[0]
        good = url.replace("rtsp://", "rtsp://edge:secret@")
        bad = url.replace("rtsp://", "rtsp://edge:wrong@")
        code, stdout, stderr = cli("run", bad, "--model", model_path, *SMALL, "--max-frames", "2", "--timeout", "3")
        assert code == 2 and "refused the credentials (401 Unauthorized)" in stderr, stderr
        assert "wrong" not in stderr  # the password is not printed
        code, stdout, stderr = cli("run", good, "--model", model_path, *SMALL, "--max-frames", "3", "--realtime")
        assert code == 0, stdout + stderr


def test_several_cameras_in_one_process(cli, model_path, tmp_path):
    """Two RTSP cameras and one dead address in realtime: both cameras are processed in turn, every
    output carries its source (JSONL, one OpenPose folder and one rendered video per camera), ids
    are per camera, and the dead one is reported without stopping the others (exit 1)."""
    out = tmp_path / "out"
    with RtspServer(mounts="cam0,cam1") as srv:
        dead = f"rtsp://127.0.0.1:{free_port()}/cam9"
        # the default input size: inference, not the cameras' decoding, is the bottleneck, so both
        # cameras always have a newest frame waiting and the turns can be checked
        code, stdout, stderr = cli("run", *srv.urls, dead, "--model", model_path, "--realtime",
                                   "--max-frames", "100", "--timeout", "3", "--jsonl", out / "p.jsonl",
                                   "--json-dir", out / "json", "--render", out / "r.mp4",
                                   "--stats-json", out / "stats.json")  # fmt: skip
    assert code == 1, stdout + stderr  # the dead camera is lost
    recs = jsonl(out / "p.jsonl")
    by = {u: [r for r in recs if r["source"] == u] for u in srv.urls}
    assert all(len(v) >= 3 for v in by.values()), {u: len(v) for u, v in by.items()}
    assert all(r["latency_ms"] > 0 for r in recs)
    for v in by.values():  # in order within each camera; ids start at 0 in each (one tracker per camera)
        assert [r["frame"] for r in v] == sorted(r["frame"] for r in v)
        assert min(p["id"] for r in v for p in r["people"]) == 0
    assert sorted(p.name for p in (out / "json").iterdir()) == ["127.0.0.1_" + u.rsplit(":", 1)[1].replace("/", "_")
                                                                for u in srv.urls]  # fmt: skip
    assert len(list(out.glob("r_127.0.0.1_*.mp4"))) == 2
    stats = json.loads((out / "stats.json").read_text())
    assert stats["accounted"] and set(stats["sources"]) == {*srv.urls, dead}
    assert stats["sources"][dead]["source_lost"] and "connection refused" in stats["sources"][dead]["source_ended"]
    # fair turns while every camera is delivering: from when the last one opened (on a busy machine
    # one may open later than the other) ...
    # and until the first one stops (--max-frames counts each camera's frames, so one may end first)
    start = max(next(i for i, r in enumerate(recs) if r["source"] == u) for u in srv.urls)
    stop = min(max(i for i, r in enumerate(recs) if r["source"] == u) for u in srv.urls)
    n = [sum(r["source"] == u for r in recs[start : stop + 1]) for u in srv.urls]
    assert min(n) >= 0.5 * max(n), n
    assert "cam9" in stdout and "(LOST)" in stdout


def test_several_files_api(estimator):
    from edgepose.stream import Stream

    s = Stream(estimator, sources=[VIDEO, VIDEO], max_frames=12)
    res = list(s)
    names = sorted({r.source for r in res})
    assert names == ["mmaction2__demo_skeleton.mp4", "mmaction2__demo_skeleton.mp4#2"]
    for n in names:
        mine = [r for r in res if r.source == n]
        assert [r.index for r in mine] == list(range(12))
        assert sorted(p.id for p in mine[-1].people) == [0, 1]  # each source tracked on its own
    assert s.stats.read == 24 and s.stats.accounted and s.stats.ok
    assert {d["processed"] for d in s.stats.sources.values()} == {12}
