"""Video files read with PyAV as YUV planes (edgepose.sources.pyav), and the stream's use of them: the
same pictures and poses as OpenCV's BGR frames, seeking and looping, the fall-back to OpenCV, and
the thread settings a CPU-bound stream applies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import VIDEO
from test_stream import garbled_video, median_keypoint_shift

from edgepose.sources import SourceError, VideoSource, open_source
from edgepose.sources import pyav as avsource
from edgepose.stream import inference_fills_cpu
from edgepose.stream.frames import preprocess_image, preprocess_planes

av = pytest.importorskip("av", reason="PyAV is the optional `video` extra")


def opencv_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VIDEO))
    out = [cap.read()[1] for _ in range(n)]
    cap.release()
    return out


def test_pyav_capture_gives_the_frames_opencv_gives():
    cap = avsource.AVCapture(VIDEO)
    ref = cv2.VideoCapture(str(VIDEO))
    try:
        for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FRAME_COUNT):
            assert cap.get(prop) == ref.get(prop)
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(ref.get(cv2.CAP_PROP_FPS), rel=1e-6)
        assert cap.fast_planes and cap.pix_fmt == "yuv420p"
        for i in range(5):
            ok, img = cap.read()
            ok_ref, img_ref = ref.read()
            assert ok and ok_ref and img.shape == img_ref.shape == (1080, 1920, 3)
            # both are FFmpeg's decoding with the BT.601 conversion; rounding differs by a level or two
            assert np.abs(img.astype(np.int16) - img_ref).mean() < 2.0, i
            assert cap.get(cv2.CAP_PROP_POS_MSEC) == pytest.approx(ref.get(cv2.CAP_PROP_POS_MSEC), abs=1.0)
            assert cap.get(cv2.CAP_PROP_POS_FRAMES) == i + 1
        ok, planes, img = cap.read_planes()
        assert ok and img is None
        assert [p.shape for p in planes] == [(1080, 1920), (540, 960), (540, 960)]
        assert np.array_equal(avsource.i420_to_bgr(planes), cap.retrieve()[1])
    finally:
        cap.release()
        ref.release()
    assert not cap.isOpened()


def test_pyav_capture_seeks_to_a_frame_and_ends_at_the_last():
    cap = avsource.AVCapture(VIDEO)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    assert len(frames) == 72
    assert cap.set(cv2.CAP_PROP_POS_FRAMES, 30) and cap.get(cv2.CAP_PROP_POS_FRAMES) == 30
    assert np.array_equal(cap.read()[1], frames[30])  # the same decoder output: exactly equal
    assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    assert np.array_equal(cap.read()[1], frames[0])
    assert not cap.set(cv2.CAP_PROP_FPS, 10)  # nothing else can be set
    cap.release()


def test_video_source_loops_with_pyav_and_time_goes_on():
    src = VideoSource(VIDEO, loop=True, want_planes=True).open()
    assert src.backend_used == "pyav"
    got = [src.read() for _ in range(150)]
    src.close()
    assert [f.index for f in got] == list(range(150))
    assert all(f.image is None and f.planes[0].shape == (1080, 1920) for f in got)
    ts = [f.timestamp for f in got]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))
    assert src.stats.loops == 2 and src.stats.read == 150


def test_without_pyav_files_are_read_with_opencv(monkeypatch):
    def missing():
        raise ImportError("No module named 'av'")

    monkeypatch.setattr(avsource, "_av", missing)
    src = VideoSource(VIDEO, want_planes=True).open()
    assert src.backend_used == "opencv"
    f = src.read()
    assert f.planes is None and f.image.shape == (1080, 1920, 3)
    src.close()
    with pytest.raises(SourceError, match=r"edgepose\[video\]"):
        VideoSource(VIDEO, backend="pyav").open()


def test_a_file_pyav_cannot_open_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 1000)
    with pytest.raises(SourceError, match="cannot open video"):
        VideoSource(junk, backend="pyav").open()
    with pytest.raises(SourceError, match="cannot open video"):  # auto: OpenCV has the last word
        VideoSource(junk, want_planes=True).open()


@pytest.mark.parametrize("size", [None, "small"])  # 526x296, and 382x215 (odd: finished in BGR)
def test_planes_preprocessing_matches_the_bgr_path(model_path, size):
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cpu", threads=1, size=size)
    cap = avsource.AVCapture(VIDEO)
    for _ in range(10):
        ok, planes, _ = cap.read_planes()
    try:
        xa, box_a = preprocess_planes(est, planes, None, {})
        xb, box_b = preprocess_image(est, avsource.i420_to_bgr(planes), None, {})
    finally:
        cap.release()
    assert box_a == box_b and box_a.src == (1920, 1080)
    assert box_a.resized == ((526, 296) if size is None else (382, 215))
    assert xa.shape == xb.shape
    # the same picture: chroma is shrunk at its own resolution, so colours differ by a level or two
    assert np.abs(xa - xb).mean() < 2.0


def test_yuv_planes_give_the_same_poses_as_bgr_frames(estimator):
    kw = dict(max_frames=8, track=False)
    s_bgr = estimator.stream(VIDEO, backend="opencv", **kw)
    a = list(s_bgr)
    s_yuv = estimator.stream(VIDEO, **kw)
    b = list(s_yuv)
    assert s_bgr.stats.threads["video_backend"] == "opencv"
    assert s_yuv.stats.threads["video_backend"] == "pyav"
    assert sum(len(r.people) for r in a) >= 14
    assert median_keypoint_shift(a, b) < 1.5  # pixels in a 1920x1080 frame (a map cell is ~29 px)


def test_sinks_that_need_frames_get_full_bgr_frames(estimator):
    s = estimator.stream(VIDEO, max_frames=3, frames=True, track=False)
    shapes = [frame.image.shape for frame, _ in s]
    assert shapes == [(1080, 1920, 3)] * 3
    assert s.stats.threads["video_backend"] == "opencv"


def test_a_source_handed_to_a_stream_is_switched_to_planes_before_the_first_frame(estimator):
    src = open_source(VIDEO)  # what `edgepose run` does: open first, load the model after
    src.open()
    assert src.backend_used == "opencv"
    s = estimator.stream(src, max_frames=4, track=False)
    assert src.backend_used == "pyav" and src.want_planes
    assert [r.index for r in s] == [0, 1, 2, 3]
    assert not src.reconfigure(want_planes=False)  # too late: frames were read


def test_a_cpu_bound_stream_runs_opencv_and_ffmpeg_on_one_thread(model_path):
    from edgepose.runner import PoseEstimator
    from edgepose.session import usable_cores

    est = PoseEstimator(model_path, device="cpu", threads=usable_cores(), size="small")
    assert inference_fills_cpu(est, 1)
    before = cv2.getNumThreads()
    s = est.stream(VIDEO, max_frames=6)
    seen = [cv2.getNumThreads() for _ in s]
    assert seen == [1] * 6
    assert cv2.getNumThreads() == before  # given back when the stream closed
    assert s.stats.threads["opencv"] == 1 and s.stats.threads["capture_decode"] == 1
    # asked for explicitly, the settings are kept
    s = est.stream(VIDEO, max_frames=2, decode_threads=2, opencv_threads=before)
    assert [cv2.getNumThreads() for _ in s] == [before] * 2
    assert s.stats.threads["capture_decode"] == 2


def test_realtime_with_planes_accounts_for_every_frame(model_path):
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cpu", threads=1, size="large")  # slower than the video's 28 fps
    s = est.stream(VIDEO, realtime=True, max_frames=30)
    got = [r.index for r in s]
    st = s.stats
    assert st.threads["video_backend"] == "pyav"
    assert st.accounted and st.read == 30 and st.processed == len(got)
    assert st.dropped.get("realtime", 0) > 0 and st.read == st.processed + sum(st.dropped.values())
    assert got == sorted(got) and got[0] == 0


def write_xvid(path, n: int):
    cap = cv2.VideoCapture(str(VIDEO))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 25.0, (320, 240))
    if not w.isOpened():
        pytest.skip("this OpenCV cannot write MPEG-4 part 2")
    for _ in range(n):
        w.write(cv2.resize(cap.read()[1], (320, 240)))
    w.release()
    cap.release()
    return path


@pytest.mark.parametrize("backend", ["opencv", "pyav"])
def test_a_truncated_file_ends_early_on_either_backend(tmp_path, backend):
    data = write_xvid(tmp_path / "clip.avi", 40).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 6 // 10])
    src = VideoSource(cut, want_planes=True, backend=backend).open()
    assert src.backend_used == backend
    got = []
    while (f := src.read()) is not None:
        got.append(f.index)
    st = src.stats
    assert 15 <= len(got) < 40 and got == list(range(len(got)))
    assert st.lost and st.ended.startswith("ended early") and "of 40" in st.ended and st.reopen_attempts == 1


def test_corrupt_frames_are_skipped_and_counted_with_pyav(tmp_path):
    bad = garbled_video(tmp_path)
    src = VideoSource(bad, backend="pyav").open()  # MJPEG is full-range 4:2:2: PyAV hands out BGR
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert src.backend_used == "pyav" and all(f.image.shape == (120, 160, 3) for f in frames)
    got = [f.index for f in frames]
    assert src.stats.read == 40 and src.stats.corrupt == 2 and 10 not in got and 20 not in got and got[-1] == 39
