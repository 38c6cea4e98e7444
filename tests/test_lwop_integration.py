"""Lightweight OpenPose (converted from OMZ's IR by `edgepose convert openvino`) through everything
else edgepose has: streaming a real video, several scales and the mirrored frame, the variants report
(its int8 build found beside it as `lwop-int8.onnx`), `edgepose tune` with two models, and Triton: the
exported repository served by a real tritonserver gives the local keypoints."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, DATA, IMAGES, MODEL, VIDEO, need_service

pytestmark = pytest.mark.convert
pytest.importorskip("openvino")

XML = DATA / "models" / "omz-human-pose-estimation-0001" / "FP16-INT8" / "human-pose-estimation-0001.xml"


@pytest.fixture(scope="module")
def lwop(tmp_path_factory, python):
    """models lwop.onnx and lwop-int8.onnx, built once by the CLI in a child process (as `make model-lwop`)."""
    if not XML.exists():
        pytest.fail(f"the OMZ IR is missing at {XML}", pytrace=False)
    d = tmp_path_factory.mktemp("lwop")
    for out, prec in (("lwop.onnx", "fp32"), ("lwop-int8.onnx", "int8")):
        p = subprocess.run([python, "-m", "edgepose", "convert", "openvino", "--xml", str(XML), "--out", str(d / out),
                            "--precision", prec], capture_output=True, text=True, timeout=600)  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
    return d / "lwop.onnx", d / "lwop-int8.onnx"


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_streams_the_real_video(lwop, cli, tmp_path):
    fp32, int8 = lwop
    for model in (fp32, int8):
        out = tmp_path / f"{model.stem}.jsonl"
        code, stdout, err = cli("run", VIDEO, "--model", model, "--device", "cpu", "--threads", "2", "--jsonl", out)
        assert code == 0, err
        rows = _jsonl(out)
        assert len(rows) == 72  # every frame of the video
        people = [len(r["people"]) for r in rows]
        # two people in full view: found in (nearly) every frame, with ids from the tracker
        assert np.mean([n == 2 for n in people]) >= 0.9, people
        assert {p["id"] for r in rows for p in r["people"]} >= {0, 1} or all(
            "id" in p for r in rows for p in r["people"])


def test_scales_and_flip_use_the_mirror_table(lwop):
    from edgepose.runner import PoseEstimator

    img = cv2.imread(str(IMAGES / "tfpose__p3_dance.png"))
    one = PoseEstimator(lwop[0], device="cpu", threads=2).predict(img)
    many = PoseEstimator(lwop[0], device="cpu", threads=2, scales="1,0.75", flip=True).predict(img)
    assert len(one.people) >= 2 and abs(len(many.people) - len(one.people)) <= 1
    # the mirrored pass maps left parts back to left: the averaged keypoints stay by the single-scale ones
    a, b = one.keypoints(), many.keypoints()
    n = min(len(a), len(b))
    found = (a[:n, :, 2] > 0) & (b[:n, :, 2] > 0)
    d = []
    for i in range(n):
        j = np.argmin([np.nanmean(np.abs(a[i, :, :2] - b[k, :, :2])[found[i]]) if found[i].any() else 1e9
                       for k in range(len(b))])  # fmt: skip
        both = (a[i, :, 2] > 0) & (b[j, :, 2] > 0)
        d += list(np.linalg.norm(a[i, both, :2] - b[j, both, :2], axis=1))
    assert np.median(d) < 4.0, np.median(d)


def test_variants_report_finds_the_int8_build(lwop, cli, tmp_path):
    from edgepose.bench.suite import find_variants

    fp32, int8 = lwop
    assert find_variants(fp32) == {"fp32": fp32, "int8": int8}
    code, stdout, err = cli("report-variants", fp32, "--variants", int8, "--annotations", COCO_MINI / "person_keypoints.json",
                            "--images", COCO_MINI / "images", "--out-dir", tmp_path, "--size", "456x256",
                            "--rounds", "2", "--no-progress")  # fmt: skip
    assert code == 0, err
    rep = json.loads((tmp_path / "report.json").read_text())
    text = json.dumps(rep)
    assert "int8" in text and (tmp_path / "report.md").exists()


@pytest.mark.slow
def test_tune_chooses_among_two_models_by_ap(lwop, cli, tmp_path):
    import shutil

    d = tmp_path / "m"
    d.mkdir()
    thin = d / "thin.onnx"
    shutil.copy(MODEL, thin)
    out = tmp_path / "profile.json"
    code, stdout, err = cli("tune", "--model", thin, "--model", lwop[0], "--frames", VIDEO, "--target-fps", "1",
                            "--quick", "--sizes", "small", "--variants", "fp32", "--repeats", "2",
                            "--annotations", COCO_MINI / "person_keypoints.json", "--images", COCO_MINI / "images",
                            "--no-progress", "--out", out)  # fmt: skip
    assert code == 0, err
    prof = json.loads(out.read_text())
    # both models were measured; at 1 fps both reach the target, so the most accurate one is chosen:
    # Lightweight OpenPose (AP 0.39 at `small` against mobilenet_thin's 0.2-0.3)
    assert prof["model"]["path"].endswith("lwop.onnx"), prof["model"]
    assert "thin:" in stdout and "lwop:" in stdout
    code, _, err = cli("tune", "--model", thin, "--model", lwop[0], "--frames", VIDEO, "--target-fps", "1", "--quick",
                       "--no-progress", "--out", tmp_path / "p2.json")  # fmt: skip
    assert code == 2 and "--annotations" in err


@pytest.mark.triton
def test_triton_serves_it_like_a_local_run(lwop, tmp_path):
    pytest.importorskip("tritonclient.grpc", reason="needs the triton extra (tritonclient)")
    from edgepose.runner import PoseEstimator
    from edgepose.triton import RemoteEstimator
    from edgepose.triton.repo import ExportOptions, export_repository, parse_config
    from edgepose.triton.server import ServerError, TritonServer, find_install

    repo = tmp_path / "repo"
    export_repository(lwop[0], repo, ExportOptions(max_batch_size=2))
    for cfg in repo.glob("*/config.pbtxt"):
        parse_config(cfg.read_text())  # Triton's own schema
    try:
        find_install()
    except ServerError as e:
        need_service(f"no Triton server: {e}")
    local = PoseEstimator(lwop[0], device="cpu", threads=2)
    with TritonServer(repo, startup_timeout=180) as srv:
        remote = RemoteEstimator(srv.grpc_url)
        for name in ("tfpose__p1.jpg", "tfpose__apink2.jpg"):
            img = cv2.imread(str(IMAGES / name))
            a, b = remote.predict(img).keypoints(), local.predict(img).keypoints()
            assert a.shape == b.shape and len(a) >= 1
            assert np.abs(a - b).max() <= 0.01
