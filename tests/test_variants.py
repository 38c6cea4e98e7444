"""fp16 / int8 variants: built from the real model, loaded by the runtime, close to fp32 on real images;
the calibration set; the exact graph re-parametrisations; bad inputs; the report."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import COCO_MINI, IMAGES, VIDEO

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from converters.calibration import (  # noqa: E402
    CalibrationError,
    channel_stats,
    collect_frames,
    equalization_sites,
    equalize_ranges,
    fixed_letterbox,
    fold_depthwise_1x1,
)
from converters.variants import VariantError, build_fp16, build_int8, default_out, output_errors  # noqa: E402

#: tolerances vs fp32 on real images (valid map area): (max |diff|, mean |diff|) of heatmaps and PAFs
FP16_TOL = (0.1, 0.002)
INT8_TOL = (0.6, 0.012)  # a 16-frame calibration (the default build uses 100: max 0.36, mean 0.0066 there)
CALIB_FRAMES = 16


def _calib_sources():
    return [IMAGES, VIDEO]


@pytest.fixture(scope="session")
def fp16_model(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16") / "mobilenet_thin.fp16.onnx"
    return build_fp16(model_path, out, check_sources=[IMAGES], threads=2, progress=False)


@pytest.fixture(scope="session")
def int8_model(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "mobilenet_thin.int8.onnx"
    # u8s8 whatever CPU runs the tests (the default picks the weight type for the converting CPU)
    return build_int8(model_path, out, calib=_calib_sources(), frames=CALIB_FRAMES, weight_type="s8", threads=2,
                      progress=False)  # fmt: skip


@pytest.fixture(scope="session")
def real_inputs(estimator):
    """Pre-processed COCO images (not used for calibration) with their valid sizes."""
    import cv2

    files = sorted((COCO_MINI / "images").iterdir())[::7][:6]
    out = []
    for f in files:
        x, box = estimator.preprocess(cv2.imread(str(f)))
        out.append((x.copy(), box.resized))
    return out


def _errors(ref, cand, inputs):
    return output_errors(ref, cand, [x for x, _ in inputs], [v for _, v in inputs], 8, threads=2)


def _within(err, tol):
    return max(err["heatmaps_max"], err["pafs_max"]) <= tol[0] and max(err["heatmaps_mean"], err["pafs_mean"]) <= tol[1]


# -- fp16 -----------------------------------------------------------------------------------------
def test_fp16_builds_loads_and_stays_close(fp16_model, model_path, real_inputs):
    path = fp16_model.path
    assert path.name == "mobilenet_thin.fp16.onnx" and path.stat().st_size < 0.6 * model_path.stat().st_size
    m = onnx.load(str(path))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    # keep_io_types: the runtime feeds and reads float32
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {o.type.tensor_type.elem_type for o in m.graph.output} == {onnx.TensorProto.FLOAT}
    props = {p.key: p.value for p in m.metadata_props}
    assert props["variant"] == "fp16" and len(props["variant_of_sha256"]) == 64
    kept = json.loads(props["float_nodes"])  # the first two blocks stay float32 (raw pixel scale)
    assert "MobilenetV1/Conv2d_0/BatchNorm/FusedBatchNorm" in kept and not any("Conv2d_2" in n for n in kept)
    err = _errors(model_path, path, real_inputs)
    assert _within(err, FP16_TOL), err


def test_runtime_runs_fp16_unchanged(fp16_model, estimator):
    import cv2

    from edgepose.runner import PoseEstimator

    img = cv2.imread(str(IMAGES / "tfpose__apink2.jpg"))
    est = PoseEstimator(fp16_model.path, device="cpu", threads=2)
    assert est.meta.variant == "fp16"
    ref, got = estimator.predict(img), est.predict(img)
    assert len(got.people) == len(ref.people) >= 3


# -- int8 -----------------------------------------------------------------------------------------
def test_int8_is_qdq_per_channel_with_calibration_metadata(int8_model):
    m = onnx.load(str(int8_model.path))
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = {i.name: i for i in m.graph.initializer}
    # per-channel weights: DequantizeLinear of an int8 initializer with a vector of scales
    per_channel = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                   and inits[n.input[0]].data_type == onnx.TensorProto.INT8 and len(inits[n.input[1]].dims) == 1]  # fmt: skip
    props = {p.key: p.value for p in m.metadata_props}
    float_nodes = json.loads(props["float_nodes"])
    float_convs = [n for n in float_nodes if n.endswith(("FusedBatchNorm", "depthwise"))]
    n_convs = sum(n.op_type == "Conv" for n in m.graph.node)
    assert len(per_channel) == n_convs - len(float_convs) > 50
    assert props["variant"] == "int8"
    assert props["calibration_method"] == "percentile"
    assert props["quant_kernels"].startswith("u8s8") and "--weight-type mixed" in props["quant_kernels"]
    assert props["quant_weights"].startswith("int8 symmetric") and props["quant_built_on"]
    assert props["calibration_frames"] == str(CALIB_FRAMES)
    assert len(props["calibration_sha256"]) == 64
    assert json.loads(props["calibration_sources"]) == {IMAGES.name: 19, VIDEO.name: 72}
    assert m.ir_version == 8 and {o.domain for o in m.opset_import} <= {"", "ai.onnx", "com.microsoft"}
    assert int8_model.path.stat().st_size < 0.4 * 7.8e6


def test_int8_stays_close_to_fp32_on_real_images(int8_model, model_path, real_inputs):
    err = _errors(model_path, int8_model.path, real_inputs)
    assert _within(err, INT8_TOL), err


def test_runtime_runs_int8_unchanged(int8_model, estimator):
    import cv2

    from edgepose.runner import PoseEstimator

    img = cv2.imread(str(IMAGES / "tfpose__apink2.jpg"))
    est = PoseEstimator(int8_model.path, device="cpu", threads=2)
    assert est.meta.variant == "int8"
    ref, got = estimator.predict(img), est.predict(img)
    assert abs(len(got.people) - len(ref.people)) <= 1 and len(got.people) >= 3


def test_u8_weights_are_the_same_numbers(int8_model, real_inputs, tmp_path):
    """--weight-type u8 stores the calibrated int8 weights as uint8 with zero point 128: the model
    computes the same numbers (bit for bit without integer kernels), which ONNX Runtime runs with its
    u8u8 kernels (exact on x86 CPUs without VNNI, where u8s8 saturates)."""
    import onnxruntime as ort

    from converters.variants import DEFAULT_U8_WEIGHTS, weights_to_u8

    def int8_tensors(m):
        return sum(i.data_type == onnx.TensorProto.INT8 for i in m.graph.initializer)

    m = onnx.load(str(int8_model.path))
    before = int8_tensors(m)
    moved = weights_to_u8(m)
    assert len(moved) > 50 and len(moved) * 2 == before  # each weight and its zero point
    assert int8_tensors(m) == 0
    u8 = tmp_path / "u8u8.onnx"
    onnx.save(m, str(u8))
    # mixed: uint8 weights only in the backbone's convs (where the u8s8 kernels saturate)
    mixed_model = onnx.load(str(int8_model.path))
    mixed = weights_to_u8(mixed_model, DEFAULT_U8_WEIGHTS)
    assert 0 < len(mixed) < len(moved) and all(n.startswith("MobilenetV1/") for n in mixed)
    assert int8_tensors(mixed_model) == before - 2 * len(mixed)
    mix = tmp_path / "mixed.onnx"
    onnx.save(mixed_model, str(mix))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = real_inputs[0][0][None]
    ref = ort.InferenceSession(str(int8_model.path), so, providers=["CPUExecutionProvider"]).run(None, {"image": x})
    for path in (u8, mix):
        got = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"image": x})
        for ra, rb in zip(ref, got):
            np.testing.assert_array_equal(ra, rb)
    # with the integer kernels they run (and stay within the int8 tolerance: the converter checks that)
    for path in (u8, mix):
        fast = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
        assert all(np.isfinite(o).all() for o in fast)


def test_runtime_warns_once_for_u8s8_on_a_cpu_without_vnni(int8_model, caplog):
    """The real u8s8 model loaded twice: on an x86 CPU without VNNI (like CI's) one warning naming the
    fix; on other CPUs none."""
    import logging

    from edgepose import cpu, runner
    from edgepose.runner import PoseEstimator

    props = {p.key: p.value for p in onnx.load(str(int8_model.path)).metadata_props}
    want = cpu.int8_warning(props)
    runner._warned.discard(str(int8_model.path))
    with caplog.at_level(logging.WARNING, logger="edgepose.runner"):
        PoseEstimator(int8_model.path, device="cpu", threads=1)
        PoseEstimator(int8_model.path, device="cpu", threads=1)
    got = [r.getMessage() for r in caplog.records if "VNNI" in r.getMessage()]
    assert len(got) == (1 if want else 0), got
    assert not want or want in got[0]


@pytest.mark.slow
def test_int8_fixed_shape(model_path, tmp_path, estimator):
    import cv2

    out = tmp_path / "fixed.int8.onnx"
    res = build_int8(model_path, out, calib=[IMAGES], frames=8, fixed_shape="432x368", threads=2, progress=False)
    m = onnx.load(str(out))
    dims = [d.dim_value or d.dim_param for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 368, 432]
    assert res.props["fixed_input_size"] == "432x368"
    props = {p.key: p.value for p in m.metadata_props}
    assert props["preferred_input_size"] == "432x368"
    # frames letterboxed into exactly the fixed size run
    estimator_box = fixed_letterbox((432, 368), 8)
    img = cv2.imread(str(IMAGES / "tfpose__p1.jpg"))
    box = estimator_box(img.shape[1], img.shape[0])
    assert box.padded == (432, 368) and box.resized[0] <= 432 and box.resized[1] <= 368
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    est = estimator
    saved = est.letterbox
    try:
        est.letterbox = estimator_box
        x, _ = est.preprocess(img)
    finally:
        est.letterbox = saved
    hm, paf = sess.run(["heatmaps", "pafs"], {"image": x[None]})
    assert hm.shape == (1, 19, 46, 54) and paf.shape == (1, 38, 46, 54)


# -- calibration set ------------------------------------------------------------------------------
def test_calibration_set_is_spread_deterministic_and_hashed(estimator):
    a = collect_frames([IMAGES, VIDEO], 20, estimator.preprocess, progress=False)
    b = collect_frames([IMAGES, VIDEO], 20, estimator.preprocess, progress=False)
    assert len(a) == 20 and a.real == 20 and a.sha256 == b.sha256 and a.names == b.names
    assert {n.split("#")[0] for n in a.names} == {IMAGES.name, VIDEO.name}  # both sources represented
    assert a.sources == {str(IMAGES): 19, str(VIDEO): 72}
    c = collect_frames([IMAGES, VIDEO], 21, estimator.preprocess, progress=False)
    assert c.sha256 != a.sha256
    # exactly the runtime's pre-processing
    import cv2

    name = a.names[0].split("#")
    assert name[0] == IMAGES.name
    first = sorted(p for p in IMAGES.iterdir())[int(name[1])]
    x, _ = estimator.preprocess(cv2.imread(str(first)))
    np.testing.assert_array_equal(a.inputs[0], x)


def test_augmentation_tops_up_with_real_frames(estimator):
    s = collect_frames([IMAGES], 30, estimator.preprocess, augment=("flip",), progress=False)
    assert len(s) == 30 and s.real == 19 and sum(n.endswith("+flip") for n in s.names) == 11


def test_fewer_frames_than_asked_is_refused(estimator):
    with pytest.raises(CalibrationError, match=r"asked for 100 calibration frames.*only 19 readable frames"):
        collect_frames([IMAGES], 100, estimator.preprocess, progress=False)
    with pytest.raises(CalibrationError, match=r"only 19 readable frames \(\+19 augmented copies\)"):
        collect_frames([IMAGES], 100, estimator.preprocess, augment=("flip",), progress=False)


def test_source_without_readable_frames_is_refused(estimator, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CalibrationError, match="holds no readable frame"):
        collect_frames([IMAGES, tmp_path], 10, estimator.preprocess, progress=False)
    with pytest.raises(CalibrationError, match="no such file"):
        collect_frames([tmp_path / "missing"], 10, estimator.preprocess, progress=False)
    with pytest.raises(CalibrationError, match="no calibration source"):
        collect_frames([], 10, estimator.preprocess, progress=False)


# -- bad inputs to the converter: clear errors, nothing written ----------------------------------
def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_int8_bad_calibration_writes_nothing(model_path, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out" / "m.int8.onnx"
    with pytest.raises(CalibrationError, match="holds no readable frame"):
        build_int8(model_path, out, calib=[empty], frames=4, progress=False)
    with pytest.raises(CalibrationError, match="only 19 readable frames"):
        build_int8(model_path, out, calib=[IMAGES], frames=500, progress=False)
    assert not out.exists() and _listing(out.parent) == []


def test_variants_of_variants_are_refused(model_path, int8_model, fp16_model, tmp_path):
    with pytest.raises(VariantError, match="already quantized"):
        build_int8(int8_model.path, tmp_path / "x.onnx", calib=[IMAGES], frames=4, progress=False)
    with pytest.raises(VariantError, match="already quantized"):
        build_fp16(int8_model.path, tmp_path / "y.onnx", check_sources=[IMAGES], progress=False)
    with pytest.raises(VariantError, match="already an fp16 model"):
        build_int8(fp16_model.path, tmp_path / "z.onnx", calib=[IMAGES], frames=4, progress=False)
    with pytest.raises(VariantError, match="unknown calibration method 'kl'"):
        build_int8(model_path, tmp_path / "w.onnx", calib=[IMAGES], frames=4, method="kl", progress=False)
    with pytest.raises(VariantError, match="WxH"):
        build_int8(model_path, tmp_path / "v.onnx", calib=[IMAGES], frames=4, fixed_shape="big", progress=False)
    with pytest.raises(VariantError, match="multiple of the stride"):
        build_int8(model_path, tmp_path / "u.onnx", calib=[IMAGES], frames=4, fixed_shape="430x368", progress=False)
    with pytest.raises(VariantError, match="no such kernels"):
        build_int8(model_path, tmp_path / "t.onnx", calib=[IMAGES], frames=4, activation_type="s8", weight_type="u8",
                   progress=False)  # fmt: skip
    with pytest.raises(VariantError, match="weight type must be"):
        build_int8(model_path, tmp_path / "t.onnx", calib=[IMAGES], frames=4, weight_type="u4", progress=False)
    with pytest.raises(VariantError, match="--u8-weights '\\(' is not a regular expression"):
        build_int8(model_path, tmp_path / "t.onnx", calib=[IMAGES], frames=4, weight_type="mixed", u8_weights=["("],
                   progress=False)  # fmt: skip
    assert _listing(tmp_path) == []


def test_cli_errors_are_one_clear_line(cli, model_path, tmp_path):
    code, _, err = cli("convert", "variant", model_path, "--variant", "int8", "--calib", IMAGES, "--method", "kl",
                       "--out", tmp_path / "a.onnx")  # fmt: skip
    assert code == 2 and "unknown calibration method 'kl'" in err and "Traceback" not in err
    code, _, err = cli("convert", "variant", model_path, "--variant", "int8", "--out", tmp_path / "a.onnx")
    assert code == 2 and "--calib" in err
    code, _, err = cli("convert", "variant", model_path, "--variant", "int8", "--calib", tmp_path / "nope",
                       "--out", tmp_path / "a.onnx")  # fmt: skip
    assert code == 2 and "no such file" in err
    code, _, err = cli("convert", "variant", tmp_path / "missing.onnx", "--variant", "fp16")
    assert code == 2 and "no model at" in err
    code, _, err = cli("convert", "variant", model_path, "--variant", "fp16", "--fixed-shape", "432x368",
                       "--out", tmp_path / "a.onnx")  # fmt: skip
    assert code == 2 and "--fixed-shape does not apply to --variant fp16 (only to int8)" in err
    assert _listing(tmp_path) == []


def test_default_output_names():
    from pathlib import Path

    assert default_out(Path("models/mobilenet_thin.onnx"), "int8") == Path("models/mobilenet_thin.int8.onnx")
    assert default_out(Path("m/x.onnx"), "fp16") == Path("m/x.fp16.onnx")


# -- the exact re-parametrisations ----------------------------------------------------------------
def _tiny_graph():
    """A small graph with what the real network has: conv3x3 -> relu -> 1x1 depthwise (SAME_UPPER, bias,
    channel scales 0.01..100) -> conv1x1 -> relu, concatenated with a conv1x1 branch -> 3x3 depthwise ->
    two conv1x1 outputs ``heatmaps`` and ``pafs``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)

    def w(name, *shape, scale=1.0):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        w("w0", 8, 3, 3, 3, scale=0.05), w("b0", 8),
        w("wd", 8, 1, 1, 1, scale=3.0), w("bd", 8),
        w("w1", 6, 8, 1, 1), w("b1", 6),
        w("w2", 2, 8, 1, 1, scale=0.01),
        w("wdw", 8, 1, 3, 3), w("w3", 19, 8, 1, 1), w("w4", 38, 8, 1, 1),
    ]  # fmt: skip
    # per-channel ranges spread widely, as in the real network
    wd = numpy_helper.to_array(inits[2]).copy()
    wd[:, 0, 0, 0] *= np.array([1, 100, 0.01, 5, 0.2, 30, 1, 0.05], np.float32)
    inits[2] = numpy_helper.from_array(wd, "wd")
    nodes = [
        helper.make_node("Conv", ["image", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("Conv", ["r0", "wd", "bd"], ["d0"], group=8, kernel_shape=[1, 1], auto_pad="SAME_UPPER"),
        helper.make_node("Conv", ["d0", "w1", "b1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r0", "w2"], ["c2"]),
        helper.make_node("Concat", ["r1", "c2"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "wdw"], ["dw"], group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["dw", "w3"], ["heatmaps"]),
        helper.make_node("Conv", ["dw", "w4"], ["pafs"]),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", f, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("heatmaps", f, ["n", 19, "h", "w"]),
                               helper.make_tensor_value_info("pafs", f, ["n", 38, "h", "w"])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _assert_same(ref, got):
    for a, b in zip(ref, got, strict=True):
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), np.abs(a - b).max()


def _run(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x})


def test_fold_and_equalize_are_exact_on_a_tiny_graph():
    model = _tiny_graph()
    x = np.random.default_rng(2).uniform(0, 255, (2, 3, 16, 24)).astype(np.float32)
    ref = _run(model, x)
    removed = fold_depthwise_1x1(model)
    assert len(removed) == 1 and all(n.op_type != "Conv" or n.input[1] != "wd" for n in model.graph.node)
    onnx.checker.check_model(model)
    _assert_same(ref, _run(model, x))
    sites = equalization_sites(model)
    assert {type(s.producer).__name__ for s in sites} == {"NodeProto"}
    tensors = sorted({t for s in sites for t, _ in s.tensors})
    stats = channel_stats(model, [x[0], x[1]], tensors)
    before = stats["cat"].absmax.copy()
    done = equalize_ranges(model, stats)
    assert done, "nothing was rescaled"
    _assert_same(ref, _run(model, x))
    after = channel_stats(model, [x[0], x[1]], ["cat"])["cat"].absmax
    # the concatenation's small channels now use more of its range, and its range did not grow
    assert after.max() <= before.max() * (1 + 1e-5)
    assert np.median(after / after.max()) > np.median(before / before.max())


def test_fold_and_equalize_keep_the_real_model(model_path, estimator, real_inputs):
    model = onnx.load(str(model_path))
    ref = onnx.load(str(model_path))
    assert len(fold_depthwise_1x1(model)) == 24
    tensors = sorted({t for s in equalization_sites(model) for t, _ in s.tensors})
    stats = channel_stats(model, [x for x, _ in real_inputs[:3]], tensors)
    assert len(equalize_ranges(model, stats)) > 100
    err = _errors(ref, model, real_inputs[3:])
    assert max(err["heatmaps_max"], err["pafs_max"]) < 1e-4, err


# -- the report -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_variants_cli(cli, model_path, fp16_model, int8_model, tmp_path):
    gt = json.loads((COCO_MINI / "person_keypoints.json").read_text())
    keep = {im["id"] for im in gt["images"][:5]}
    small = dict(gt, images=[im for im in gt["images"] if im["id"] in keep],
                 annotations=[a for a in gt["annotations"] if a["image_id"] in keep])  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(small))
    out = tmp_path / "rep"
    code, stdout, _ = cli("report-variants", model_path, "--variants", fp16_model.path, int8_model.path,
                          "--annotations", tmp_path / "gt.json", "--images", COCO_MINI / "images",
                          "--out-dir", out, "--rounds", "3", "--no-progress")  # fmt: skip
    assert code == 0, stdout
    rep = json.loads((out / "report.json").read_text())
    names = [m["name"] for m in rep["models"]]
    assert names == [model_path.name, fp16_model.path.name, int8_model.path.name]
    fp32, fp16, int8 = rep["models"]
    assert fp32["speedup"] == pytest.approx(1.0) and fp32["errors"]["heatmaps_max"] == 0
    assert fp32["keypoints"]["share"] == 1.0
    assert fp16["keypoints"]["share"] > 0.9 and int8["keypoints"]["share"] > 0.3
    for m in rep["models"]:
        assert m["time_ms"]["runs"] == 3 and m["size_bytes"] > 0 and 0 <= m["AP"] <= 1
    assert int8["metadata"]["calibration_method"] == "percentile"
    md = (out / "report.md").read_text()
    assert "| mobilenet_thin.int8.onnx | int8 |" in md and "speed-up" in md


def test_report_needs_variants(cli, model_path, tmp_path):
    lone = tmp_path / "m.onnx"
    shutil.copy(model_path, lone)
    code, _, err = cli("report-variants", lone, "--annotations", COCO_MINI / "person_keypoints.json",
                       "--images", COCO_MINI / "images", "--out-dir", tmp_path / "r")  # fmt: skip
    assert code == 2 and "make variants" in err
