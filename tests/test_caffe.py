"""Caffe converter: own prototxt / caffemodel readers, exact layer semantics, parity with OpenCV.

The real CMU weights cannot be had offline, so every network here gets seeded random weights
(He-scaled so activations stay finite through all stages) written with our caffemodel writer;
OpenCV 4.x's Caffe importer (``cv2.dnn.readNetFromCaffe``) is the independent reference, and a
numpy transcription of Caffe's pooling_layer.cpp pins down the rounding rules.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, IMAGES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from converters import caffe  # noqa: E402
from converters.caffe import (  # noqa: E402
    build_onnx,
    convert_caffe,
    expected_blob_shapes,
    find_heads,
    plan_network,
    read_caffemodel,
    relative_difference,
    write_caffemodel,
)
from converters.caffe_proto import CaffeFormatError, Message, _len_field, _varint, parse_prototxt  # noqa: E402
from converters.common import ExportError  # noqa: E402
from converters.metadata import get_props, sha256_file  # noqa: E402
from edgepose.meta import ModelMeta  # noqa: E402

POSE = DATA / "caffe" / "pose"
PROTOTXTS = {
    "coco18": POSE / "coco" / "pose_deploy_linevec.prototxt",
    "mpi15": POSE / "mpi" / "pose_deploy_linevec.prototxt",
    "mpi15_4stages": POSE / "mpi" / "pose_deploy_linevec_faster_4_stages.prototxt",
    "body25": POSE / "body_25" / "pose_deploy.prototxt",
}
IMAGE = IMAGES / "tfpose__p1.jpg"
TOL = 1e-4

needs_opencv_caffe = pytest.mark.skipif(
    not caffe.opencv_can_read_caffe(),
    reason="this OpenCV has no cv2.dnn.readNetFromCaffe (OpenCV 5 dropped it); install opencv-python-headless<5",
)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def random_weights(shapes: dict[str, list[tuple[int, ...]]], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """He-scaled conv weights, small biases, PReLU slopes in [0.05, 0.3]."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, blob_shapes in shapes.items():
        blobs = []
        if len(blob_shapes[0]) == 4:  # Convolution: weights (+ bias)
            w = blob_shapes[0]
            fan_in = w[1] * w[2] * w[3]
            blobs.append((rng.standard_normal(w) * np.sqrt(2.0 / fan_in)).astype(np.float32))
            blobs += [(rng.standard_normal(s) * 0.05).astype(np.float32) for s in blob_shapes[1:]]
        else:  # PReLU slope; a channel_shared one is 0-D in Caffe, which OpenCV cannot read: write it as (1,)
            blobs.append(rng.uniform(0.05, 0.3, blob_shapes[0] or (1,)).astype(np.float32))
        out[name] = blobs
    return out


def make_caffemodel(prototxt: Path, path: Path, seed: int = 0) -> dict[str, list[np.ndarray]]:
    weights = random_weights(expected_blob_shapes(prototxt), seed)
    write_caffemodel(path, weights)
    return weights


def cmu_blob(size: tuple[int, int], image: Path = IMAGE) -> np.ndarray:
    img = cv2.imread(str(image), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {image}"
    return cv2.dnn.blobFromImage(img, 1 / 256, size, (128, 128, 128), swapRB=False, crop=False).astype(np.float32)


def opencv_forward(prototxt: Path, caffemodel: Path | None, blob: np.ndarray) -> np.ndarray:
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel)) if caffemodel else cv2.dnn.readNetFromCaffe(str(prototxt))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(blob)
    return np.asarray(net.forward(), np.float32)


def ort_run(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    data = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".onnx" or p.name.endswith(".tmp"))


def caffe_pool_reference(x: np.ndarray, k, s, p, method: str, ceil: bool = True) -> np.ndarray:
    """Caffe's PoolingLayer::Forward_cpu and Reshape, transcribed (pooling_layer.cpp)."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    n, c, h, w = x.shape

    def pooled(size, kk, ss, pp):
        o = (int(np.ceil((size + 2 * pp - kk) / ss)) if ceil else (size + 2 * pp - kk) // ss) + 1
        return o

    oh, ow = pooled(h, kh, sh, ph), pooled(w, kw, sw, pw)
    if ph or pw:  # the last pooling window must start inside the image (plus left padding)
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= w + pw:
            ow -= 1
    y = np.empty((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if method == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
    return y.astype(np.float32)


TINY = """\
name: "tiny"   # hand-made: groups, dilation, pads, strides, MAX/AVE ceil pooling, leaky ReLU, PReLU, Concat
layer { name: "data" type: "Input" top: "image"
        input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
layer {
  name: "conv1" type: "Convolution" bottom: "image" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer {
  name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param: { num_output: 16 kernel_size: [3] pad: 2 dilation: 2 group: 2 bias_term: false }
}
layer { name: "prelu2" type: "PReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer {
  name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param { num_output: 16 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 group: 4 }
}
layer { name: "prelu3" type: "PReLU" bottom: "conv3" top: "conv3" prelu_param { channel_shared: true } }
layer { name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3"
        pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "relu3" type: "ReLU" bottom: "pool3" top: "pool3" }
layer { name: "cat" type: "Concat" bottom: "pool3" bottom: "pool2" top: "feat" }
layer { name: "head_L2" type: "Convolution" bottom: "feat" top: "head_L2"
        convolution_param { num_output: %(hm)d kernel_size: 1 } }
layer { name: "head_L1" type: "Convolution" bottom: "feat" top: "head_L1"
        convolution_param { num_output: %(paf)d kernel_size: 3 pad: 1 } }
layer { name: "net_output" type: "Concat" bottom: "%(first)s" bottom: "%(second)s" top: "net_output"
        concat_param { axis: 1 } }
"""


def tiny_prototxt(folder: Path, hm: int = 19, paf: int = 38, pafs_first: bool = False, name: str = "tiny") -> Path:
    first, second = ("head_L1", "head_L2") if pafs_first else ("head_L2", "head_L1")
    path = folder / f"{name}.prototxt"
    path.write_text(TINY % {"hm": hm, "paf": paf, "first": first, "second": second})
    return path


@pytest.fixture
def tiny(tmp_path):
    """(prototxt, caffemodel, weights) of the tiny COCO-18-shaped network."""
    proto = tiny_prototxt(tmp_path)
    weights = make_caffemodel(proto, tmp_path / "tiny.caffemodel", seed=1)
    return proto, tmp_path / "tiny.caffemodel", weights


# ---------------------------------------------------------------------------------------------
# prototxt text format
# ---------------------------------------------------------------------------------------------


def test_prototxt_parser_handles_text_format_features():
    net = parse_prototxt(
        'name: "a \\"quoted\\" name" # comment\n'
        "input: 'image'  input_dim: 1 input_dim: 3\n"
        "layer < name: \"x\" type: \"Pooling\" pooling_param: { pool: AVE kernel_size: 3; stride: 2, } >\n"
        'layer { name: "c" "d" param { lr_mult: 1.0 } param { lr_mult: 2e0 } dims: [1, -2, 0x10] '
        "flag: true slope: -1.5e-2 }\n"
    )
    assert net.str("name") == 'a "quoted" name'
    assert net.strs("input") == ["image"] and net.ints("input_dim") == [1, 3]
    x, c = net.all("layer")
    assert x.msg("pooling_param").get("pool") == "AVE" and x.msg("pooling_param").int("stride") == 2
    assert c.str("name") == "cd"  # adjacent strings concatenate
    assert [p.float("lr_mult") for p in c.all("param")] == [1.0, 2.0]
    assert c.ints("dims") == [1, -2, 16] and c.bool("flag") is True and c.float("slope") == -0.015
    assert isinstance(c.msg("absent"), Message) and c.msg("absent").int("k", 7) == 7


@pytest.mark.parametrize(
    "text, where",
    [("layer { name: \"x\"", "unterminated"), ("layer { name \"x\" }", "expected ':'"), ("a: b: c", "expected a field"),
     ("layer { name: @ }", "unexpected character")],
)  # fmt: skip
def test_prototxt_parser_errors_name_the_position(text, where):
    with pytest.raises(CaffeFormatError, match=where) as e:
        parse_prototxt(text + "\n", where="net.prototxt")
    assert "net.prototxt:1" in str(e.value)


@pytest.mark.parametrize("key", list(PROTOTXTS))
def test_real_prototxts_plan(key):
    plan = plan_network(parse_prototxt(PROTOTXTS[key]))
    heads = find_heads(plan)
    want = {"coco18": ("coco18", 19, 38), "mpi15": ("mpi15", 16, 28), "mpi15_4stages": ("mpi15", 16, 28),
            "body25": ("body25", 26, 52)}[key]  # fmt: skip
    assert (heads.layout.id, plan.channels[heads.heatmaps], plan.channels[heads.pafs]) == want
    assert heads.stride == 8 and heads.concat is not None and not heads.pafs_first
    # COCO/MPI: concat_stageN = [..._L2 (heatmaps), ..._L1 (PAFs)]; BODY_25 names them the other way round
    assert heads.heatmaps.endswith("_L1" if key == "body25" else "_L2")
    assert expected_blob_shapes(PROTOTXTS[key])["conv1_1"] == [(64, 3, 3, 3), (64,)]


# ---------------------------------------------------------------------------------------------
# caffemodel wire format
# ---------------------------------------------------------------------------------------------


def test_caffemodel_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    layers = {"conv": [rng.standard_normal((4, 3, 3, 3)).astype(np.float32), np.arange(4, dtype=np.float32)],
              "relu": [], "prelu": [np.full((), 0.25, np.float32)]}  # fmt: skip
    write_caffemodel(tmp_path / "w.caffemodel", layers, types={"conv": "Convolution"}, name="net")
    got = read_caffemodel(tmp_path / "w.caffemodel")
    assert list(got) == ["conv", "relu", "prelu"] and got["relu"] == []
    for name, blobs in layers.items():
        for a, b in zip(blobs, got[name], strict=True):
            assert a.shape == b.shape and np.array_equal(a, b)


def test_caffemodel_legacy_v1_layers_and_4d_blobs(tmp_path):
    """V1LayerParameter (NetParameter.layers = 2: name 4, blobs 6) with num/channels/height/width blobs."""
    w = np.arange(2 * 3 * 1 * 1, dtype=np.float32)
    b = np.array([0.5, -0.5], np.float32)

    def blob(arr, dims, packed=True):
        legacy = b"".join(_varint(f << 3) + _varint(d) for f, d in zip((1, 2, 3, 4), dims, strict=True))
        if packed:
            data = b"".join(_len_field(5, arr.astype("<f4").tobytes()))
        else:  # unpacked repeated float (wire type 5), also valid protobuf
            data = b"".join(_varint(5 << 3 | 5) + v.astype("<f4").tobytes() for v in arr)
        return legacy + data

    body = b"".join(_len_field(4, b"conv")) + b"".join(_len_field(6, blob(w, (2, 3, 1, 1))))
    body += b"".join(_len_field(6, blob(b, (1, 1, 1, 2), packed=False)))
    (tmp_path / "v1.caffemodel").write_bytes(b"".join(_len_field(2, body)))
    got = read_caffemodel(tmp_path / "v1.caffemodel")
    assert got["conv"][0].shape == (2, 3, 1, 1) and np.array_equal(got["conv"][0].ravel(), w)
    assert got["conv"][1].shape == (1, 1, 1, 2) and np.array_equal(got["conv"][1].ravel(), b)


def test_truncated_caffemodel_is_a_clear_error_at_every_cut(tiny, tmp_path):
    _, model, _ = tiny
    data = model.read_bytes()
    for cut in sorted({1, 2, 3, 7, 50, len(data) // 3, len(data) // 2, len(data) - 5, len(data) - 1}):
        (tmp_path / "cut.caffemodel").write_bytes(data[:cut])
        with pytest.raises(CaffeFormatError, match="truncated or corrupt|no layers|has shape"):
            read_caffemodel(tmp_path / "cut.caffemodel")


def test_garbage_and_empty_caffemodels(tmp_path):
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(CaffeFormatError, match="empty"):
        read_caffemodel(tmp_path / "empty.caffemodel")
    (tmp_path / "text.caffemodel").write_bytes(b"layer { name: 'x' }\n" * 3)
    with pytest.raises(CaffeFormatError):
        read_caffemodel(tmp_path / "text.caffemodel")


# ---------------------------------------------------------------------------------------------
# pooling: Caffe's rounding, exactly
# ---------------------------------------------------------------------------------------------

POOL_CASES = [  # (kernel, stride, pad, method)
    ((2, 2), (2, 2), (0, 0), "MAX"), ((2, 2), (2, 2), (0, 0), "AVE"),
    ((3, 3), (2, 2), (1, 1), "MAX"), ((3, 3), (2, 2), (1, 1), "AVE"),
    ((2, 2), (2, 2), (1, 1), "MAX"), ((2, 2), (2, 2), (1, 1), "AVE"),  # clips the last window on odd sizes
    ((3, 3), (3, 3), (2, 2), "AVE"), ((3, 3), (3, 3), (2, 2), "MAX"),
    ((5, 3), (3, 2), (2, 0), "AVE"), ((5, 3), (3, 2), (2, 0), "MAX"),
    ((3, 1), (4, 3), (1, 0), "MAX"), ((3, 1), (4, 3), (1, 0), "AVE"),  # stride > kernel, padded in h only
    ((3, 3), (1, 1), (1, 1), "AVE"), ((1, 1), (1, 1), (0, 0), "MAX"),
]  # fmt: skip


def pool_prototxt(k, s, p, method, round_mode="CEIL") -> str:
    return (
        'input: "x" input_shape { dim: 1 dim: 3 dim: 9 dim: 9 }\n'
        f'layer {{ name: "pool" type: "Pooling" bottom: "x" top: "y" pooling_param {{ pool: {method} '
        f"kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} pad_h: {p[0]} pad_w: {p[1]} "
        f"round_mode: {round_mode} }} }}\n"
    )


@pytest.mark.parametrize("k, s, p, method", POOL_CASES)
@pytest.mark.parametrize("round_mode", ["CEIL", "FLOOR"])
def test_pooling_matches_caffe_reference_on_odd_and_even_sizes(k, s, p, method, round_mode):
    plan = plan_network(parse_prototxt(pool_prototxt(k, s, p, method, round_mode)))
    model = build_onnx(plan, {})
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for h, w in [(9, 9), (10, 7), (11, 12), (6, 5), (17, 16)]:
        x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
        ref = caffe_pool_reference(x, k, s, p, method, ceil=round_mode == "CEIL")
        (got,) = sess.run(None, {"image": x})
        assert got.shape == ref.shape, (h, w)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6, err_msg=f"{h}x{w}")


def test_unpadded_pooling_with_stride_above_kernel_is_refused():
    with pytest.raises(ExportError, match="empty pooling windows"):
        plan_network(parse_prototxt(pool_prototxt((2, 2), (3, 3), (0, 0), "MAX")))
    with pytest.raises(ExportError, match="smaller than the kernel"):
        plan_network(parse_prototxt(pool_prototxt((2, 2), (2, 2), (2, 2), "AVE")))


@needs_opencv_caffe
@pytest.mark.parametrize("k, s, p, method", [c for c in POOL_CASES if c[1][0] <= c[0][0] and c[1][1] <= c[0][1]])
def test_pooling_agrees_with_opencv(tmp_path, k, s, p, method):
    proto = tmp_path / "pool.prototxt"
    proto.write_text(pool_prototxt(k, s, p, method))
    model = build_onnx(plan_network(parse_prototxt(proto)), {})
    x = np.random.default_rng(1).standard_normal((1, 3, 11, 10)).astype(np.float32)
    (got,) = ort_run(model, {"image": x})
    ref = opencv_forward(proto, None, x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# the tiny network end to end
# ---------------------------------------------------------------------------------------------


@needs_opencv_caffe
@pytest.mark.parametrize("size", [(101, 75), (64, 64), (57, 83)])
def test_tiny_network_matches_opencv(tiny, tmp_path, size):
    proto, model, _ = tiny
    out = convert_caffe(proto, model, tmp_path / "tiny.onnx", parity=False)
    blob = cmu_blob(size)
    hm, paf = ort_run(out, {"image": blob})
    ref = opencv_forward(proto, model, blob)
    assert hm.shape[1] == 19 and paf.shape[1] == 38
    assert hm.shape[2:] == paf.shape[2:] == ref.shape[2:]  # Caffe's CEIL pooling: not always ceil(size / 8)
    rel = relative_difference(np.concatenate([hm, paf], axis=1), ref)
    print(f"tiny {size}: max rel diff vs OpenCV {rel:.2e}")
    assert rel <= TOL


@needs_opencv_caffe
def test_convert_runs_its_own_parity_check_and_records_it(tiny, tmp_path):
    proto, model, _ = tiny
    out = convert_caffe(proto, model, tmp_path / "tiny.onnx", parity=True, parity_image=IMAGE, parity_size=(75, 61))
    props = get_props(onnx.load(str(out)))
    assert float(props["parity_opencv_max_rel_diff"]) <= TOL


@needs_opencv_caffe
def test_pafs_first_concat_is_reordered(tmp_path):
    proto = tiny_prototxt(tmp_path, pafs_first=True)
    make_caffemodel(proto, tmp_path / "w.caffemodel", seed=3)
    out = convert_caffe(proto, tmp_path / "w.caffemodel", tmp_path / "m.onnx", parity=True)  # parity swaps back
    blob = cmu_blob((48, 40))
    hm, paf = ort_run(out, {"image": blob})
    ref = opencv_forward(proto, tmp_path / "w.caffemodel", blob)
    assert hm.shape[1] == 19 and paf.shape[1] == 38
    assert relative_difference(np.concatenate([paf, hm], axis=1), ref) <= TOL


def test_graph_outputs_dynamic_shapes_and_no_final_concat(tiny, tmp_path):
    proto, model, _ = tiny
    m = onnx.load(str(convert_caffe(proto, model, tmp_path / "tiny.onnx", parity=False)))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(m.graph.input) + list(m.graph.output)}  # fmt: skip
    assert dims == {"image": ["batch", 3, "height", "width"], "heatmaps": ["batch", 19, "out_height", "out_width"],
                    "pafs": ["batch", 38, "out_height", "out_width"]}  # fmt: skip
    assert m.ir_version == 8 and [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [17]
    producers = {o: n.op_type for n in m.graph.node for o in n.output}
    assert producers["heatmaps"] == "Conv" and producers["pafs"] == "Conv"
    assert "Slice" not in producers.values() and "Split" not in producers.values()
    # batch of two, any size
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 3, 45, 70)).astype(np.float32)
    hm, paf = ort_run(m, {"image": x})
    assert hm.shape == (2, 19, 6, 9) and paf.shape == (2, 38, 6, 9) and np.isfinite(hm).all()


def test_metadata_round_trip(tiny, tmp_path):
    proto, model, _ = tiny
    m = onnx.load(str(convert_caffe(proto, model, tmp_path / "tiny.onnx", parity=False)))
    meta = ModelMeta.from_props(get_props(m))
    assert meta.layout.id == "coco18" and meta.stride == 8 and meta.channel_order == "BGR"
    assert meta.scale == 1 / 256 and meta.mean == 128.0 and meta.input_size == (656, 368) and meta.variant == "fp32"
    assert meta.source_sha256 == sha256_file(model)
    assert meta.extra["source_name"] == "tiny.caffemodel"
    assert meta.extra["prototxt_sha256"] == sha256_file(proto)
    # (pixel - mean) * scale is CMU's x/256 - 0.5
    assert (200 - meta.mean) * meta.scale == pytest.approx(200 / 256 - 0.5)


@pytest.mark.parametrize("hm, paf, layout", [(19, 38, "coco18"), (16, 28, "mpi15"), (26, 52, "body25")])
def test_layout_is_inferred_from_channels(tmp_path, hm, paf, layout):
    proto = tiny_prototxt(tmp_path, hm, paf)
    make_caffemodel(proto, tmp_path / "w.caffemodel")
    out = convert_caffe(proto, tmp_path / "w.caffemodel", tmp_path / "m.onnx", simplify=False, parity=False)
    m = onnx.load(str(out))
    assert ModelMeta.from_props(get_props(m)).layout.id == layout
    assert [o.type.tensor_type.shape.dim[1].dim_value for o in m.graph.output] == [hm, paf]


# ---------------------------------------------------------------------------------------------
# bad input: a clear ExportError and no file
# ---------------------------------------------------------------------------------------------


def expect_refusal(tmp_path, match, proto, model, **kw):
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(ExportError, match=match) as e:
        convert_caffe(proto, model, out, parity=False, **kw)
    assert not out.exists() and leftovers(out.parent) == []
    return str(e.value)


def test_unsupported_layer(tiny, tmp_path):
    proto, model, _ = tiny
    text = proto.read_text().replace(
        'layer { name: "relu3" type: "ReLU"', 'layer { name: "drop3" type: "Dropout" bottom: "pool3" top: "pool3" }\n'
        'layer { name: "relu3" type: "ReLU"')  # fmt: skip
    bad = tmp_path / "bad.prototxt"
    bad.write_text(text)
    msg = expect_refusal(tmp_path, "drop3", bad, model)
    assert "Dropout" in msg and "Convolution" in msg  # names the layer, its type and what is supported


def test_blob_shape_mismatch_names_layer_expected_and_got(tiny, tmp_path):
    proto, _, weights = tiny
    weights["conv2"][0] = np.zeros((16, 8, 3, 3), np.float32)  # group 2 needs (16, 4, 3, 3)
    write_caffemodel(tmp_path / "bad.caffemodel", weights)
    msg = expect_refusal(tmp_path, "conv2", proto, tmp_path / "bad.caffemodel")
    assert "(16, 4, 3, 3)" in msg and "(16, 8, 3, 3)" in msg


def test_zero_d_shared_prelu_slope_is_accepted(tiny, tmp_path):
    proto, _, weights = tiny
    weights["prelu3"] = [np.array(0.2, np.float32)]  # how Caffe itself saves a channel_shared slope
    write_caffemodel(tmp_path / "w0.caffemodel", weights)
    assert read_caffemodel(tmp_path / "w0.caffemodel")["prelu3"][0].shape == ()
    out = convert_caffe(proto, tmp_path / "w0.caffemodel", tmp_path / "m.onnx", simplify=False, parity=False)
    slope = next(t for t in onnx.load(str(out)).graph.initializer if t.name == "prelu3/slope")
    assert list(slope.dims) == [1, 1, 1] and onnx.numpy_helper.to_array(slope).item() == pytest.approx(0.2)


def test_wrong_blob_count(tiny, tmp_path):
    proto, _, weights = tiny
    weights["conv1"] = weights["conv1"][:1]  # bias missing
    write_caffemodel(tmp_path / "bad.caffemodel", weights)
    expect_refusal(tmp_path, r"conv1.*1 blob\(s\) but the prototxt needs 2", proto, tmp_path / "bad.caffemodel")


def test_missing_layer_weights(tiny, tmp_path):
    proto, _, weights = tiny
    del weights["prelu3"]
    write_caffemodel(tmp_path / "bad.caffemodel", weights)
    expect_refusal(tmp_path, "no weights for layer 'prelu3'", proto, tmp_path / "bad.caffemodel")


def test_truncated_caffemodel_refused_without_output(tiny, tmp_path):
    proto, model, _ = tiny
    data = model.read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) * 2 // 3])
    expect_refusal(tmp_path, "truncated or corrupt", proto, tmp_path / "cut.caffemodel")


def test_layout_that_does_not_match_the_channels(tiny, tmp_path):
    proto, model, _ = tiny
    msg = expect_refusal(tmp_path, "layout mpi15 needs 44 output channels", proto, model, layout="mpi15")
    assert "57" in msg


def test_unknown_channel_count_and_missing_files(tmp_path):
    proto = tiny_prototxt(tmp_path, 10, 20)
    make_caffemodel(proto, tmp_path / "w.caffemodel")
    expect_refusal(tmp_path, "cannot infer the layout from 30", proto, tmp_path / "w.caffemodel")
    expect_refusal(tmp_path, "does not exist", proto, tmp_path / "nope.caffemodel")
    expect_refusal(tmp_path, "does not exist", tmp_path / "nope.prototxt", tmp_path / "w.caffemodel")


@needs_opencv_caffe
def test_parity_failure_writes_nothing(tiny, tmp_path, monkeypatch):
    proto, model, _ = tiny
    real = caffe.run_opencv
    monkeypatch.setattr(caffe, "run_opencv", lambda *a: real(*a) * 1.01)
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(ExportError, match="parity check failed"):
        convert_caffe(proto, model, out, parity=True)
    assert not out.exists() and leftovers(out.parent) == []


def test_cli_main(tiny, tmp_path, capsys):
    proto, model, _ = tiny
    out = tmp_path / "cli.onnx"
    assert caffe.main(["--prototxt", str(proto), "--caffemodel", str(model), "--out", str(out), "--no-parity",
                       "--no-simplify", "--layout", "coco18"]) == 0  # fmt: skip
    assert out.exists() and "model:" in capsys.readouterr().out
    bad = tmp_path / "bad.onnx"
    assert caffe.main(["--prototxt", str(proto), "--caffemodel", str(model), "--out", str(bad), "--no-parity",
                       "--layout", "body25"]) == 2  # fmt: skip
    assert "layout body25 needs 78" in capsys.readouterr().err and not bad.exists()
    with pytest.raises(SystemExit) as e:
        caffe.main(["--help"])
    assert e.value.code == 0


# ---------------------------------------------------------------------------------------------
# the real CMU networks with random weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.convert
@needs_opencv_caffe
@pytest.mark.parametrize(
    "key, simplify, size",
    [("coco18", True, (184, 184)), ("mpi15", False, (184, 160)), ("mpi15_4stages", False, (160, 208)),
     ("body25", True, (208, 160))],
)
def test_real_network_matches_opencv(tmp_path, key, simplify, size):
    proto = PROTOTXTS[key]
    t0 = time.perf_counter()
    make_caffemodel(proto, tmp_path / "w.caffemodel", seed=7)
    out = convert_caffe(proto, tmp_path / "w.caffemodel", tmp_path / "m.onnx", simplify=simplify, parity=False)
    blob = cmu_blob(size)
    hm, paf = ort_run(out, {"image": blob})
    ref = opencv_forward(proto, tmp_path / "w.caffemodel", blob)
    rel = relative_difference(np.concatenate([hm, paf], axis=1), ref)
    print(f"{key} {size[0]}x{size[1]}: max rel diff vs OpenCV {rel:.2e} (max|ref| {np.abs(ref).max():.3g}, "
          f"{time.perf_counter() - t0:.1f} s)")  # fmt: skip
    assert np.abs(ref).max() > 1e-3 and np.isfinite(ref).all()  # the random network is not degenerate
    assert rel <= TOL
    props = get_props(onnx.load(str(out), load_external_data=False))
    meta = ModelMeta.from_props(props)
    assert meta.layout.id == key.split("_")[0] and meta.stride == 8
    # the stage inputs (backbone features + heatmaps + PAFs) were padded to the NCHWc block
    assert props["channel_padding"] != "none", props["channel_padding"]
    assert hm.shape[1] == meta.layout.heatmap_channel_count and paf.shape[1] == meta.layout.paf_channel_count
