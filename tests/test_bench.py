"""The benchmark suite: `edgepose bench --quick` for real (real model, real video), its JSON schema,
the learnopencv baseline recipe, the NCHWc channel-padding rewrite and the lock-step workers.

The measuring core is edgepose.bench (in the package); the baselines are the checkout's benchmarks/
plug-in. tests/test_wheel.py runs `edgepose bench` from an installed wheel, without the plug-in."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import DATA, MODEL, ROOT

from edgepose.bench.schema import validate
from edgepose.bench.stats import ratio, summary

sys.path.insert(0, str(ROOT))  # the baselines live in the checkout's benchmarks/ folder

STAGES = ("read", "preprocess", "inference", "decode", "total")


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    """`edgepose bench --quick` run for real, as CI runs it (`make bench-quick`)."""
    if not MODEL.is_file():
        pytest.fail(f"the default model is missing at {MODEL}: run `make model`", pytrace=False)
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "edgepose", "bench", "--quick", "--model", str(MODEL), "--data", str(DATA),
         "--json", str(out), "--no-progress", "--readme"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout, out


@pytest.mark.slow
def test_quick_bench_writes_valid_json(quick_result):
    r, stdout, path = quick_result
    assert validate(r) == []
    assert r["mode"] == "quick" and r["schema"] == "edgepose-bench/1"
    m = r["machine"]
    assert m["cpu"]["model"] and m["cores"]["usable"] >= 1 and m["onnxruntime"]
    assert "CPUExecutionProvider" in m["providers"]
    ours = [c for c in r["configs"] if c["role"] == "edgepose"]
    assert ours and ours[0]["device"] == "cpu" and ours[0]["variant"] == "fp32"
    c = ours[0]
    assert c["active_providers"][0] == "CPUExecutionProvider"
    for st in STAGES:
        s = c["stages_ms"][st]
        assert s["n"] == r["settings"]["repeats"] and s["p50"] >= 0
    assert c["stages_ms"]["inference"]["p50"] > 0 and c["stages_ms"]["read"]["p50"] > 0
    # total is the wall time of the whole frame: at least the sum of the stage medians' smallest values
    assert c["stages_ms"]["total"]["p50"] >= c["stages_ms"]["inference"]["min"]
    assert c["fps"] > 0 and c["peak_rss_mb"] > 50
    assert c["input_budget"] == [320, 272]  # the small preset
    # a baseline ran, is labelled as one, and has its ratio
    base = [c for c in r["configs"] if c["role"] == "baseline"]
    assert base and all(b["label"].startswith("baseline: ") for b in base)
    assert r["ratios"] and r["ratios"][0]["inference"] > 0
    assert r["decoders"]["decode_ms"]["edgepose"]["n"] > 0
    # what was not measured says why (no GPU providers on CI machines)
    assert all(s["why"] for s in r["skipped"])
    # stdout: the markdown tables and the README table; plots beside the JSON
    assert "| edgepose cpu fp32 |" in stdout and "Speed-ups of edgepose" in stdout
    assert "| pipeline (input default" in stdout
    assert path.with_name("quick-stages.png").is_file()


@pytest.mark.slow
def test_schema_rejects_broken_results(quick_result):
    r = quick_result[0]
    bad = copy.deepcopy(r)
    bad["configs"][0]["stages_ms"]["inference"]["p50"] = -1.0
    assert any("inference.p50" in p for p in validate(bad))
    bad = copy.deepcopy(r)
    del bad["machine"]["cpu"]["model"]
    assert any("machine.cpu.model" in p for p in validate(bad))
    bad = copy.deepcopy(r)
    bad["configs"] = [c for c in bad["configs"] if c["role"] != "edgepose"]
    assert any("no edgepose configuration" in p for p in validate(bad))
    bad = copy.deepcopy(r)
    bad["configs"][0]["accuracy"] = {"AP": 1.5, "AP50": 0.5, "AR": 0.5}
    assert any("accuracy.AP" in p for p in validate(bad))
    assert validate([]) == ["result: not an object"]


def test_summary_and_ratio():
    s = summary([3.0, 1.0, 2.0, float("nan")])
    assert s["n"] == 3 and s["p50"] == 2.0 and s["min"] == 1.0 and s["p90"] <= s["p99"] <= 3.0
    assert summary([])["n"] == 0
    assert ratio(10.0, 5.0) == 2.0 and ratio(None, 1.0) is None and ratio(1.0, 0.0) is None


# -- the learnopencv recipe (baseline) ---------------------------------------------------------------
def test_learnopencv_recipe_finds_synthetic_people():
    from benchmarks.learnopencv import multi_person
    from edgepose.decode.synthetic import render_maps, stick_figure
    from edgepose.layouts import get_layout

    lay = get_layout("coco18")
    figs = [stick_figure(lay, (14.0, 23.0), 34.0), stick_figure(lay, (40.0, 23.0), 34.0)]
    hm, paf = render_maps(lay, figs, (46, 54))
    W, H = 54 * 8, 46 * 8
    kps, scores = multi_person(hm, paf, lay, (W, H))
    full = [k for k in kps if (k[:, 2] > 0).sum() >= 15]
    assert len(full) == 2 and len(scores) == len(kps)
    # keypoints in image pixels near the rendered ones (map cell centre i -> pixel 8i + 3.5)
    for k in full:
        fig = min(figs, key=lambda f: abs(f[1, 0] * 8 + 3.5 - k[1, 0]))
        vis = k[:, 2] > 0
        err = np.abs(k[vis, :2] - (fig[vis] * 8 + 3.5))
        assert err.max() < 8.0, err.max()


def test_learnopencv_recipe_on_empty_maps():
    from benchmarks.learnopencv import multi_person
    from edgepose.layouts import get_layout

    lay = get_layout("coco18")
    kps, scores = multi_person(np.zeros((19, 46, 54), np.float32), np.zeros((38, 46, 54), np.float32), lay, (640, 480))
    assert kps.shape == (0, 18, 3) and scores.shape == (0,)


def test_learnopencv_maps_follow_the_letterbox():
    """With a letterboxed input the maps are cropped to the image and scaled so cell centres land right."""
    from benchmarks.learnopencv import resize_maps

    m = np.zeros((1, 10, 20), np.float32)
    m[0, 4, 6] = 1.0  # cell centre at input pixel (6*8+3.5, 4*8+3.5) = (51.5, 35.5)
    # a 400x200 image resized to 100x50 inside a 160x80 input (scale 1/4)
    (out,) = resize_maps(m, (400, 200), resized=(100, 50), stride=8)
    assert out.shape == (200, 400)
    y, x = np.unravel_index(np.argmax(out), out.shape)
    assert abs(x - (51.5 + 0.5) * 4 + 0.5) <= 2 and abs(y - (35.5 + 0.5) * 4 + 0.5) <= 2


# -- NCHWc channel padding ------------------------------------------------------------------------------
def _concat_dw_model(c1=19, c2=38, feat=48):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)

    def w(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)

    c = c1 + c2 + feat
    inits = [w("wa", (c1, 3, 1, 1)), w("ba", (c1,)), w("wb", (c2, 3, 1, 1)), w("wf", (feat, 3, 3, 3)),
             w("wd", (c, 1, 3, 3)), w("bd", (c,)), w("wp", (16, c, 1, 1)), w("wq", (8, c, 3, 3))]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"]),
        helper.make_node("Conv", ["x", "wb"], ["b"]),
        helper.make_node("Conv", ["x", "wf"], ["f"], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["a", "b", "f"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "wd", "bd"], ["d"], group=c, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d", "wp"], ["y"]),
        helper.make_node("Conv", ["cat", "wq"], ["z"], pads=[1, 1, 1, 1]),  # a plain conv reading the concat too
    ]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 12, 10]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 12, 10])], inits)  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("align", [True, False])
def test_pad_depthwise_channels_keeps_the_outputs(align):
    import onnxruntime as ort

    from converters.graph import pad_depthwise_channels

    m = _concat_dw_model()
    x = np.random.default_rng(2).standard_normal((1, 3, 12, 10)).astype(np.float32)

    def run(model):
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    ref = run(m)
    padded, rep = pad_depthwise_channels(copy.deepcopy(m), block=16, align_inputs=align)
    assert [p["channels"] for p in rep["padded"]] == [105]
    # aligned: 19 -> 32, 38 -> 48, 48 stays: 128; else 105 -> 112
    assert rep["padded"][0]["padded_to"] == (128 if align else 112)
    got = run(padded)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_pad_depthwise_channels_leaves_other_patterns_alone():
    from converters.graph import pad_depthwise_channels

    m = _concat_dw_model(c1=16, c2=32, feat=48)  # already a multiple of 16
    _, rep = pad_depthwise_channels(m)
    assert rep == {"padded": [], "skipped": []}


# -- workers ---------------------------------------------------------------------------------------------
def test_worker_errors_are_clear_and_the_run_goes_on():
    """edgepose's own engine and a plug-in's engine (benchmarks.engines) in lock step; a broken one is dropped."""
    from edgepose.bench.lockstep import Quiet, Worker, WorkerError, interleave

    bad = Worker("bad", "nonsense", {})
    with pytest.raises(WorkerError, match="unknown engine 'nonsense'"):
        bad.start()
    bad.close()
    ok = Worker("ok", "pipeline", {"model": str(MODEL), "threads": 1, "size": "96x80", "source": str(DATA / "images")})
    plug = Worker("plug", "ort", {"model": str(MODEL), "threads": 1, "size": [64, 48], "images": str(DATA / "images"),
                                  "count": 2, "recipe": {}}, module="benchmarks.engines")  # fmt: skip
    broken = Worker("missing-model", "pipeline", {"model": "nope.onnx", "threads": 1, "source": str(DATA / "images")})
    try:
        ok.start()
        plug.start()
        with pytest.raises(WorkerError):
            broken.start()
        broken.error = "did not start"
        out = interleave([ok, plug, broken], warmup=1, repeats=3, quiet=Quiet(max_wait=0, retries=0))
        assert len(out["ok"]) == 3 and len(out["plug"]) == 3 and out["missing-model"] == []
        assert all(s["inference"] > 0 and s["read"] > 0 and "bg_cores" in s for s in out["ok"])
        assert all(s["inference"] > 0 for s in out["plug"])
        assert ok.info["input_budget"] == [96, 80]
        assert ok.stats()["peak_rss_mb"] > 10
    finally:
        for w in (ok, plug, broken):
            w.close()


def test_plan_finds_variants_and_skips_what_is_absent(tmp_path):
    from edgepose.bench.suite import Options, find_plugin, plan

    for name in ("m.onnx", "m.int8.onnx"):
        (tmp_path / name).symlink_to(MODEL)
    configs, skipped = plan(Options(model=str(tmp_path / "m.onnx"), data=str(DATA), threads=[1, 2],
                                    sizes=["small"], baselines=False).resolved())  # fmt: skip
    assert {c.variant for c in configs} == {"fp32", "int8"}
    assert {c.threads for c in configs if c.device == "cpu"} == {1, 2}
    assert all(c.role == "edgepose" and c.module is None for c in configs)
    assert any(s["what"] == "variant fp16" for s in skipped)
    with pytest.raises(ValueError, match="unknown provider"):
        plan(Options(model=str(tmp_path / "m.onnx"), data=str(DATA), providers=["gpu"]).resolved())
    # from a checkout the plug-in adds the baselines, run by its own engines
    plugin = find_plugin()
    assert plugin is not None and plugin.__name__ == "benchmarks.baselines"
    configs, _ = plan(Options(model=str(tmp_path / "m.onnx"), data=str(DATA), quick=True).resolved(), plugin)
    base = [c for c in configs if c.role == "baseline"]
    assert [c.extra["baseline"] for c in base] == ["learnopencv"] and base[0].module == "benchmarks.engines"


def test_frames_to_time_are_required(tmp_path):
    from edgepose.bench.suite import Options, data_video, find_plugin

    with pytest.raises(ValueError, match="--source .*--data"):
        Options(model=str(MODEL)).resolved()
    assert Options(model=str(MODEL), source=str(DATA / "images")).resolved().source == str(DATA / "images")
    assert data_video(DATA).name == "mmaction2__demo_skeleton.mp4"
    with pytest.raises(FileNotFoundError, match="--source"):
        data_video(tmp_path)
    assert find_plugin("benchmarks.no_such_plugin") is None


def test_accuracy_without_pycocotools_names_the_extra(monkeypatch):
    import importlib.util

    from edgepose.bench.suite import Options, run_suite

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pycocotools" else real(name, *a))
    with pytest.raises(ImportError, match=r"edgepose\[eval\]"):
        run_suite(Options(model=str(MODEL), data=str(DATA), quick=True, accuracy=True), progress=False)
