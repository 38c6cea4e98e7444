"""`edgepose convert onnx`: graphs shaped like Lightweight OpenPose's and trt_pose's exports (random
weights, built here) become edgepose models that run through PoseEstimator, `run` and the decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import IMAGES

pytestmark = pytest.mark.convert
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxsim")
byo = pytest.importorskip("converters.byo")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from converters.common import ExportError  # noqa: E402
from edgepose.decode.merge import flip_channels  # noqa: E402
from edgepose.decode.synthetic import TEMPLATE  # noqa: E402
from edgepose.geometry import Letterbox  # noqa: E402
from edgepose.imageio import read_image  # noqa: E402
from edgepose.runner import PoseEstimator  # noqa: E402

IMAGE = IMAGES / "tfpose__p1.jpg"

# trt_pose's human_pose topology (tasks/human_pose/human_pose.json): its own part order (COCO's 17 then
# neck) and 1-based skeleton; limb k's PAF is channels 2k (y) and 2k+1 (x)
TRT_KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                 "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                 "right_knee", "left_ankle", "right_ankle", "neck"]  # fmt: skip
TRT_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2],
                [1, 3], [2, 4], [3, 5], [4, 6], [5, 7], [18, 1], [18, 6], [18, 7], [18, 12], [18, 13]]  # fmt: skip


def _w(rng, *shape, scale=0.2):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _conv(nodes, inits, rng, x, cin, cout, name, stride=1, k=3, relu=True):
    inits += [numpy_helper.from_array(_w(rng, cout, cin, k, k, scale=1.0 / np.sqrt(cin * k * k)), f"{name}_w"),
              numpy_helper.from_array(_w(rng, cout, scale=0.05), f"{name}_b")]  # fmt: skip
    out = name if not relu else f"{name}_pre"
    nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [out], kernel_shape=[k, k],
                                  strides=[stride, stride], pads=[k // 2] * 4, name=name))  # fmt: skip
    if relu:
        nodes.append(helper.make_node("Relu", [out], [name], name=f"{name}_relu"))
    return name


def _save(tmp_path, name, nodes, inits, inputs, outputs, opset):
    model = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])  # fmt: skip
    model.ir_version = 7
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def lwopenpose_like(tmp_path, size=(96, 64), seed=0):
    """Lightweight OpenPose's export: input ``data`` (1,3,H,W) fixed, stride 8, two stages, each with
    ``stage_i_output_1_heatmaps`` (19) and ``stage_i_output_0_pafs`` (38); the second stage reads the
    features and the first stage's maps (opset 11 as torch.onnx exported it then)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = _conv(nodes, inits, rng, "data", 3, 16, "c1", stride=2)
    x = _conv(nodes, inits, rng, x, 16, 16, "c2", stride=2)
    feat = _conv(nodes, inits, rng, x, 16, 32, "c3", stride=2)
    hm0 = _conv(nodes, inits, rng, feat, 32, 19, "stage_0_output_1_heatmaps", k=1, relu=False)
    paf0 = _conv(nodes, inits, rng, feat, 32, 38, "stage_0_output_0_pafs", k=1, relu=False)
    nodes.append(helper.make_node("Concat", [feat, hm0, paf0], ["stage1_in"], axis=1, name="stage1_cat"))
    _conv(nodes, inits, rng, "stage1_in", 89, 19, "stage_1_output_1_heatmaps", k=1, relu=False)
    _conv(nodes, inits, rng, "stage1_in", 89, 38, "stage_1_output_0_pafs", k=1, relu=False)
    w, h = size
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, c, h // 8, w // 8])
            for n, c in (("stage_0_output_1_heatmaps", 19), ("stage_0_output_0_pafs", 38),
                         ("stage_1_output_1_heatmaps", 19), ("stage_1_output_0_pafs", 38))]  # fmt: skip
    inp = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, h, w])]
    return _save(tmp_path, "lwopenpose", nodes, inits, inp, outs, opset=11)


def trt_pose_like(tmp_path, size=(64, 64), seed=1, parts=18, limbs=21):
    """trt_pose's export: input ``input`` (1,3,H,W), stride 4, ``cmap`` (parts, no background) and ``paf``."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = _conv(nodes, inits, rng, "input", 3, 16, "c1", stride=2)
    feat = _conv(nodes, inits, rng, x, 16, 16, "c2", stride=2)
    _conv(nodes, inits, rng, feat, 16, parts, "cmap", k=1, relu=False)
    _conv(nodes, inits, rng, feat, 16, 2 * limbs, "paf", k=1, relu=False)
    w, h = size
    outs = [helper.make_tensor_value_info("cmap", TensorProto.FLOAT, [1, parts, h // 4, w // 4]),
            helper.make_tensor_value_info("paf", TensorProto.FLOAT, [1, 2 * limbs, h // 4, w // 4])]  # fmt: skip
    inp = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])]
    return _save(tmp_path, "trt_pose", nodes, inits, inp, outs, opset=13)


def topology_file(tmp_path, keypoints=TRT_KEYPOINTS, skeleton=TRT_SKELETON, name="human_pose.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"supercategory": "person", "id": 1, "name": "person",
                                "keypoints": keypoints, "skeleton": skeleton}))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def lw_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("lw")
    out = byo.convert_onnx(lwopenpose_like(d), d / "lw.onnx", preset="lwopenpose")
    return out


@pytest.fixture(scope="module")
def trt_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt")
    out = byo.convert_onnx(trt_pose_like(d), d / "trt.onnx", preset="trt_pose", topology=topology_file(d))
    return out


def _outputs(path):
    m = onnx.load(str(path))
    return m, [o.name for o in m.graph.output], {p.key: p.value for p in m.metadata_props}


def test_lwopenpose_keeps_the_last_stage_and_runs_end_to_end(lw_model):
    m, outs, props = _outputs(lw_model)
    assert outs == ["heatmaps", "pafs"]
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("Conv") == 7  # 3 backbone + 2 stage-0 (read by stage 1) + 2 stage-1: nothing extra
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert m.graph.input[0].name == "image" and dims == ["batch", 3, "height", "width"]
    assert props["layout"] == "coco18" and props["stride"] == "8" and props["input_channel_order"] == "BGR"
    assert float(props["input_mean"]) == 128.0 and float(props["input_scale"]) == 1 / 256
    assert props["preferred_input_size"] == "456x256" and props["heatmaps_background"] == "network"
    assert props["channel_padding"] != "none"  # the 89-channel stage input is padded like the others
    assert float(props["parity_source_max_abs_diff"]) <= 1e-4
    est = PoseEstimator(lw_model, device="cpu", threads=2, size="184x120")
    img, _ = read_image(IMAGE)
    x, _ = est.preprocess(img)
    assert -0.51 <= x.min() and x.max() <= 0.5  # (x - 128) / 256 from the metadata
    hm, paf = est.infer(x[None])
    assert hm.shape[1:] == (19, x.shape[1] // 8, x.shape[2] // 8) and paf.shape[1] == 38
    res = est.predict(img)
    assert res.layout.id == "coco18"
    json.dumps(res.to_openpose_json())


def test_trt_pose_topology_background_and_folded_normalisation(trt_model, tmp_path):
    m, outs, props = _outputs(trt_model)
    assert outs == ["heatmaps", "pafs"]
    assert props["layout"] == "human_pose" and props["stride"] == "4" and props["input_channel_order"] == "RGB"
    assert json.loads(props["keypoint_names"]) == TRT_KEYPOINTS
    assert json.loads(props["limbs"])[0] == [15, 13] and json.loads(props["paf_channels"])[:2] == [[1, 0], [3, 2]]
    mirror = json.loads(props["mirror_parts"])  # left/right pairs travel as data
    assert TRT_KEYPOINTS[mirror[TRT_KEYPOINTS.index("left_ear")]] == "right_ear" and mirror[17] == 17
    # ImageNet's per-channel mean/std are in the graph; the contract says raw pixels
    assert float(props["input_mean"]) == 0.0 and float(props["input_scale"]) == 1.0
    assert "folded into the graph" in props["input_normalisation"]
    assert props["heatmaps_background"].startswith("derived")
    est = PoseEstimator(trt_model, device="cpu", threads=2, size="160x128")
    assert est.layout.num_parts == 18 and est.layout.to_coco17[5] == TRT_KEYPOINTS.index("left_shoulder")
    img, _ = read_image(IMAGE)
    x, _ = est.preprocess(img)
    hm, paf = est.infer(x[None])
    assert hm.shape[1] == 19 and paf.shape[1] == 42 and hm.shape[2] == x.shape[1] // 4
    bg = np.clip(1 - hm[0, :18].max(axis=0), 0, 1)
    np.testing.assert_allclose(hm[0, 18], bg, atol=1e-6)
    res = est.predict(img)
    assert all(p.keypoints.shape == (18, 3) for p in res.people)


def test_flip_averaging_on_the_custom_layout(trt_model):
    est = PoseEstimator(trt_model, device="cpu", threads=2, size="160x128", flip=True)
    hm_src, paf_src, sign = flip_channels(est.layout)
    names = est.layout.names
    assert names[hm_src[names.index("left_wrist")]] == "right_wrist" and hm_src[names.index("neck")] == names.index("neck")
    img, _ = read_image(IMAGE)
    res = est.predict(img)
    assert all(p.keypoints.shape == (18, 3) for p in res.people)


def _trt_maps(people, shape, sigma=1.0, width=1.0):
    """Maps the way trt_pose's training made them (cmap: a Gaussian per part, no background; paf: limb k's
    unit vector, its row (y) component in channel 2k and its column (x) component in 2k+1)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cmap = np.zeros((len(TRT_KEYPOINTS), h, w))
    paf = np.zeros((2 * len(TRT_SKELETON), h, w))
    for kp in people:
        for i, (x, y) in enumerate(kp):
            cmap[i] = np.maximum(cmap[i], np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)))
        for k, (a, b) in enumerate(TRT_SKELETON):
            pa, pb = kp[a - 1], kp[b - 1]
            d = pb - pa
            n = float(np.hypot(*d))
            u = d / n
            rx, ry = xx - pa[0], yy - pa[1]
            along = rx * u[0] + ry * u[1]
            on = (along >= -width) & (along <= n + width) & (np.abs(rx * u[1] - ry * u[0]) <= width)
            paf[2 * k][on], paf[2 * k + 1][on] = u[1], u[0]
    return cmap.astype(np.float32), paf.astype(np.float32)


def _figure(centre, height):
    key = {n: n.replace("left_", "l").replace("right_", "r") for n in TRT_KEYPOINTS}
    return np.array([TEMPLATE[key[n]] for n in TRT_KEYPOINTS]) * height + np.asarray(centre)


def test_hand_made_trt_pose_maps_decode_to_the_people(trt_model):
    est = PoseEstimator(trt_model, device="cpu", threads=2, size="256x192")
    people = [_figure((14.0, 24.0), 36.0), _figure((40.0, 25.0), 34.0)]
    cmap, paf = _trt_maps(people, (48, 64))
    box = Letterbox((256, 192), (256, 192), (256, 192))
    found, _ = est.decode_maps(cmap, paf, box)  # trt_pose's cmap has no background: the decoder takes it as is
    assert len(found) == 2
    s = est.meta.stride
    got = sorted(found, key=lambda p: p.keypoints[:, 0].mean())
    for person, want in zip(got, people):
        assert (person.keypoints[:, 2] > 0).all()
        err = np.abs(person.keypoints[:, :2] - (want * s + (s - 1) / 2)).max()
        assert err < 1.0 * s, err


def props_layout(path):
    return _outputs(path)[2]["layout"]


def test_edgepose_run_on_the_converted_models(cli, lw_model, trt_model, tmp_path):
    for model in (lw_model, trt_model):
        out = tmp_path / f"{model.stem}.jsonl"
        code, stdout, stderr = cli("run", IMAGE, "--model", model, "--size", "160x128", "--jsonl", out)
        assert code == 0, stdout + stderr
        rec = json.loads(out.read_text().splitlines()[0])
        assert rec["layout"] == props_layout(model) and all(len(p["keypoints"]) == 3 * 18 for p in rec["people"])


def test_nhwc_maps_named_by_hand_with_a_builtin_layout(cli, tmp_path):
    """An NHWC image input and NHWC outputs (a TensorFlow export), any names, MPI-15, dynamic H/W."""
    rng = np.random.default_rng(2)
    nodes, inits = [helper.make_node("Transpose", ["in:0"], ["nchw"], perm=[0, 3, 1, 2])], []
    feat = _conv(nodes, inits, rng, "nchw", 3, 8, "c1", stride=2)
    _conv(nodes, inits, rng, feat, 8, 16, "hm_nchw", k=1, relu=False)
    _conv(nodes, inits, rng, feat, 8, 28, "paf_nchw", k=1, relu=False)
    nodes += [helper.make_node("Transpose", ["hm_nchw"], ["out/heat"], perm=[0, 2, 3, 1]),
              helper.make_node("Transpose", ["paf_nchw"], ["out/paf"], perm=[0, 2, 3, 1]),
              helper.make_node("Relu", ["paf_nchw"], ["debug"])]  # an output nobody asked for: dropped
    src = _save(tmp_path, "nhwc", nodes, inits,
                [helper.make_tensor_value_info("in:0", TensorProto.FLOAT, ["n", "h", "w", 3])],
                [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", "a", "b", "c"]) for n in ("out/heat", "out/paf", "debug")],
                opset=17)  # fmt: skip
    out = tmp_path / "mpi.onnx"
    code, stdout, stderr = cli("convert", "onnx", "--model", src, "--out", out, "--layout", "mpi15",
                               "--heatmaps", "out/heat", "--pafs", "out/paf", "--input-scale", "1/255",
                               "--channel-order", "rgb", "--preferred-size", "128x96", "--stride", "2")  # fmt: skip
    assert code == 0, stdout + stderr
    assert "parity: max |converted - source|" in stdout
    m, outs, props = _outputs(out)
    assert outs == ["heatmaps", "pafs"] and props["layout"] == "mpi15" and props["stride"] == "2"
    assert float(props["input_scale"]) == pytest.approx(1 / 255) and props["input_channel_order"] == "RGB"
    est = PoseEstimator(out, device="cpu", threads=2)
    hm, paf = est.infer(est.preprocess(read_image(IMAGE)[0])[0][None])
    assert hm.shape[1] == 16 and paf.shape[1] == 28


@pytest.mark.parametrize("case,message", [
    ("unknown output", "has no tensor named 'nope'"),
    ("channel count", "layout mpi15 needs 16 (parts + background) or 15 (parts) channels"),
    ("not 4-D", "expected a 4-D image"),
    ("bad json", "is not valid JSON"),
    ("unknown part", "refers to unknown parts"),
    ("no topology", "needs --topology FILE"),
    ("stride", "--stride 16 but the maps are 1/8"),
])  # fmt: skip
def test_bad_input_is_one_clear_message_and_no_file(cli, tmp_path, case, message):
    lw = lwopenpose_like(tmp_path)
    out = tmp_path / "out.onnx"
    args = ["--model", lw, "--out", out, "--from", "lwopenpose"]
    if case == "unknown output":
        args += ["--heatmaps", "nope"]
    elif case == "channel count":
        args += ["--layout", "mpi15"]
    elif case == "not 4-D":
        nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])]
        src = _save(tmp_path, "flat", nodes, [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64])],
                    [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 64]) for n in "yz"], opset=17)  # fmt: skip
        args = ["--model", src, "--out", out, "--layout", "coco18", "--heatmaps", "y", "--pafs", "z"]
    elif case == "bad json":
        bad = tmp_path / "bad.json"
        bad.write_text('{"keypoints": ["a", "b"], "skeleton": [[1, 2]')
        args = ["--model", trt_pose_like(tmp_path), "--out", out, "--from", "trt_pose", "--topology", bad]
    elif case == "unknown part":
        topo = topology_file(tmp_path, skeleton=TRT_SKELETON[:-1] + [[18, 19]])
        args = ["--model", trt_pose_like(tmp_path), "--out", out, "--from", "trt_pose", "--topology", topo]
    elif case == "no topology":
        args = ["--model", trt_pose_like(tmp_path), "--out", out, "--from", "trt_pose"]
    elif case == "stride":
        args += ["--stride", "16"]
    code, stdout, stderr = cli("convert", "onnx", *args)
    assert code == 2, stdout + stderr
    assert message in stderr and stderr.count("error") == 1, stderr
    assert not out.exists()


def test_a_topology_with_other_limbs_than_the_network_is_a_channel_error(tmp_path):
    topo = topology_file(tmp_path, skeleton=TRT_SKELETON[:20])
    with pytest.raises(ExportError, match=r"pafs output 'paf' has shape \(1, 42, 16, 16\) but layout human_pose needs 40"):
        byo.convert_onnx(trt_pose_like(tmp_path), tmp_path / "o.onnx", preset="trt_pose", topology=topo)
    assert not (tmp_path / "o.onnx").exists()


def test_an_edgepose_layout_file_with_its_own_mirror_pairs(tmp_path):
    """Part names that say nothing about sides: the file's ``mirror`` pairs make flip possible."""
    names = ["head", "hand_a", "hand_b", "foot_a", "foot_b"]
    layout = {"names": names, "limbs": [[0, 1], [0, 2], [0, 3], [0, 4]], "mirror": [0, 2, 1, 4, 3]}
    path = tmp_path / "five.json"
    path.write_text(json.dumps(layout))
    src = trt_pose_like(tmp_path, parts=5, limbs=4)
    out = byo.convert_onnx(src, tmp_path / "five.onnx", layout=str(path), heatmaps="cmap", pafs="paf")
    est = PoseEstimator(out, device="cpu", threads=2, size="96x96", flip=True)
    assert est.layout.id == "five" and est.layout.mirror_parts() == (0, 2, 1, 4, 3)
    assert est.layout.paf_channels == ((0, 1), (2, 3), (4, 5), (6, 7)) and est.layout.to_coco17 is None
    est.predict(read_image(IMAGE)[0])
    path.write_text(json.dumps(dict(layout, mirror=[0, 2, 2, 4, 3])))
    with pytest.raises(ExportError, match="does not parse as a layout: .*mirror must pair"):
        byo.load_topology(path)
