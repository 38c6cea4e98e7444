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
    ("check image", "nope.jpg does not exist"),
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
    elif case == "check image":
        args += ["--check-image", tmp_path / "nope.jpg"]
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


# --------------------------------------------------------------------------------------------
# Issue 26: adopting real trained (and quantised) networks. The sources are the real default model
# and int8/fp16 variants of it built by the project's own tooling, stripped of edgepose's metadata
# and renamed to Lightweight OpenPose's input and output names: foreign exports with real weights.
# --------------------------------------------------------------------------------------------

LW = byo.PRESETS["lwopenpose"]


def foreign(src, dst, transform=None):
    """``src`` (an edgepose model) made to look like someone else's export: no metadata, input ``data``,
    outputs named like Lightweight OpenPose's last stage; ``transform(model)`` edits the graph first."""
    from converters.common import rename_tensors

    m = onnx.load(str(src))
    del m.metadata_props[:]
    if transform is not None:
        transform(m)
    names = {"image": "data", "heatmaps": LW.heatmaps, "pafs": LW.pafs}
    rename_tensors(m.graph.node, names)
    for vi in (*m.graph.input, *m.graph.output):
        vi.name = names.get(vi.name, vi.name)
    m.producer_name, m.producer_version = "pytorch", "2.1.0"
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return dst


def expect_lwop_input(m):
    """The network behind Lightweight OpenPose's normalisation: the default model (which takes raw pixels,
    its normalisation folded into the first conv) re-weighted to take ``(pixel - 128) / 256`` like
    Lightweight OpenPose's PyTorch export: first conv's weights x 256, bias + 128 x their sum."""
    first = next(n for n in m.graph.node if n.op_type == "Conv" and "image" in n.input)
    inits = {t.name: t for t in m.graph.initializer}
    w = numpy_helper.to_array(inits[first.input[1]])
    b = numpy_helper.to_array(inits[first.input[2]])
    inits[first.input[1]].CopyFrom(numpy_helper.from_array((w * 256).astype(np.float32), first.input[1]))
    inits[first.input[2]].CopyFrom(numpy_helper.from_array((b + 128 * w.sum(axis=(1, 2, 3))).astype(np.float32),
                                                           first.input[2]))  # fmt: skip


def normalises_itself(m):
    """:func:`expect_lwop_input` behind its own ``x * (1/256) + (-0.5)`` on raw pixels: what an OpenVINO /
    OMZ export of Lightweight OpenPose looks like (its IR's ``Multiply``/``Add`` before the first conv)."""
    expect_lwop_input(m)
    g = m.graph
    for n in g.node:
        for i, t in enumerate(n.input):
            if t == "image":
                n.input[i] = "image_normalised"
    g.initializer.extend([numpy_helper.from_array(np.array(1 / 256, np.float32), "omz_scale"),
                          numpy_helper.from_array(np.array(-0.5, np.float32), "omz_shift")])  # fmt: skip
    head = [helper.make_node("Mul", ["image", "omz_scale"], ["image_scaled"], name="data/scale"),
            helper.make_node("Add", ["image_scaled", "omz_shift"], ["image_normalised"], name="data/mean")]  # fmt: skip
    nodes = head + list(g.node)
    del g.node[:]
    g.node.extend(nodes)


def split_biases(m):
    """Each quantised conv's bias (int32 ``DequantizeLinear``) as a float ``Add`` after the conv, the way a
    converted IR carries ``Convolution`` + ``Add``: onnxsim folds those Adds back into the convs, which
    changes how ONNX Runtime rounds them (issue 26, item 3)."""
    g = m.graph
    prod = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    nodes = []
    for n in g.node:
        dq = prod.get(n.input[2]) if n.op_type == "Conv" and len(n.input) == 3 else None
        if dq is not None and dq.op_type == "DequantizeLinear":
            q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
            b = q * numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
            del n.input[2]
            out = n.output[0]
            n.output[0] = f"{out}_nobias"
            g.initializer.append(numpy_helper.from_array(b.astype(np.float32).reshape(1, -1, 1, 1), f"{n.name}_bias"))
            nodes += [n, helper.make_node("Add", [f"{out}_nobias", f"{n.name}_bias"], [out], name=f"{n.name}_bias")]
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)


@pytest.fixture(scope="session")
def int8_variant(tmp_path_factory, model_path):
    """The default model quantised by `edgepose convert variant --variant int8 --weight-type s8` (u8s8)."""
    from converters.variants import build_int8

    d = tmp_path_factory.mktemp("int8")
    return build_int8(model_path, d / "mt.int8.onnx", calib=[IMAGES], frames=16, weight_type="s8", threads=2,
                      progress=False).path  # fmt: skip


@pytest.fixture(scope="session")
def foreign_sources(tmp_path_factory, model_path, int8_variant):
    d = tmp_path_factory.mktemp("foreign")
    return {
        "fp32 raw": foreign(model_path, d / "raw.onnx"),
        "fp32 torch": foreign(model_path, d / "torch.onnx", expect_lwop_input),
        "fp32 omz": foreign(model_path, d / "omz.onnx", normalises_itself),
        "int8": foreign(int8_variant, d / "int8.onnx"),
        "int8 bias adds": foreign(int8_variant, d / "int8_adds.onnx", split_biases),
    }


def _people(path, image=None):
    est = PoseEstimator(path, device="cpu", threads=2)
    return est.predict(read_image(image or sample_image())[0]).people


def sample_image():
    from edgepose.commands.demo import sample_image as sample

    return sample()


@pytest.mark.slow
@pytest.mark.parametrize("source", ["fp32 omz", "fp32 raw", "int8"])
def test_the_preset_normalisation_in_front_of_a_graph_that_wants_raw_pixels_is_refused(cli, foreign_sources,
                                                                                      tmp_path, source):  # fmt: skip
    """Item 1: the preset's (pixel - 128) / 256 in front of a graph that normalises raw pixels itself: parity
    passes (same assumption on both sides), the model finds nobody, so it must not be written. ``fp32 omz``:
    normalisation visible in the graph, the preset's values forced by hand; ``fp32 raw`` and ``int8`` (the
    real quantised graph): folded into the first conv, invisible, the preset applies it."""
    out = tmp_path / "m.onnx"
    args = ["convert", "onnx", "--from", "lwopenpose", "--model", foreign_sources[source], "--out", out]
    if source == "fp32 omz":
        args += ["--input-mean", "128", "--input-scale", "1/256"]
    code, stdout, stderr = cli(*args)
    assert code == 2, stdout + stderr
    assert "parity: max |converted - source| = " in stdout  # parity passed: it cannot see this
    assert "finds nobody in" in stderr and "--input-mean" in stderr and "--input-scale" in stderr, stderr
    assert "--input-mean 0 --input-scale 1" in stderr and "model not written" in stderr
    assert "normalisation: input BGR, (pixel - 128) * 0.00390625" in stdout
    if source == "fp32 omz":
        assert "the source normalises its input itself before its first Conv: Mul 0.00390625, Add -0.5" in stdout
        assert "the source normalises its input itself (Mul 0.00390625, Add -0.5)" in stderr
    assert not out.exists()


@pytest.mark.slow
def test_a_graph_that_normalises_itself_gets_raw_pixels_under_a_preset(cli, foreign_sources, tmp_path):
    """Item 1: the built-in Mul/Add before the first conv is found and said; the preset's normalisation is
    replaced by raw pixels (printed); the check on the astronaut finds her. The same network without that
    head (the PyTorch export) keeps the preset's normalisation, and both find the same person."""
    outs = {}
    for source in ("fp32 omz", "fp32 torch"):
        out = outs[source] = tmp_path / f"{source.split()[1]}.onnx"
        code, stdout, stderr = cli("convert", "onnx", "--from", "lwopenpose", "--model", foreign_sources[source],
                                   "--out", out)  # fmt: skip
        assert code == 0, stdout + stderr
        props = _outputs(out)[2]
        assert "check on a picture: astronaut.png: 1 people" in stdout and props["check_image"].startswith("astronaut.png")
        if source == "fp32 omz":
            assert "the source normalises its input itself before its first Conv: Mul 0.00390625, Add -0.5" in stdout
            assert ("normalisation: input BGR, (pixel - 0) * 1 (mean: 0 instead of the lwopenpose preset's 128, as "
                    "the graph normalises itself; scale: 1 instead of the lwopenpose preset's 0.00390625") in stdout  # fmt: skip
            assert float(props["input_mean"]) == 0 and float(props["input_scale"]) == 1
            assert props["source_input_normalisation"].endswith("Mul 0.00390625, Add -0.5")
        else:
            assert "normalises its input itself" not in stdout and "source_input_normalisation" not in props
            assert ("normalisation: input BGR, (pixel - 128) * 0.00390625 (mean: the lwopenpose preset's; scale: the "
                    "lwopenpose preset's)") in stdout  # fmt: skip
            assert float(props["input_mean"]) == 128 and float(props["input_scale"]) == 1 / 256
        assert props["variant"] == "fp32" and float(props["parity_source_max_abs_diff"]) <= 1e-4
    a, b = (_people(outs[s]) for s in ("fp32 omz", "fp32 torch"))
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(a[0].keypoints, b[0].keypoints, atol=1.0)  # the same network, fed the same


@pytest.mark.slow
def test_a_partial_override_says_which_preset_value_it_kept(cli, foreign_sources, tmp_path):
    """Item 2: one of ``--input-mean``/``--input-scale`` with a preset keeps the preset's other value, and
    says so. On the real int8 graph (which wants raw pixels): the issue's ``--input-scale 1`` alone gives
    ``(pixel - 128) * 1``, now printed (the network still finds the astronaut: a shift of 128 is survivable);
    ``--input-mean 0`` alone gives ``pixel / 256``, and the check refuses it."""
    out = tmp_path / "m.onnx"
    code, stdout, stderr = cli("convert", "onnx", "--from", "lwopenpose", "--model", foreign_sources["fp32 torch"],
                               "--out", out, "--input-scale", "1/256", "--check-image", IMAGE)  # fmt: skip
    assert code == 0, stdout + stderr
    assert ("normalisation: input BGR, (pixel - 128) * 0.00390625 (mean: the lwopenpose preset's; scale: "
            "--input-scale)") in stdout  # fmt: skip
    assert "note: only --input-scale was given: the mean 128 is the lwopenpose preset's" in stdout
    assert f"check on a picture: {IMAGE.name}: " in stdout
    out = tmp_path / "int8.onnx"
    code, stdout, stderr = cli("convert", "onnx", "--from", "lwopenpose", "--model", foreign_sources["int8"],
                               "--out", out, "--input-scale", "1")  # fmt: skip
    assert code == 0, stdout + stderr
    assert "normalisation: input BGR, (pixel - 128) * 1 (mean: the lwopenpose preset's; scale: --input-scale)" in stdout
    assert "note: only --input-scale was given: the mean 128 is the lwopenpose preset's" in stdout
    code, stdout, stderr = cli("info", out)
    assert code == 0 and "input       BGR, (pixel - 128) * 1," in stdout
    out = tmp_path / "int8-mean.onnx"
    code, stdout, stderr = cli("convert", "onnx", "--from", "lwopenpose", "--model", foreign_sources["int8"],
                               "--out", out, "--input-mean", "0")  # fmt: skip
    assert code == 2 and "note: only --input-mean was given: the scale 0.00390625 is the lwopenpose preset's" in stdout
    assert "finds nobody" in stderr and "(pixel - 0) * 0.00390625" in stderr and not out.exists()


@pytest.mark.slow
def test_a_quantised_source_keeps_its_rounding(foreign_sources, tmp_path, capsys):
    """Item 3: the real int8 graph with its conv biases as separate Adds: onnxsim would fold them into the
    convs and move the maps (0.065 here; 0.0225 on Lightweight OpenPose), so it is skipped for quantised
    sources; the adopted model gives the source's maps exactly, and the tolerance is the int8 one."""
    from converters.common import simplify

    src = foreign_sources["int8 bias adds"]
    x = byo._pixels(432, 368)
    ref = byo._session(onnx.load(str(src))).run(None, {"data": x})
    folded = byo._session(simplify(onnx.load(str(src)))).run(None, {"data": x})
    assert max(float(np.abs(a - b).max()) for a, b in zip(ref, folded)) > 1e-2  # what onnxsim would have done
    out = byo.convert_onnx(src, tmp_path / "m.onnx", preset="lwopenpose", input_mean=0, input_scale=1)
    stdout = capsys.readouterr().out
    assert "onnxsim: skipped for a quantised source" in stdout
    assert "parity: max |converted - source| = 0.00e+00 over heatmaps and PAFs (tolerance 0.05 for an int8 source)" in stdout
    props = _outputs(out)[2]
    assert props["parity_tolerance"] == "0.05 (int8 source)" and float(props["parity_source_max_abs_diff"]) == 0
    hm, paf = byo._session(onnx.load(str(out))).run(["heatmaps", "pafs"], {"image": x})
    np.testing.assert_array_equal(hm, ref[0])
    np.testing.assert_array_equal(paf, ref[1])
    assert [n.op_type for n in onnx.load(str(out)).graph.node].count("Add") == 30  # not folded


@pytest.mark.slow
def test_an_adopted_int8_model_is_labelled_int8_like_the_projects_own(cli, foreign_sources, int8_variant, tmp_path):
    """Item 4: variant and quantisation metadata read from the graph, the same as the int8 variant that the
    foreign source was made from, so the u8s8-on-x86-without-VNNI warning fires for it too."""
    from edgepose.cpu import int8_warning

    out = tmp_path / "m.onnx"
    code, stdout, stderr = cli("convert", "onnx", "--from", "lwopenpose", "--model", foreign_sources["int8"], "--out",
                               out, "--input-mean", "0", "--input-scale", "1", "--check-image", IMAGE)  # fmt: skip
    assert code == 0, stdout + stderr
    assert "(tolerance 0.05 for an int8 source)" in stdout
    props, own = _outputs(out)[2], _outputs(int8_variant)[2]
    assert props["variant"] == "int8" and props["quant_format"] == "QDQ"
    for key in ("quant_activations", "quant_weights", "quant_u8_weight_convs", "quant_kernels"):
        assert props[key] == own[key], key
    assert props["quant_activations"] == "uint8 asymmetric per-tensor" and props["quant_weights"] == "int8 symmetric per-channel"
    no_vnni = {"avx2", "fma", "sse4_2"}
    assert int8_warning(props, machine="x86_64", flags=no_vnni) == int8_warning(own, machine="x86_64", flags=no_vnni)
    assert int8_warning(props, machine="x86_64", flags=no_vnni) is not None
    assert int8_warning(props, machine="x86_64", flags=no_vnni | {"avx512_vnni"}) is None
    assert PoseEstimator(out, device="cpu", threads=2).meta.variant == "int8"
    code, stdout, _ = cli("info", out)
    assert code == 0 and "variant int8" in stdout


@pytest.mark.slow
def test_an_adopted_fp16_model_is_labelled_fp16(model_path, tmp_path, capsys):
    from converters.variants import build_fp16

    fp16 = build_fp16(model_path, tmp_path / "mt.fp16.onnx", check_sources=[IMAGE], threads=2, progress=False).path
    out = byo.convert_onnx(foreign(fp16, tmp_path / "src.onnx"), tmp_path / "m.onnx", preset="lwopenpose",
                           input_mean=0, input_scale=1, check_image=IMAGE)  # fmt: skip
    assert "(tolerance 0.01 for an fp16 source)" in capsys.readouterr().out
    props = _outputs(out)[2]
    assert props["variant"] == "fp16" and "quant_weights" not in props and props["parity_tolerance"] == "0.01 (fp16 source)"
    assert len(_people(out, IMAGE)) >= 1


def _quant_graph(tmp_path, op):
    """A one-conv graph in ONNX's other int8 forms: ``QLinearConv`` (QOperator) or ``ConvInteger``."""
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
             numpy_helper.from_array(np.array(128, np.uint8), "xz"), numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"), numpy_helper.from_array(np.array(0.1, np.float32), "ys"),
             numpy_helper.from_array(np.array(0, np.uint8), "yz")]  # fmt: skip
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"])]
    if op == "QLinearConv":
        nodes += [helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"]),
                  helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]  # fmt: skip
    else:
        nodes += [helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["yi"]),
                  helper.make_node("Cast", ["yi"], ["y"], to=TensorProto.FLOAT)]  # fmt: skip
    return onnx.load(str(_save(tmp_path, op, nodes, inits,
                               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], opset=13)))  # fmt: skip


@pytest.mark.parametrize("op,fmt,weights", [("QLinearConv", "QOperator", "int8 symmetric per-channel"),
                                            ("ConvInteger", "integer ops", "int8 symmetric per-tensor")])  # fmt: skip
def test_other_int8_forms_are_int8_too(tmp_path, op, fmt, weights):
    variant, props = byo.source_precision(_quant_graph(tmp_path, op))
    assert variant == "int8" and props["quant_format"].startswith(fmt)
    assert props["quant_activations"] == "uint8 asymmetric per-tensor" and props["quant_weights"] == weights
    assert "u8s8" in props["quant_kernels"]


def test_built_in_normalisation_is_seen_through_quantisation(tmp_path):
    """``Sub``/``Div`` by constants behind a Q/DQ pair and a ``BatchNormalization``: seen; a ``Sub`` of a
    non-constant or an input read twice: not a normalisation."""
    rng = np.random.default_rng(4)
    nodes, inits = [], [numpy_helper.from_array(np.array([104.0, 117.0, 123.0], np.float32).reshape(1, 3, 1, 1), "m"),
                        numpy_helper.from_array(np.array(255.0, np.float32), "d")]  # fmt: skip
    inits += [numpy_helper.from_array(np.array(0.01, np.float32), "qs"), numpy_helper.from_array(np.array(128, np.uint8), "qz"),
              numpy_helper.from_array(np.ones(3, np.float32), "bn1"),
              numpy_helper.from_array(np.zeros(3, np.float32), "bn0")]  # fmt: skip
    nodes += [helper.make_node("Sub", ["x", "m"], ["x1"]), helper.make_node("Div", ["x1", "d"], ["x2"]),
              helper.make_node("QuantizeLinear", ["x2", "qs", "qz"], ["x2q"]),
              helper.make_node("DequantizeLinear", ["x2q", "qs", "qz"], ["x3"]),
              helper.make_node("BatchNormalization", ["x3", "bn1", "bn0", "bn0", "bn1"], ["x4"])]  # fmt: skip
    _conv(nodes, inits, rng, "x4", 3, 4, "c", relu=False)
    m = onnx.load(str(_save(tmp_path, "norm", nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, 8, 8])], opset=17)))  # fmt: skip
    assert byo.builtin_normalisation(m, "x") == ["Sub (104, 117, 123)", "Div 255", "BatchNormalization"]
    m.graph.node.insert(0, helper.make_node("Relu", ["x"], ["unused"]))  # the input read twice
    assert byo.builtin_normalisation(m, "x") == []
