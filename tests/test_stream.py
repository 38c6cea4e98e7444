"""The streaming pipeline: queue policies with a fake model stage, faults with real video files and a
real HTTP MJPEG server, and the real model on the real video (ids, memory)."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import cv2
import numpy as np
import pytest
from conftest import VIDEO

from edgepose.layouts import get_layout
from edgepose.results import Person
from edgepose.runner import Letterbox
from edgepose.sources import Reconnect, SourceError, VideoSource, open_capture
from edgepose.stream import Stream, stop_on_signals, stream

LAY = get_layout("coco18")
FAST = Reconnect(tries=3, delay=0.05, factor=2.0, max_delay=0.2)


# -- a fake model stage -------------------------------------------------------------------------
class FakeEstimator:
    """Stands in for PoseEstimator: the frame's first pixel travels through the stages as its identity."""

    layout = LAY
    threads = 1

    def __init__(self, infer_s: float = 0.0, fail: tuple[int, ...] = ()) -> None:
        self.infer_s = infer_s
        self.fail = set(fail)
        self.buffers: set[int] = set()

    def preprocess(self, image, out=None):
        if out is None:
            out = np.empty((3, 8, 8), np.float32)
        self.buffers.add(id(out))
        out[:] = float(image[0, 0, 0])
        h, w = image.shape[:2]
        return out, Letterbox((w, h), (w, h), (w, h))

    def infer(self, batch):
        if self.infer_s:
            time.sleep(self.infer_s)
        v = float(batch[0, 0, 0, 0])
        if int(v) in self.fail:
            raise RuntimeError(f"model failed on {int(v)}")
        return np.full((1, 19, 2, 2), v, np.float32), np.zeros((1, 38, 2, 2), np.float32)

    def decode_maps(self, hm, paf, box):
        v = float(hm[0, 0, 0])
        kp = np.zeros((18, 3), np.float32)
        kp[:, 0] = np.linspace(0, 60, 18) + 10 * v
        kp[:, 1] = np.linspace(0, 170, 18)
        kp[:, 2] = 0.9
        return [Person(kp, 1.0)], []


def frames(n: int, size=(48, 64)):
    """n images whose first pixel is their number (mod 250)."""
    for i in range(n):
        img = mark(np.zeros((*size, 3), np.uint8), i)
        img[0, 0, 0] = i % 250
        yield img


def mark(img: np.ndarray, i: int) -> np.ndarray:
    """Write ``i`` (mod 60) into a 16x16 block that survives JPEG; :func:`ident` reads it back."""
    img[:16, :16] = 4 * (i % 60)
    return img


def ident(img: np.ndarray) -> int:
    return int(round(float(img[4:12, 4:12].mean()) / 4))


class ListSink:
    needs_image = True

    def __init__(self) -> None:
        self.results, self.images, self.closed = [], [], 0

    def consume(self, result, image):
        self.results.append(result)
        self.images.append(None if image is None else ident(image))

    def close(self):
        self.closed += 1


def check_accounting(st):
    assert st.accounted, st.to_dict()
    assert st.read == st.processed + st.failed + sum(st.dropped.values())


# -- queue policies -------------------------------------------------------------------------------
def test_offline_processes_every_frame_in_order():
    sink = ListSink()
    s = stream(FakeEstimator(), frames(50), sinks=[sink])
    got = [r.index for r in s]
    assert got == list(range(50))
    assert [r.people[0].keypoints[0, 0] for r in sink.results] == [10.0 * (i % 250) for i in range(50)]
    assert sink.images == [i % 60 for i in range(50)] and sink.closed == 1
    st = s.stats
    assert (st.read, st.processed, st.failed, st.dropped) == (50, 50, 0, {})
    assert all(r.people[0].id == 0 for r in sink.results[:1])
    assert set(st.stage_ms) >= {"read", "preprocess", "inference", "decode", "latency"}
    check_accounting(st)


def test_offline_waits_for_a_slow_stage_and_drops_nothing():
    s = stream(FakeEstimator(infer_s=0.01), frames(30))
    assert [r.index for r in s] == list(range(30))
    assert s.stats.dropped == {} and s.stats.processed == 30


@pytest.mark.parametrize("realtime", [False, True])
def test_several_inference_workers_keep_frame_order(realtime):
    class Jittery(FakeEstimator):
        def infer(self, batch):
            time.sleep(0.002 * (int(batch[0, 0, 0, 0]) % 5))  # later frames may finish first
            return super().infer(batch)

    sink = ListSink()
    s = stream(Jittery(), frames(80), workers=3, sinks=[sink], realtime=realtime)
    got = [r.index for r in s]
    assert got == sorted(got) and len(set(got)) == len(got)
    assert [r.index for r in sink.results] == got
    if not realtime:
        assert got == list(range(80))
    assert s.stats.threads["inference_workers"] == 3
    check_accounting(s.stats)


def test_force_stop_with_several_workers_is_accounted():
    s = stream(FakeEstimator(infer_s=0.01), frames(1000), workers=2)
    for r in s:
        if r.index == 4:
            s.stop(force=True)
    assert s.stats.dropped.get("interrupted", 0) >= 1
    check_accounting(s.stats)


def test_realtime_keeps_the_newest_frame_and_counts_drops():
    def camera(n=60, fps=200.0):  # a producer faster than inference
        for img in frames(n):
            time.sleep(1 / fps)
            yield img

    s = stream(FakeEstimator(infer_s=0.03), camera(), realtime=True)
    got = [r.index for r in s]
    st = s.stats
    assert st.dropped.get("realtime", 0) > 20, st.to_dict()
    assert got == sorted(got) and len(set(got)) == len(got)
    assert got[-1] == 59  # the newest frame is never the one dropped
    assert st.processed == len(got)
    check_accounting(st)


def test_a_frame_that_breaks_the_model_is_recorded_and_the_rest_go_on():
    sink = ListSink()
    s = stream(FakeEstimator(fail=(3, 7)), frames(10), sinks=[sink])
    res = list(s)
    assert [r.index for r in res] == list(range(10))
    bad = [r for r in res if not r.ok]
    assert [r.index for r in bad] == [3, 7] and "model failed on 3" in bad[0].error
    assert bad[0].people == []
    assert s.stats.failed == 2 and s.stats.processed == 8 and not s.stats.ok
    check_accounting(s.stats)


def test_a_failing_sink_is_counted_and_the_others_still_get_everything():
    class Broken:
        needs_image = False

        def consume(self, result, image):
            if result.index % 2:
                raise OSError("disk full")

        def close(self):
            raise OSError("cannot flush")

    good = ListSink()
    s = stream(FakeEstimator(), frames(10), sinks=[Broken(), good])
    assert len(list(s)) == 10
    assert len(good.results) == 10 and good.closed == 1
    assert s.stats.sink_errors == {"Broken": 6}


def test_a_consumer_leaving_early_still_flushes_the_sinks():
    sink = ListSink()
    s = stream(FakeEstimator(infer_s=0.005), frames(1000), sinks=[sink])
    for r in s:
        if r.index == 5:
            break
    assert sink.closed == 1
    st = s.stats
    assert st.interrupted and st.read < 1000
    assert len(sink.results) == st.processed  # every frame read went through the sinks
    assert [r.index for r in sink.results] == list(range(st.processed))
    check_accounting(st)


def test_force_stop_counts_frames_in_flight_as_interrupted():
    sink = ListSink()
    s = stream(FakeEstimator(infer_s=0.02), frames(1000), sinks=[sink])
    n = 0
    for _ in s:
        n += 1
        if n == 3:
            s.stop(force=True)
    st = s.stats
    assert st.dropped.get("interrupted", 0) >= 1, st.to_dict()
    assert sink.closed == 1
    check_accounting(st)


def _stop_on_signals_body() -> None:
    import os
    import signal

    sink = ListSink()
    s = stream(FakeEstimator(infer_s=0.005), frames(10_000), sinks=[sink])
    with stop_on_signals(s) as got:
        for r in s:
            if r.index == 10:
                os.kill(os.getpid(), signal.SIGTERM)
    assert got["signal"] == signal.SIGTERM
    assert s.stats.interrupted and sink.closed == 1 and s.stats.read < 10_000
    check_accounting(s.stats)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_stop_on_signals_stops_cleanly(python):
    # In a fresh process, as a user's run is: after OpenVINO has compiled a model in the same process
    # (tests/test_convert_openvino.py), glibc's lazy-binding trampoline segfaults inside CPython's
    # signal handler on this machine (gdb: _dl_runtime_resolve_xsavec <- trip_signal); a process that
    # never loaded OpenVINO, like `edgepose run`, is what this test is about.
    import subprocess
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    code = (f"import sys; sys.path[:0] = [{str(tests)!r}, {str(tests.parent)!r}]; import test_stream as t; "
            "t._stop_on_signals_body(); print('ok')")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, cwd=tests.parent)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_a_stage_that_crashes_ends_the_stream_with_its_error():
    class Crashing(FakeEstimator):
        @property
        def layout(self):  # read outside the per-frame guard: a bug, not a bad frame
            raise KeyError("boom")

    sink = ListSink()
    with pytest.raises(KeyError, match="boom"):
        for _ in stream(Crashing(), frames(100), sinks=[sink]):
            pass
    assert sink.closed == 1


def test_frames_mode_yields_images_and_reuses_buffers(tmp_path):
    path = write_video(tmp_path / "clip.avi", 40)
    fresh = []

    class Counting(FlakyCapture):
        def read(self, image=None):
            fresh.append(image is None)
            return super().read(image)

    s = stream(FakeEstimator(), path, frames=True, track=False, capture_factory=lambda a, b: Counting(a, b, None))
    n = 0
    for frame, result in s:
        assert frame.image is not None and frame.index == result.index and ident(frame.image) == frame.index % 60
        n += 1
    assert n == 40
    # new arrays are decoded only while the pool fills (at most its size); every other frame reuses
    # a pool buffer. (When a pool buffer is still held downstream the capture may take a fresh one,
    # so *which* frames are fresh depends on thread timing: only the count is asserted.)
    assert sum(fresh) <= s.stats.threads["frame_buffers"] < n


def test_the_network_input_buffer_is_reused():
    est = FakeEstimator()
    list(stream(est, frames(30)))
    assert len(est.buffers) == 1


def test_an_unreadable_image_in_an_iterable_is_a_failed_frame():
    items = [np.zeros((8, 8, 3), np.uint8), "not an image", np.zeros((8, 8, 3), np.uint8)]
    s = stream(FakeEstimator(), items)
    res = list(s)
    assert [r.ok for r in res] == [True, False, True]
    check_accounting(s.stats)


def test_smoothing_without_tracking_is_refused():
    from edgepose.tracking import Smoothing

    with pytest.raises(ValueError, match="tracking"):
        Stream(FakeEstimator(), frames(1), track=False, smoothing=Smoothing())


# -- real files and their faults --------------------------------------------------------------------
def write_video(path, n: int, size=(160, 120), fourcc="MJPG", fps=25.0):
    """Frames of the real video, scaled down, each with its number in the first pixel."""
    cap = cv2.VideoCapture(str(VIDEO))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert w.isOpened()
    for i in range(n):
        ok, img = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = cap.read()
        small = cv2.resize(img, size)
        w.write(mark(small, i))
    w.release()
    cap.release()
    return path


def jpeg_starts(data: bytes) -> list[int]:
    out, i = [], data.find(b"\xff\xd8\xff")
    while i >= 0:
        out.append(i)
        i = data.find(b"\xff\xd8\xff", i + 3)
    return out


def garbled_video(tmp_path, n: int = 40, bad: tuple[int, ...] = (10, 20)):
    """An MJPEG AVI of ``n`` frames whose frames ``bad`` have half their JPEG data garbled (size unchanged)."""
    data = bytearray(write_video(tmp_path / "clip.avi", n).read_bytes())
    soi = jpeg_starts(bytes(data))
    assert len(soi) == n
    rng = np.random.default_rng(0)
    for k in bad:
        a, b = soi[k], soi[k + 1]
        data[a : a + (b - a) // 2] = rng.integers(0, 256, (b - a) // 2, dtype=np.uint8).tobytes()
    path = tmp_path / "garbled.avi"
    path.write_bytes(bytes(data))
    return path


def test_corrupt_frames_are_skipped_and_counted(tmp_path):
    s = stream(FakeEstimator(), garbled_video(tmp_path))
    got = [r.index for r in s]
    st = s.stats
    assert st.read == 40 and st.dropped == {"corrupt": 2} and st.processed == 38
    assert 10 not in got and 20 not in got and got[:3] == [0, 1, 2] and got[-1] == 39
    assert not st.ok
    check_accounting(st)


def test_a_truncated_file_ends_early_with_a_clear_reason(tmp_path):
    path = write_video(tmp_path / "clip.avi", 40)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: jpeg_starts(data)[25] + 300])
    s = stream(FakeEstimator(), cut)
    got = [r.index for r in s]
    st = s.stats
    assert 20 <= len(got) <= 26
    assert st.source_lost and st.source_ended.startswith("ended early") and "of 40" in st.source_ended
    check_accounting(st)


class FlakyCapture:
    """A real OpenCV capture that 'loses the connection' after ``fail_after`` frames, like a network
    stream; reading from it then fails until it is reopened."""

    opened = 0

    def __init__(self, source, kind, fail_after: int | None, raise_instead: bool = False) -> None:
        self.cap = open_capture(source, kind)
        self.fail_after = fail_after
        self.raise_instead = raise_instead
        self.n = 0
        FlakyCapture.opened += 1

    def read(self, image=None):
        if self.fail_after is not None and self.n >= self.fail_after:
            if self.raise_instead:
                raise ConnectionResetError("connection reset by peer")
            return False, None
        self.n += 1
        return self.cap.read(image)

    def grab(self):
        return self.cap.grab()

    def get(self, prop):
        return self.cap.get(prop)

    def set(self, prop, value):
        return self.cap.set(prop, value)

    def isOpened(self):
        return self.cap.isOpened()

    def release(self):
        self.cap.release()


@pytest.mark.parametrize("raise_instead", [False, True])
def test_a_source_that_stops_is_reopened_where_it_stopped(tmp_path, caplog, raise_instead):
    path = write_video(tmp_path / "clip.avi", 60)
    opened = []

    def factory(source, kind):
        opened.append(1)
        return FlakyCapture(source, kind, fail_after=25 if len(opened) == 1 else None, raise_instead=raise_instead)

    caplog.set_level(logging.WARNING, logger="edgepose.sources")
    sink = ListSink()
    s = stream(FakeEstimator(), path, sinks=[sink], reconnect=FAST, capture_factory=factory)
    got = [r.index for r in s]
    assert got == list(range(60))
    assert sink.images == [i % 60 for i in range(60)]  # the right frames: reopened at frame 25, not 0
    st = s.stats
    assert st.reopens == 1 and not st.source_lost and st.source_ended == "end of file"
    assert any("reopening in" in m and "attempt 1 of 3" in m for m in caplog.messages)
    check_accounting(st)


def test_reopening_is_bounded_and_each_attempt_is_logged(tmp_path, caplog):
    path = write_video(tmp_path / "clip.avi", 30)
    calls = []

    def factory(source, kind):
        calls.append(time.monotonic())
        if len(calls) > 1:
            raise SourceError(f"cannot open stream {source}")
        return FlakyCapture(source, kind, fail_after=10)

    caplog.set_level(logging.WARNING, logger="edgepose.sources")
    src = VideoSource(path, kind="stream", reconnect=FAST, capture_factory=factory)
    s = stream(FakeEstimator(), src)
    got = [r.index for r in s]
    assert got == list(range(10))
    st = s.stats
    assert st.source_lost and st.source_ended.startswith("lost") and "3 tries" in st.source_ended
    assert len(calls) == 1 + 3
    gaps = np.diff(calls[1:])
    assert gaps[1] > gaps[0] * 1.5  # exponential back-off
    assert sum("reopen attempt" in m for m in caplog.messages) == 3
    check_accounting(st)


def test_an_unopenable_source_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 1000)
    with pytest.raises(SourceError, match="cannot open video"):
        stream(FakeEstimator(), junk)
    with pytest.raises(SourceError, match="no such file"):
        stream(FakeEstimator(), tmp_path / "missing.mp4")
    with pytest.raises(SourceError, match="cannot open stream"):
        stream(FakeEstimator(), "http://127.0.0.1:9/nothing.mjpg", timeout_s=2)
    with pytest.raises(SourceError, match="GStreamer"):
        if cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
            pytest.skip("this OpenCV has GStreamer")
        stream(FakeEstimator(), "videotestsrc ! appsink")


def test_loop_restarts_a_file_and_time_goes_on(tmp_path):
    path = write_video(tmp_path / "clip.avi", 20)
    sink = ListSink()
    s = stream(FakeEstimator(), path, loop=True, max_frames=50, sinks=[sink])
    res = list(s)
    assert [r.index for r in res] == list(range(50))
    assert sink.images == [i % 20 for i in range(50)]
    ts = [r.timestamp for r in res]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))
    assert s.stats.loops == 2 and s.stats.source_ended == "stopped after 50 frames"


def test_realtime_paces_a_file_at_its_frame_rate(tmp_path):
    path = write_video(tmp_path / "clip.avi", 25, fps=50.0)
    t = time.perf_counter()
    s = stream(FakeEstimator(), path, realtime=True)
    n = len(list(s))
    assert time.perf_counter() - t >= 0.4  # 25 frames at 50 fps
    assert n + s.stats.dropped.get("realtime", 0) == 25


# -- a real HTTP MJPEG camera that drops the connection ---------------------------------------------
class MjpegServer:
    """multipart/x-mixed-replace JPEG stream on 127.0.0.1; each connection sends ``per_connection``
    frames then drops; frames are numbered across connections; ``connections`` limits how many it serves."""

    def __init__(self, per_connection: int, connections: int) -> None:
        self.per_connection, self.connections = per_connection, connections
        self.served = 0
        self.next = 0
        base = cv2.resize(cv2.imread(str(VIDEO.parent.parent / "images" / "tfpose__p1.jpg")), (160, 120))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if server.served >= server.connections:
                    self.send_error(503)
                    return
                server.served += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for _ in range(server.per_connection):
                        img = mark(base.copy(), server.next)
                        server.next += 1
                        jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                        self.wfile.write(jpg + b"\r\n")
                        time.sleep(0.01)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_http_stream_that_drops_is_reopened_then_lost(caplog):
    caplog.set_level(logging.WARNING, logger="edgepose.sources")
    with MjpegServer(per_connection=20, connections=3) as srv:
        sink = ListSink()
        s = stream(FakeEstimator(), srv.url, sinks=[sink], reconnect=FAST, timeout_s=3)
        res = list(s)
    st = s.stats
    assert st.reopens == 2, st.to_dict()
    assert st.source_lost and "could not be reopened" in st.source_ended
    # what arrived is in order and gapless across the reconnections (FFmpeg may keep a few frames
    # of a connection in its probe buffer, so allow some missing per connection)
    seq = sink.images
    assert seq == sorted(seq) and len(seq) >= 40
    # the frames a live source would have sent while it was down are counted (outage) and left
    # out of the indices, like corrupt ones
    idx = [r.index for r in res]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert len(res) < idx[-1] + 1 <= len(res) + st.dropped["outage"]  # (the last outage is after the last frame)
    assert st.outage_s > 0
    assert sum("reopening in" in m for m in caplog.messages) >= 3
    check_accounting(st)


# -- the real model on the real video ----------------------------------------------------------------
@pytest.mark.slow
def test_real_video_two_people_keep_their_ids(estimator):
    s = estimator.stream(VIDEO)
    res = list(s)
    assert len(res) == 72 and s.stats.processed == 72 and s.stats.ok
    ids = [sorted(p.id for p in r.people if p.num_parts >= 8) for r in res]
    two = [i for i in ids if len(i) == 2]
    assert len(two) >= 60
    assert sum(i == [0, 1] for i in two) >= 0.9 * len(two), ids
    r = res[10]
    assert r.timestamp == pytest.approx(10 / 28.05, abs=0.05)
    assert {"read", "preprocess", "inference", "decode", "track", "latency"} <= set(r.timings)


def test_prescaling_halves_large_frames_and_keeps_image_coordinates():
    seen = []

    class Sized(FakeEstimator):  # a 157x117 network input (padded to 160x120), like fit_size
        def letterbox(self, w, h):
            return Letterbox((w, h), (157, 117), (160, 120))

        def preprocess(self, image, out=None):
            seen.append(image.shape[:2])
            h, w = image.shape[:2]
            x = np.zeros((3, 120, 160), np.float32)
            return x, Letterbox((w, h), (157, 117), (160, 120))

    halved = []
    real_resize = cv2.resize

    def resize(src, size, *a, **kw):
        halved.append((src.shape[1], src.shape[0], *size))
        return real_resize(src, size, *a, **kw)

    img = np.zeros((480, 640, 3), np.uint8)
    with mock.patch.object(cv2, "resize", resize):
        res = list(stream(Sized(), [img, img], prescale=True, track=False))
    # halved twice (a third would undershoot 157x117), then one bilinear resize to the input size
    assert halved[:3] == [(640, 480, 320, 240), (320, 240, 160, 120), (160, 120, 157, 117)]
    assert seen == [(117, 157), (117, 157)]
    assert all(r.image_size == (640, 480) for r in res)  # keypoints map to the original frame
    seen.clear()
    list(stream(Sized(), [img], prescale=False, track=False))
    assert seen == [(480, 640)]


def test_prescaled_frames_give_the_same_poses(estimator):
    kw = dict(max_frames=8, track=False)
    a = list(estimator.stream(VIDEO, prescale=False, **kw))
    b = list(estimator.stream(VIDEO, prescale=True, **kw))
    assert median_keypoint_shift(a, b) < 1.5  # pixels in a 1920x1080 frame (a map cell is ~29 px)


def median_keypoint_shift(a, b) -> float:
    """Median distance between the keypoints both runs found, over frames with the same people count."""
    assert [len(r.people) for r in a] == [len(r.people) for r in b]
    d = []
    for ra, rb in zip(a, b, strict=True):
        assert ra.image_size == rb.image_size == (1920, 1080)
        ka, kb = ra.keypoints(), rb.keypoints()
        both = (ka[..., 2] > 0) & (kb[..., 2] > 0)
        d += list(np.linalg.norm(ka[..., :2] - kb[..., :2], axis=-1)[both])
    return float(np.median(d))


@pytest.mark.slow
def test_looping_the_real_video_does_not_grow_memory(model_path):
    """A short version of ``benchmarks/stream_bench.py --loop 10000`` (small input size, for speed)."""
    psutil = pytest.importorskip("psutil")
    import ctypes
    import ctypes.util

    from edgepose.runner import PoseEstimator

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    trim = getattr(libc, "malloc_trim", None)  # glibc: hand freed heap pages back, so RSS shows live memory

    est = PoseEstimator(model_path, device="cpu", threads=2, size="small")
    proc = psutil.Process()
    # warm-up: the first passes fill the frame pool, the allocator's per-thread arenas and ORT's
    # arena (one CI run grew 6.8 MB between frames 80 and 239); after that the size must stay flat.
    # A full-suite CI run (after hundreds of other tests in this process) once grew 6.75 MB between
    # frames 160 and 399 without malloc_trim; run alone with it, RSS went 225.3 -> 223.4 MB.
    s = est.stream(VIDEO, loop=True, max_frames=400)
    rss = {}
    for r in s:
        if r.index in (160, 280, 399):
            if trim is not None:
                trim(0)
            rss[r.index] = proc.memory_info().rss
    assert s.stats.processed == 400 and s.stats.loops == 5
    growth_mb = (rss[399] - rss[160]) / 2**20
    print(f"rss MB at frames 160/280/399: {[round(v / 2**20, 1) for v in rss.values()]}")
    assert growth_mb < 5, {k: round(v / 2**20, 1) for k, v in rss.items()}


def test_shrink_rounds_the_same_on_every_platform():
    # The bilinear step after the halvings is INTER_LINEAR_EXACT (INTER_LINEAR on uint8 rounds
    # differently with NEON than with AVX2: 1 grey level, keypoints 1-2 px apart; docs/boards.md).
    from edgepose.stream.frames import shrink

    frame = cv2.VideoCapture(VIDEO).read()[1]
    assert frame is not None and frame.shape == (1080, 1920, 3)
    got = shrink(frame, (432, 243), {}, "bgr")
    half = cv2.resize(frame, (960, 540), interpolation=cv2.INTER_AREA)
    quarter = cv2.resize(half, (480, 270), interpolation=cv2.INTER_AREA)  # still >= 432x243: halved twice
    np.testing.assert_array_equal(got, cv2.resize(quarter, (432, 243), interpolation=cv2.INTER_LINEAR_EXACT))
    y = np.ascontiguousarray(frame[:, :, 1])
    got_y = shrink(y, (526, 296), {}, "y")
    half_y = cv2.resize(y, (960, 540), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(got_y, cv2.resize(half_y, (526, 296), interpolation=cv2.INTER_LINEAR_EXACT))


# -- batches of frames in one inference call ----------------------------------------------------
class BatchFake(FakeEstimator):
    """FakeEstimator that runs (N, 3, 8, 8) batches row by row and records each call's size."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.calls: list[int] = []

    def infer(self, batch):
        self.calls.append(len(batch))
        if self.infer_s:
            time.sleep(self.infer_s)
        vals = [float(b[0, 0, 0]) for b in batch]
        if any(int(v) in self.fail for v in vals):
            raise RuntimeError(f"model failed on {[int(v) for v in vals if int(v) in self.fail]}")
        hm = np.stack([np.full((19, 2, 2), v, np.float32) for v in vals])
        return hm, np.zeros((len(batch), 38, 2, 2), np.float32)


def test_batches_take_waiting_frames_and_keep_each_frames_result():
    est = BatchFake(infer_s=0.02)
    sink = ListSink()
    s = stream(est, frames(40), sinks=[sink], batch=4, queue_size=8)
    got = [r.index for r in s]
    assert got == list(range(40))
    # every result is its own frame's (the row of the batch it was in)
    assert [r.people[0].keypoints[0, 0] for r in sink.results] == [10.0 * i for i in range(40)]
    assert max(est.calls) > 1 and max(est.calls) <= 4 and sum(est.calls) == 40
    assert s.stats.threads["batch"] == 4
    check_accounting(s.stats)


def test_a_failing_frame_does_not_fail_its_batch():
    est = BatchFake(infer_s=0.02, fail=(7,))
    s = stream(est, frames(30), batch=4, queue_size=8, track=False)
    res = list(s)
    assert [r.index for r in res] == list(range(30))
    assert [r.index for r in res if not r.ok] == [7] and "model failed on [7]" in res[7].error
    assert s.stats.processed == 29 and s.stats.failed == 1
    check_accounting(s.stats)


def test_realtime_batches_take_one_frame_per_source(tmp_path):
    est = BatchFake(infer_s=0.03)
    s = Stream(est, sources=[list(frames(20)), list(frames(20)), list(frames(20))], realtime=True, batch=3,
               track=False)  # fmt: skip
    res = list(s)
    per = {src: sum(1 for r in res if r.source == src) for src in {r.source for r in res}}
    assert len(per) == 3 and all(n > 0 for n in per.values())
    assert max(est.calls) <= 3 and max(est.calls) > 1
    check_accounting(s.stats)


def test_batch_must_be_positive():
    with pytest.raises(ValueError, match="batch must be at least 1"):
        stream(FakeEstimator(), frames(1), batch=0)


def test_batched_cameras_give_the_same_poses_as_single_calls(estimator):
    """Two sources (the video twice) in batches of 2 through the real model: the keypoints of single
    calls, to float rounding."""

    class Counting:  # the real estimator, counting the frames of each network call
        def __init__(self, est):
            self.est, self.calls = est, []

        def __getattr__(self, name):
            return getattr(self.est, name)

        def infer(self, x):
            self.calls.append(len(x))
            return self.est.infer(x)

    kw = dict(sources=[VIDEO, VIDEO], max_frames=4, track=False, queue_size=4)
    one = {(r.source, r.index): r for r in Stream(estimator, batch=1, **kw)}
    counting = Counting(estimator)
    two = {(r.source, r.index): r for r in Stream(counting, batch=2, **kw)}
    assert one.keys() == two.keys() and len(one) == 8
    assert 2 in counting.calls and sum(counting.calls) == 8
    for k, r in one.items():
        a = np.array([p.keypoints for p in r.people])
        b = np.array([p.keypoints for p in two[k].people])
        assert a.shape == b.shape and len(a) >= 1
        np.testing.assert_allclose(a, b, atol=0.01)
