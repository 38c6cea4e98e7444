"""Sinks: JSON lines, OpenPose JSON with track ids, rendered video, and MQTT against a real mosquitto
broker started on a free loopback port."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_service

from edgepose.layouts import get_layout
from edgepose.results import FrameResult, Person
from edgepose.sinks import (
    CocoWriter,
    JsonLinesSink,
    MqttSink,
    OpenPoseJsonDir,
    RenderSink,
    frame_record,
    parse_mqtt_url,
    source_slug,
)

LAY = get_layout("coco18")


def result(i: int, ids=(3, 7), error: str | None = None) -> FrameResult:
    people = []
    for k, pid in enumerate(ids):
        kp = np.zeros((18, 3), np.float32)
        kp[:, 0] = 100 + 200 * k + np.arange(18)
        kp[:, 1] = 50 + 10 * np.arange(18)
        kp[:, 2] = 0.5
        kp[17] = 0
        people.append(Person(kp, 0.8 - 0.1 * k, id=pid))
    return FrameResult(people=[] if error else people, image_size=(640, 480), layout=LAY, index=i,
                       source="cam.mp4", timestamp=i / 25, error=error,
                       timings={"read": 1.0, "preprocess": 2.0, "inference": 30.0, "decode": 1.5})  # fmt: skip


# -- records and JSON lines -------------------------------------------------------------------------
def test_frame_record_has_index_time_people_ids_and_timings():
    rec = frame_record(result(4))
    assert rec["frame"] == 4 and rec["timestamp"] == 0.16 and rec["source"] == "cam.mp4"
    assert (rec["width"], rec["height"], rec["layout"]) == (640, 480, "coco18")
    assert [p["id"] for p in rec["people"]] == [3, 7]
    assert len(rec["people"][0]["keypoints"]) == 54 and rec["people"][0]["keypoints"][:3] == [100.0, 50.0, 0.5]
    assert rec["people"][0]["keypoints"][-3:] == [0.0, 0.0, 0.0]
    assert rec["timings_ms"]["inference"] == 30.0
    assert "error" not in rec
    bad = frame_record(result(5, error="frame 5: boom"))
    assert bad["error"] == "frame 5: boom" and bad["people"] == []
    json.dumps(rec)


def test_json_lines_are_flushed_line_by_line(tmp_path):
    path = tmp_path / "sub" / "poses.jsonl"
    sink = JsonLinesSink(path)
    for i in range(3):
        sink.consume(result(i), None)
        lines = path.read_text().splitlines()  # readable before close: nothing waits in a buffer
        assert len(lines) == i + 1 and json.loads(lines[-1])["frame"] == i
    sink.close()
    sink.close()  # idempotent
    assert sink.lines == 3


def test_json_lines_to_stdout(capsys):
    with JsonLinesSink("-") as sink:
        sink.consume(result(0), None)
        sink.consume(result(1), None)
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["frame"] for x in out] == [0, 1]
    assert not sys.stdout.closed


def test_openpose_json_carries_track_ids(tmp_path):
    sink = OpenPoseJsonDir(tmp_path, per_frame=True)
    sink.consume(result(12), None)
    doc = json.loads((tmp_path / "cam_000000000012_keypoints.json").read_text())
    assert [p["person_id"] for p in doc["people"]] == [[3], [7]]


def test_coco_writer_and_render_sink_through_consume(tmp_path):
    coco = CocoWriter(tmp_path / "coco.json")
    render = RenderSink(tmp_path / "out.mp4", fps=10)
    img = np.full((480, 640, 3), 40, np.uint8)
    for i in range(5):
        coco.consume(result(i), img)
        render.consume(result(i), img)
    render.consume(result(5, error="bad"), None)  # failed frames have no image: skipped
    assert not (tmp_path / "out.mp4").exists()  # written under a temporary name until closed
    coco.close()
    render.close()
    items = json.loads((tmp_path / "coco.json").read_text())
    assert len(items) == 10 and [c["track_id"] for c in items[:2]] == [3, 7]
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    ok, frame = cap.read()
    assert ok and frame.shape == (480, 640, 3)
    assert (np.abs(frame.astype(int) - 40).sum(-1) > 60).any()  # something was drawn


# -- MQTT ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url,want",
    [
        ("localhost", ("localhost", 1883, "edgepose/poses")),
        ("localhost:1884", ("localhost", 1884, "edgepose/poses")),
        ("10.0.0.5:1884/site/cam1", ("10.0.0.5", 1884, "site/cam1")),
        ("mqtt://broker/a", ("broker", 1883, "a")),
    ],
)
def test_parse_mqtt_url(url, want):
    assert parse_mqtt_url(url) == want


@pytest.mark.parametrize("url", [":1883/t", "host:port/t", "host/a/#"])
def test_parse_mqtt_url_errors(url):
    with pytest.raises(ValueError):
        parse_mqtt_url(url)


def test_mqtt_without_paho_names_the_extra(monkeypatch):
    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"edgepose\[mqtt\]"):
        MqttSink("127.0.0.1", 1, "t")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


class Broker:
    """A real mosquitto on 127.0.0.1:<free port> with a temporary config; stopped on exit."""

    def __init__(self, tmp: Path) -> None:
        exe = mosquitto_binary()
        if exe is None:
            need_service("mosquitto is not installed (make system-deps)")
        self.port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.proc.stdout.read().decode(errors='replace')}") from None
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def broker(tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="the mqtt extra is not installed")
    b = Broker(tmp_path)
    yield b
    b.stop()


class Subscriber:
    """A paho client subscribed to a topic, collecting payloads."""

    def __init__(self, port: int, topic: str) -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        self.topics: list[str] = []
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = lambda c, u, m: (self.topics.append(m.topic), self.messages.append(json.loads(m.payload)))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(5), "subscription not acknowledged"

    def wait_for(self, n: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.parametrize("qos", [0, 1])
def test_mqtt_publishes_every_frame(broker, qos):
    sub = Subscriber(broker.port, "edgepose/test/#")
    try:
        sink = MqttSink("127.0.0.1", broker.port, "edgepose/test/cam1", qos=qos)
        for i in range(25):
            sink.consume(result(i), None)
        sink.close()
        assert sink.published == 25 and sink.failed == 0
        got = sub.wait_for(25)
    finally:
        sub.close()
    assert [m["frame"] for m in got] == list(range(25))
    assert got[3]["people"][1]["id"] == 7 and "timings_ms" in got[3]


def test_mqtt_topic_per_source_from_run_with_several_sources(broker, cli, model_path):
    """`edgepose run A B --mqtt HOST:PORT/edgepose/{source}`: each source's frames on its own topic,
    with the source's name in every record."""
    from conftest import VIDEO

    sub = Subscriber(broker.port, "edgepose/#")
    try:
        code, _, err = cli("run", VIDEO, VIDEO, "--model", model_path, "--max-frames", "3", "--no-progress",
                           "--mqtt", f"127.0.0.1:{broker.port}/edgepose/{{source}}", "--mqtt-qos", "1")  # fmt: skip
        assert code == 0, err
        got = sub.wait_for(6)
    finally:
        sub.close()
    assert len(got) == 6
    by_topic: dict[str, list] = {}
    for topic, m in zip(sub.topics, got):
        by_topic.setdefault(topic, []).append(m)
    slug = source_slug(VIDEO.name)
    assert sorted(by_topic) == [f"edgepose/{slug}", f"edgepose/{slug}_2"]
    for topic, msgs in by_topic.items():
        assert sorted(m["frame"] for m in msgs) == [0, 1, 2]
        assert {source_slug(m["source"]) for m in msgs} == {topic.split("/", 1)[1]}


def test_mqtt_unreachable_broker_is_a_clear_error():
    pytest.importorskip("paho.mqtt.client")
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:\d+"):
        MqttSink("127.0.0.1", free_port(), "t", connect_timeout=2)


def test_mqtt_broker_going_away_does_not_stop_the_run(broker):
    sink = MqttSink("127.0.0.1", broker.port, "edgepose/test", qos=0, flush_timeout=1.0)
    sink.consume(result(0), None)
    broker.stop()
    time.sleep(0.3)
    t = time.monotonic()
    for i in range(1, 6):
        sink.consume(result(i), None)  # no exception: counted instead
    sink.close()
    assert time.monotonic() - t < 5
    assert sink.published >= 1 and sink.published + sink.failed == 6
