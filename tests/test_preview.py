"""Live view (``--preview``): a real stream on the test video served on a free loopback port, read by
an HTTP client: MJPEG frames decoded with OpenCV, /stats.json, /latest.json and the page."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
from conftest import VIDEO

from edgepose.preview import BOUNDARY, PreviewError, PreviewSink, parse_bind
from edgepose.sinks import source_slug


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"] == "application/json"
        return json.loads(r.read())


def read_mjpeg_frames(host: str, port: int, path: str, n: int) -> list[np.ndarray]:
    """Read ``n`` parts of a multipart MJPEG stream, checking each part's boundary and headers."""
    conn = http.client.HTTPConnection(host, port, timeout=20)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    frames = []
    try:
        while len(frames) < n:
            line = resp.readline()
            if line in (b"\r\n", b""):
                assert line, "stream ended early"
                continue
            assert line == f"--{BOUNDARY}\r\n".encode()
            headers = {}
            while (h := resp.readline()) != b"\r\n":
                k, _, v = h.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            data = resp.read(int(headers["content-length"]))
            assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"  # JPEG SOI ... EOI
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None
            frames.append(img)
    finally:
        conn.close()
    return frames


def test_parse_bind_defaults_to_loopback():
    assert parse_bind("8080") == ("127.0.0.1", 8080)
    assert parse_bind(9000) == ("127.0.0.1", 9000)
    assert parse_bind("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_bind("[::1]:8081") == ("::1", 8081)
    with pytest.raises(ValueError, match=r"\[HOST:\]PORT"):
        parse_bind("localhost:http")
    with pytest.raises(ValueError):
        parse_bind("70000")


def test_default_bind_is_loopback():
    with PreviewSink(port=0) as sink:
        assert sink.server.server_address[0] == "127.0.0.1"
        assert sink.url == f"http://127.0.0.1:{sink.port}/"
        with urllib.request.urlopen(sink.url, timeout=5) as r:
            assert r.status == 200 and "edgepose live view" in r.read().decode()
    with pytest.raises(OSError):  # closed: nothing listens any more
        socket.create_connection(("127.0.0.1", sink.port), timeout=2).close()


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PreviewError, match="port is in use"):
            PreviewSink(port=port)


def test_live_view_of_a_stream(estimator):
    from edgepose.stream import Stream

    sink = PreviewSink(port=0)
    slug = source_slug(VIDEO.name)  # a file's frames carry its name
    got: dict = {}

    def client():  # watches before the first frame, like a browser opened before the run
        try:
            got["frames"] = read_mjpeg_frames("127.0.0.1", sink.port, f"/stream/{slug}.mjpg", 3)
            got["stats"] = get_json(f"http://127.0.0.1:{sink.port}/stats.json")
            got["latest"] = get_json(f"http://127.0.0.1:{sink.port}/latest.json")
            got["latest_one"] = get_json(f"http://127.0.0.1:{sink.port}/latest/{slug}.json")
            with urllib.request.urlopen(sink.url, timeout=10) as r:
                got["page"] = r.read().decode()
        except BaseException as e:  # reported by the test thread
            got["error"] = e

    t = threading.Thread(target=client, daemon=True)
    t.start()
    time.sleep(0.2)
    with Stream(estimator, str(VIDEO), sinks=[sink], max_frames=300, realtime=True, loop=True) as stream:
        for _ in stream:
            if not t.is_alive():
                break
    t.join(20)
    assert "error" not in got, got.get("error")
    frames = got["frames"]
    assert len(frames) >= 3
    assert frames[0].shape[1] <= 960 and frames[0].shape[2] == 3 and frames[0].std() > 10
    st = got["stats"]["sources"][slug]
    assert st["source"] == VIDEO.name and st["frames"] >= 3 and st["viewers"] >= 0
    assert st["fps"] > 0 and st["latency_p50_ms"] > 0 and st["stream"] == f"/stream/{slug}.mjpg"
    assert st["encoded"] <= st["frames"]
    latest = got["latest"]
    assert latest["source"] == VIDEO.name and latest["people"] and len(latest["people"][0]["keypoints"]) == 54
    assert got["latest_one"]["source"] == VIDEO.name
    assert f'src="/stream/{slug}.mjpg"' in got["page"] and str(VIDEO.name) in got["page"]
    # closed with the stream: the server is gone
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sink.port), timeout=2).close()


def test_nothing_is_encoded_without_viewers(estimator):
    from edgepose.stream import Stream

    sink = PreviewSink(port=0)
    with Stream(estimator, str(VIDEO), sinks=[sink], max_frames=8) as stream:
        stream.run()
    slot = next(iter(sink.slots.values()))
    assert slot.frames == 8 and slot.encoded == 0 and slot.frame is None


def test_cli_port_in_use_exits_2(cli, model_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, out, err = cli("run", VIDEO, "--model", model_path, "--preview", str(port), "--max-frames", "2",
                             "--no-progress")  # fmt: skip
    assert code == 2
    assert f"error: cannot serve the live view on 127.0.0.1:{port}: the port is in use" in err
    assert "summary" not in out
