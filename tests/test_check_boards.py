"""tools/check_boards.py without emulation: the keypoint comparison and its verdicts.

The emulated runs themselves (``make check-arm64``, ``make check-x86-haswell``) take minutes to
hours and need root; see docs/boards.md.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_boards.py"


@pytest.fixture(scope="module")
def cb():
    spec = importlib.util.spec_from_file_location("check_boards", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _person(x0: float, y0: float, missing: tuple[int, ...] = ()) -> list[float]:
    kp = []
    for k in range(18):
        kp += [0.0, 0.0, 0.0] if k in missing else [x0 + 3 * k, y0 + 2 * k, 0.8]
    return kp


def _write(folder: Path, frames: dict[str, list[list[float]]]) -> Path:
    folder.mkdir(parents=True)
    for name, people in frames.items():
        (folder / name).write_text(json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": p} for p in people]}))
    return folder


def test_same_people_in_another_order_match(cb, tmp_path):
    a = _write(tmp_path / "a", {"f_keypoints.json": [_person(10, 10), _person(200, 50)]})
    b = _write(tmp_path / "b", {"f_keypoints.json": [_person(200.01, 50), _person(10, 10.02)]})
    c = cb.compare_keypoints(a, b)
    assert c["matched"] == 2 and c["parts"] == 36 and c["parts_one_side"] == 0
    assert c["max_px"] == pytest.approx(0.02, abs=1e-6)
    assert cb.fp32_ok(c)


def test_fp32_verdict_fails_on_distance_missing_parts_people_and_frames(cb, tmp_path):
    a = _write(tmp_path / "a", {"f_keypoints.json": [_person(10, 10)], "g_keypoints.json": []})
    far = _write(tmp_path / "far", {"f_keypoints.json": [_person(10.1, 10)], "g_keypoints.json": []})
    part = _write(tmp_path / "part", {"f_keypoints.json": [_person(10, 10, missing=(4,))], "g_keypoints.json": []})
    extra = _write(tmp_path / "extra", {"f_keypoints.json": [_person(10, 10), _person(300, 300)],
                                         "g_keypoints.json": []})  # fmt: skip
    frame = _write(tmp_path / "frame", {"f_keypoints.json": [_person(10, 10)]})
    for cand in (far, part, extra, frame):
        assert not cb.fp32_ok(cb.compare_keypoints(a, cand)), cand.name
    assert cb.compare_keypoints(a, part)["parts_one_side"] == 1
    assert cb.compare_keypoints(a, frame)["missing_frames"] == ["g_keypoints.json"]


def test_pictures_are_spread_over_the_folder(cb, tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    for i in range(10):
        (tmp_path / "images" / f"{i:02d}.jpg").write_bytes(b"")
    monkeypatch.setattr(cb, "DATA", tmp_path)
    assert [p.name for p in cb.pick_pictures(3)] == ["00.jpg", "04.jpg", "09.jpg"]
    assert len(cb.pick_pictures(50)) == 10


def test_cpuinfo_models_are_known(cb):
    assert {"cortex-a76", "cortex-a72"} <= set(cb.CPUS)
    assert "asimddp" in cb.CPUS["cortex-a76"]["features"] and "asimddp" not in cb.CPUS["cortex-a72"]["features"]
