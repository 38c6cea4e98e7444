"""`edgepose eval` on coco-val-mini, `edgepose run` on images and folders with bad files, `edgepose demo`."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import COCO_MINI, IMAGES


@pytest.mark.slow
def test_eval_on_coco_val_mini(cli, model_path, tmp_path):
    out = tmp_path / "ap.json"
    code, stdout, _ = cli("eval", "--annotations", COCO_MINI / "person_keypoints.json", "--images",
                          COCO_MINI / "images", "--model", model_path, "--device", "cpu", "--threads", "2",
                          "--json-out", out, "--no-progress")  # fmt: skip
    assert code == 0
    assert "AP " in stdout and "AP50" in stdout
    rep = json.loads(out.read_text())
    assert {"AP", "AP50", "AR", "timings_ms"} <= set(rep)
    assert set(rep["timings_ms"]) == {"read", "preprocess", "inference", "decode"}
    for t in rep["timings_ms"].values():
        assert 0 <= t["median"] <= t["p90"]
    assert rep["images"] == 44 and rep["failed"] == []
    # the accuracy this project promises (README): AP >= 0.30 with the default settings
    assert rep["AP"] >= 0.30, rep["AP"]


def test_run_image_writes_json_and_render(cli, model_path, tmp_path):
    code, stdout, _ = cli("run", IMAGES / "tfpose__apink2.jpg", "--model", model_path, "--device", "cpu",
                          "--json-dir", tmp_path / "j", "--render", tmp_path / "r.jpg", "--coco-out", tmp_path / "c.json")  # fmt: skip
    assert code == 0
    doc = json.loads((tmp_path / "j" / "tfpose__apink2_keypoints.json").read_text())
    assert doc["version"] == 1.3 and len(doc["people"]) >= 3
    assert all(len(p["pose_keypoints_2d"]) == 18 * 3 and p["person_id"] == [-1] for p in doc["people"])
    assert (tmp_path / "r.jpg").stat().st_size > 10_000
    coco = json.loads((tmp_path / "c.json").read_text())
    assert len(coco) == len(doc["people"]) and all(len(c["keypoints"]) == 51 for c in coco)


def test_run_folder_with_bad_files_goes_on(cli, model_path, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(IMAGES / "tfpose__p1.jpg", src / "a_good.jpg")
    shutil.copy(IMAGES / "tfpose__golf.jpg", src / "z_good.jpg")
    (src / "b_empty.jpg").write_bytes(b"")
    (src / "c_notes.txt").write_text("not an image")
    data = (IMAGES / "tfpose__p2.jpg").read_bytes()
    (src / "d_truncated.jpg").write_bytes(data[: len(data) // 2])
    (src / "e_garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    out = tmp_path / "json"
    code, stdout, _ = cli("run", src, "--model", model_path, "--device", "cpu", "--json-dir", out,
                          "--coco-out", tmp_path / "coco.json", "--render", tmp_path / "render", "--no-progress")  # fmt: skip
    assert code == 1
    assert "summary: 6 inputs, 3 processed, 3 failed" in stdout
    for name in ("a_good", "z_good", "d_truncated"):
        doc = json.loads((out / f"{name}_keypoints.json").read_text())
        assert "error" not in doc
    for name in ("b_empty", "c_notes", "e_garbage"):
        doc = json.loads((out / f"{name}_keypoints.json").read_text())
        assert doc["people"] == [] and name.split("_", 1)[1] in doc["error"] or doc["error"]
    assert len(json.loads((tmp_path / "coco.failures.json").read_text())) == 3
    assert sorted(p.name for p in (tmp_path / "render").iterdir()) == [
        "a_good_rendered.jpg", "d_truncated_rendered.jpg", "z_good_rendered.jpg"]  # fmt: skip


def test_run_missing_source(cli, model_path, tmp_path):
    code, _, err = cli("run", tmp_path / "nothing.jpg", "--model", model_path)
    assert code == 2 and "no such file" in err


def test_demo_writes_rendered_image_and_json(cli, model_path, tmp_path):
    pytest.importorskip("skimage", reason="the demo picture ships with scikit-image (demo extra)")
    code, stdout, _ = cli("demo", "--model", model_path, "--device", "cpu", "--out-dir", tmp_path)
    assert code == 0
    assert "astronaut.png: 1 people" in stdout
    doc = json.loads((tmp_path / "astronaut_keypoints.json").read_text())
    assert len(doc["people"]) == 1
    assert (tmp_path / "astronaut_rendered.jpg").exists()
