"""`edgepose run` on video: every sink, realtime drops, faults, MQTT, and a real signal to a real process."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, VIDEO
from test_sinks import Broker, Subscriber, free_port
from test_stream import jpeg_starts, write_video

SMALL = ("--device", "cpu", "--threads", "2", "--size", "small", "--no-progress")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_to_every_sink(cli, model_path, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", VIDEO, "--model", model_path, *SMALL, "--max-frames", "12",
                               "--jsonl", out / "poses.jsonl", "--json-dir", out / "json", "--render", out / "r.mp4",
                               "--coco-out", out / "coco.json", "--stats-json", out / "stats.json")  # fmt: skip
    assert code == 0, stdout + stderr
    assert "summary: 12 frames read, 12 processed, 0 failed, 0 dropped" in stdout
    assert "source: " in stdout and "mean ms per frame" in stdout
    recs = jsonl(out / "poses.jsonl")
    assert [r["frame"] for r in recs] == list(range(12))
    assert all(r["width"] == 1920 and r["height"] == 1080 for r in recs)
    assert {"read", "preprocess", "inference", "decode", "track", "latency"} <= set(recs[0]["timings_ms"])
    ids = [sorted(p["id"] for p in r["people"]) for r in recs]
    assert all(i and min(i) >= 0 for i in ids)
    assert sum(i[:2] == [0, 1] for i in ids) >= 10  # two people, stable ids
    files = sorted((out / "json").iterdir())
    assert len(files) == 12 and files[0].name == "mmaction2__demo_skeleton_000000000000_keypoints.json"
    doc = json.loads(files[5].read_text())
    assert sorted(p["person_id"][0] for p in doc["people"]) == sorted(p["id"] for p in recs[5]["people"])
    cap = cv2.VideoCapture(str(out / "r.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 1920
    assert len(json.loads((out / "coco.json").read_text())) == sum(len(r["people"]) for r in recs)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["accounted"] and stats["read"] == 12 and stats["threads"]["ort_intra_op"] == 2
    assert stats["threads"]["video_backend"] == "opencv"  # --render needs full-size BGR frames


def test_jsonl_to_stdout_keeps_stdout_clean(cli, model_path):
    code, stdout, stderr = cli("run", VIDEO, "--model", model_path, *SMALL, "--max-frames", "4", "--jsonl", "-")
    assert code == 0
    assert [json.loads(line)["frame"] for line in stdout.splitlines()] == [0, 1, 2, 3]
    assert "summary: 4 frames read" in stderr


def test_smoothing_and_no_tracking(cli, model_path, tmp_path):
    code, _, _ = cli("run", VIDEO, "--model", model_path, *SMALL, "--max-frames", "6", "--smooth",
                     "--jsonl", tmp_path / "s.jsonl")  # fmt: skip
    assert code == 0
    assert all(p["id"] >= 0 for r in jsonl(tmp_path / "s.jsonl") for p in r["people"])
    code, _, _ = cli("run", VIDEO, "--model", model_path, *SMALL, "--max-frames", "3", "--no-track",
                     "--jsonl", tmp_path / "n.jsonl")  # fmt: skip
    assert code == 0
    assert all(p["id"] == -1 for r in jsonl(tmp_path / "n.jsonl") for p in r["people"])
    code, _, err = cli("run", VIDEO, "--model", model_path, "--smooth", "--no-track")
    assert code == 2 and "--smooth needs tracking" in err


@pytest.mark.slow
def test_realtime_drops_frames_and_counts_them(cli, model_path, tmp_path):
    # a file is read at its frame rate (28 fps); the model at the large size is slower than that on a CPU
    code, stdout, _ = cli("run", VIDEO, "--model", model_path, "--device", "cpu", "--size", "large", "--no-progress",
                          "--realtime", "--jsonl", tmp_path / "rt.jsonl", "--stats-json", tmp_path / "st.json")  # fmt: skip
    assert code == 0, stdout
    st = json.loads((tmp_path / "st.json").read_text())
    assert st["read"] == 72 and st["dropped"].get("realtime", 0) > 0 and st["accounted"]
    frames = [r["frame"] for r in jsonl(tmp_path / "rt.jsonl")]
    assert len(frames) == st["processed"] and frames == sorted(frames) and frames[-1] == 71
    assert "realtime (superseded by a newer frame" in stdout


def test_corrupt_video_frames_are_counted_and_fail_the_run(cli, model_path, tmp_path):
    path = write_video(tmp_path / "clip.avi", 16, size=(320, 240))
    data = bytearray(path.read_bytes())
    soi = jpeg_starts(bytes(data))
    a, b = soi[5], soi[6]
    data[a : a + (b - a) // 2] = bytes((b - a) // 2)
    (tmp_path / "bad.avi").write_bytes(bytes(data))
    code, stdout, _ = cli("run", tmp_path / "bad.avi", "--model", model_path, *SMALL, "--jsonl", tmp_path / "o.jsonl")
    assert code == 1
    assert "summary: 16 frames read, 15 processed, 0 failed, 1 dropped (1 corrupt)" in stdout
    assert "dropped: 1 corrupt (could not be decoded)" in stdout
    assert [r["frame"] for r in jsonl(tmp_path / "o.jsonl")] == [i for i in range(16) if i != 5]


def test_offline_video_on_a_cpu_runs_two_inference_workers(cli, model_path, tmp_path):
    import os

    code, _, err = cli("run", VIDEO, "--model", model_path, "--device", "cpu", "--size", "small", "--no-progress",
                       "--max-frames", "8", "--stats-json", tmp_path / "s.json", "--jsonl", tmp_path / "o.jsonl")  # fmt: skip
    assert code == 0
    t = json.loads((tmp_path / "s.json").read_text())["threads"]
    cores = len(os.sched_getaffinity(0))
    assert t["inference_workers"] == 2 and t["ort_intra_op"] == max(1, cores // 2)
    assert "2 inference workers" in err
    assert [r["frame"] for r in jsonl(tmp_path / "o.jsonl")] == list(range(8))
    # inference fills the cores: one OpenCV thread, one FFmpeg thread, YUV planes when PyAV is there
    assert t["opencv"] == 1 and t["capture_decode"] == 1
    if importlib.util.find_spec("av") is not None:
        assert t["video_backend"] == "pyav"
    code, _, _ = cli("run", VIDEO, "--model", model_path, "--device", "cpu", "--size", "small", "--no-progress",
                     "--max-frames", "3", "--stats-json", tmp_path / "s2.json", "--video-backend", "opencv")  # fmt: skip
    assert code == 0 and json.loads((tmp_path / "s2.json").read_text())["threads"]["video_backend"] == "opencv"


def test_unopenable_sources_are_clear_errors(cli, model_path, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    code, _, err = cli("run", junk, "--model", model_path)
    assert code == 2 and "cannot open video" in err
    code, _, err = cli("run", f"http://127.0.0.1:{free_port()}/x.mjpg", "--model", model_path, "--timeout", "2")
    assert code == 2 and "cannot open stream" in err
    code, _, err = cli("run", "9", "--model", model_path)  # no /dev/video9 here
    assert code == 2 and "cannot open camera 9" in err


def test_unreachable_mqtt_broker_is_a_clear_error(cli, model_path, tmp_path):
    pytest.importorskip("paho.mqtt.client")
    code, _, err = cli("run", VIDEO, "--model", model_path, "--mqtt", f"127.0.0.1:{free_port()}/t",
                       "--jsonl", tmp_path / "never.jsonl")  # fmt: skip
    assert code == 2 and "cannot connect to the MQTT broker" in err
    assert not (tmp_path / "never.jsonl").exists()


def test_mqtt_from_the_cli(cli, model_path, tmp_path):
    pytest.importorskip("paho.mqtt.client")
    broker = Broker(tmp_path)
    try:
        sub = Subscriber(broker.port, "site/cam1")
        code, stdout, _ = cli("run", VIDEO, "--model", model_path, *SMALL, "--max-frames", "6",
                              "--mqtt", f"127.0.0.1:{broker.port}/site/cam1", "--mqtt-qos", "1")  # fmt: skip
        got = sub.wait_for(6)
        sub.close()
    finally:
        broker.stop()
    assert code == 0, stdout
    assert [m["frame"] for m in got] == list(range(6))
    assert all(p["id"] >= 0 for m in got for p in m["people"])


# -- a real process and a real signal ----------------------------------------------------------------
def start_run(tmp_path: Path, model_path: Path) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "edgepose", "run", str(VIDEO), "--model", str(model_path), *SMALL, "--loop",
           "--jsonl", str(out / "poses.jsonl"), "--json-dir", str(out / "json"), "--render", str(out / "r.mp4"),
           "--coco-out", str(out / "coco.json"), "--stats-json", str(out / "stats.json")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    lines = out / "poses.jsonl"
    while time.monotonic() < deadline:
        if lines.exists() and len(lines.read_text().splitlines()) >= 5:
            return proc, out
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("no output within 120 s")


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_and_flushes_every_sink(tmp_path, model_path, sig, code):
    proc, out = start_run(tmp_path, model_path)
    proc.send_signal(sig)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == code, stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["interrupted"] and stats["accounted"] and stats["dropped"] == {}
    n = stats["processed"]
    assert n >= 5 and f"summary: {stats['read']} frames read, {n} processed" in stdout
    recs = jsonl(out / "poses.jsonl")  # every line whole
    assert [r["frame"] for r in recs] == list(range(n))
    assert len(list((out / "json").glob("*_keypoints.json"))) == n
    assert not list((out / "json").glob(".*"))  # no temporary files left behind
    cap = cv2.VideoCapture(str(out / "r.mp4"))  # the video was finished and moved into place
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    assert isinstance(json.loads((out / "coco.json").read_text()), list)


@pytest.mark.slow
def test_a_second_signal_drops_what_is_in_flight(tmp_path, model_path):
    proc, out = start_run(tmp_path, model_path)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    stats = json.loads((out / "stats.json").read_text())
    assert stats["accounted"]
    assert len(jsonl(out / "poses.jsonl")) == stats["processed"]
    assert np.isfinite(stats["fps"])


def test_one_source_and_several_report_alike(cli, model_path, tmp_path):
    """One result loop: the same video alone and twice over prints the same kinds of lines (summary,
    warnings, drops, mean step times) and writes --stats-json with the same totals keys; several
    sources add a line per source and list their names and kinds."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    code1, out1, err1 = cli("run", VIDEO, "--model", model_path, *SMALL, "--max-frames", "6", "--stats-json", one)
    code2, out2, err2 = cli("run", VIDEO, VIDEO, "--model", model_path, *SMALL, "--max-frames", "6",
                            "--stats-json", two)  # fmt: skip
    assert code1 == code2 == 0, out1 + err1 + out2 + err2
    assert "summary: 6 frames read, 6 processed, 0 failed, 0 dropped" in out1
    assert "summary: 12 frames read, 12 processed, 0 failed, 0 dropped" in out2
    for out in (out1, out2):
        assert "mean ms per frame: read" in out and "inference" in out
    lines = [line for line in out2.splitlines() if line.startswith("  mmaction2__demo_skeleton")]
    assert len(lines) == 2 and all("6 read, 6 processed, 0 failed" in line for line in lines), out2
    assert "#2" in lines[1]
    s1, s2 = json.loads(one.read_text()), json.loads(two.read_text())
    assert set(s1) - {"sources"} == set(s2) - {"sources"}
    assert s1["kind"] == "video" and s2["kind"] == ["video", "video"]
    assert isinstance(s1["source"], str) and len(s2["source"]) == 2
    assert s1["processed"] == 6 and s2["processed"] == 12 and s2["accounted"]


def test_several_sources_check_workers_batch_and_queue_as_one_does(cli, model_path):
    for flag in ("--workers", "--batch", "--queue-size"):
        for sources in ([VIDEO], [VIDEO, VIDEO]):
            code, stdout, stderr = cli("run", *sources, "--model", model_path, *SMALL, flag, "0")
            assert code == 2 and "--workers, --batch and --queue-size must be at least 1" in stdout + stderr, (flag, sources)
