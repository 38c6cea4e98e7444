"""tools/check_boards.py and its package tools/boards/ without emulation: the keypoint comparison and
its verdicts, the pictures picked, and the command line.

The emulated runs themselves (``make check-arm64``, ``make check-x86-haswell``) take minutes to
hours and need root; see docs/boards.md.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
TOOL = TOOLS / "check_boards.py"


def _boards(name: str):
    """``boards.<name>`` imported as the CLI imports it: the package beside tools/check_boards.py."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(f"boards.{name}")


@pytest.fixture(scope="module")
def judge():
    return _boards("judge")


@pytest.fixture(scope="module")
def checks():
    return _boards("checks")


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


def test_same_people_in_another_order_match(judge, tmp_path):
    a = _write(tmp_path / "a", {"f_keypoints.json": [_person(10, 10), _person(200, 50)]})
    b = _write(tmp_path / "b", {"f_keypoints.json": [_person(200.01, 50), _person(10, 10.02)]})
    c = judge.compare_keypoints(a, b)
    assert c["matched"] == 2 and c["parts"] == 36 and c["parts_one_side"] == 0
    assert c["max_px"] == pytest.approx(0.02, abs=1e-6)
    assert judge.fp32_ok(c)


def test_fp32_verdict_fails_on_distance_missing_parts_people_and_frames(judge, tmp_path):
    a = _write(tmp_path / "a", {"f_keypoints.json": [_person(10, 10)], "g_keypoints.json": []})
    far = _write(tmp_path / "far", {"f_keypoints.json": [_person(10.1, 10)], "g_keypoints.json": []})
    part = _write(tmp_path / "part", {"f_keypoints.json": [_person(10, 10, missing=(4,))], "g_keypoints.json": []})
    extra = _write(tmp_path / "extra", {"f_keypoints.json": [_person(10, 10), _person(300, 300)],
                                         "g_keypoints.json": []})  # fmt: skip
    frame = _write(tmp_path / "frame", {"f_keypoints.json": [_person(10, 10)]})
    for cand in (far, part, extra, frame):
        assert not judge.fp32_ok(judge.compare_keypoints(a, cand)), cand.name
    assert judge.compare_keypoints(a, part)["parts_one_side"] == 1
    assert judge.compare_keypoints(a, frame)["missing_frames"] == ["g_keypoints.json"]


def test_pictures_are_spread_over_the_folder(checks, tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    for i in range(10):
        (tmp_path / "images" / f"{i:02d}.jpg").write_bytes(b"")
    monkeypatch.setattr(_boards("common"), "DATA", tmp_path)  # what --data sets
    assert [p.name for p in checks.pick_pictures(3)] == ["00.jpg", "04.jpg", "09.jpg"]
    assert len(checks.pick_pictures(50)) == 10


def test_cpuinfo_models_are_known():
    cpus = _boards("root").CPUS
    assert {"cortex-a76", "cortex-a72"} <= set(cpus)
    assert "asimddp" in cpus["cortex-a76"]["features"] and "asimddp" not in cpus["cortex-a72"]["features"]
