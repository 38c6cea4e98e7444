"""OpenVINO IR (``.xml`` + ``.bin``) of an OpenPose-style network -> a self-describing edgepose ONNX model.

Made for Intel Open Model Zoo's ``human-pose-estimation-0001`` (Lightweight OpenPose: MobileNet v1,
initial + one refinement stage), whose published IRs carry the input normalisation in the graph and,
in the FP16-INT8 precision, int8 weights and 256-level FakeQuantize on the activations. The IR is read
with the ``openvino`` package's own reader (``ov.Core().read_model``: ordered ops, Constant data,
attributes), and OpenVINO's runtime on the same IR is the parity reference. Steps (each timed by
:func:`converters.common.step`):

1. check the files: the ``.bin`` exists and holds every Const the XML points at, with the byte size
   its shape and type need (a truncated or foreign ``.bin`` is named as such, nothing is written);
2. read the IR; translate its ops in order (:data:`SUPPORTED_OPS`; any other op is one message naming
   its type and layer). Constant sub-graphs (the weight decompression ``Convert -> Subtract(zero point)
   -> Multiply(scale) [-> Reshape]``, f16 constants) are folded in numpy in the IR's own element type,
   so the float weights are the numbers OpenVINO computes; a per-channel ``Add`` after a convolution
   becomes its bias;
3. ``fp32``: the activation FakeQuantize ops are dropped. ``int8``: each 256-level FakeQuantize becomes
   ``QuantizeLinear -> DequantizeLinear`` (uint8, per tensor or per channel), exact when its input and
   output ranges agree and its zero point ``-low / scale`` is an integer; otherwise the exact float
   form ``Sub(low) -> Q(zero point 0) -> DQ -> Add(low)``. Per-channel ranges in front of depthwise
   convs (which ONNX Runtime cannot fuse) become per-tensor ones exactly: the ``Relu(conv + bias)``
   producing them absorbs the per-channel factors and the depthwise conv's weight scales take them back
   (see :func:`_fake_quantize`). Weights stay int8 behind a per-output-channel
   ``DequantizeLinear`` (the IR's zero points are 0 stored through f16's smallest subnormal, ±2^-17,
   and are read as 0), and a convolution whose input is a per-tensor Q/DQ gets an int32 bias at scale
   ``x_scale * w_scale`` (ONNX Runtime's QDQ fusion needs it: ``DQ -> Conv -> Q`` becomes QLinearConv);
4. one input ``image`` (N, 3, H, W) float32, BGR 0..255 (``input_mean`` 0, ``input_scale`` 1: the IR
   normalises itself), dynamic N/H/W; outputs ``heatmaps`` (19) and ``pafs`` (38) NCHW, recognised by
   their channel counts (anything else is not pose-shaped and refused); opset 17, IR version 8;
   ``fp32``: onnxsim and channel padding (:mod:`converters.graph`); ``int8``: neither (onnxsim
   constant-folds ``DequantizeLinear`` of weight initializers into float weights, which would undo the
   int8 weights: issue 26's item 3);
5. parity against OpenVINO on real pictures at two sizes (the IR reshaped to each): ``fp32`` against
   the same IR with its FakeQuantize ops bypassed (OpenVINO's float reference) and ``int8`` against
   the IR as published; the maps' largest difference and the keypoints decoded by edgepose's decoder
   from both; the ``fp32`` build's keypoints must be within 1 px of OpenVINO's, else nothing is written;
6. edgepose's metadata (layout coco18, whose part, limb and PAF order are Lightweight OpenPose's,
   stride 8, preferred size 456x256, the ``.bin``'s sha256, the quantisation of the int8 build) and
   an atomic write.

Example:
    $ edgepose convert openvino --xml human-pose-estimation-0001.xml --out models/lwop.onnx
    $ edgepose convert openvino --xml human-pose-estimation-0001.xml --out models/lwop-int8.onnx --precision int8

    >>> from converters.openvino import convert_openvino  # doctest: +SKIP
    >>> convert_openvino("human-pose-estimation-0001.xml", "lwop.onnx")  # doctest: +SKIP
    PosixPath('lwop.onnx')
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters import __version__
from converters.common import (
    ExportError,
    check_writable,
    cli_main,
    map_outputs,
    require,
    save_atomic,
    simplify,
    size_arg,
    stamp_versions,
    step,
)
from converters.graph import pad_for_nchwc
from converters.metadata import set_metadata, sha256_file
from edgepose.layouts import LAYOUTS, Layout
from edgepose.meta import HEATMAPS, INPUT, PAFS, ModelMeta

log = logging.getLogger(__name__)

__all__ = ["SUPPORTED_OPS", "PRECISIONS", "ParityReport", "convert_openvino", "check_ir_files", "read_ir",
           "translate", "check_parity", "add_arguments", "run", "main"]  # fmt: skip

#: The IR ops the translator knows (OpenVINO opset names).
SUPPORTED_OPS = ("Parameter", "Const", "Constant", "Convert", "Subtract", "Multiply", "Reshape", "Convolution",
                 "GroupConvolution", "Add", "ReLU", "Relu", "Elu", "Concat", "FakeQuantize", "Result")  # fmt: skip

#: precision -> what the build is
PRECISIONS = {
    "fp32": "float weights (decompressed from the IR), activation FakeQuantize dropped",
    "int8": "QDQ: int8 weights per output channel, uint8 activations from the IR's FakeQuantize ranges",
}

#: Lightweight OpenPose's preferred input (OMZ's 456x256) and stride
DEFAULT_INPUT_SIZE = (456, 256)
STRIDE = 8
#: OpenPose COCO-18 as Lightweight OpenPose orders it (its ``kpt_names``, ``BODY_PARTS_KPT_IDS`` and
#: ``BODY_PARTS_PAF_IDS`` are CMU's COCO-18 order, which edgepose's ``coco18`` layout is)
LAYOUT: Layout = LAYOUTS["coco18"]
#: parity: the sizes (w, h) the IR is reshaped to and both run at
PARITY_SIZES = ((456, 256), (368, 208))
#: parity tolerances (see docs/models.md and :func:`_judge`). fp32 vs OpenVINO's float run of the IR:
#: largest map difference and largest keypoint distance (px, original image). int8: OpenVINO's own int8
#: run is not FakeQuantize's arithmetic (its low-precision kernels requantize differently: on the parity
#: pictures its maps differ from its float run by up to 0.25, where the exact Q/DQ graph differs by
#: 0.06), so the int8 build is held to be as close to the float run as OpenVINO's int8 run is.
FP32_MAP_TOLERANCE = 5e-3
FP32_KEYPOINT_PX = 1.0
INT8_MAP_TOLERANCE = 0.5
INT8_KP_SHARE_MARGIN = 0.05
#: zero points within this of an integer are that integer (the IR stores 0 as f16's ±2^-17)
ZP_EPS = 1e-3


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

_IR_TYPES = {"f32": 4, "f16": 2, "i8": 1, "u8": 1, "i32": 4, "i64": 8, "u1": 0.125, "boolean": 1, "u16": 2,
             "i16": 2, "u32": 4, "u64": 8, "f64": 8, "bf16": 2, "i4": 0.5, "u4": 0.5}  # fmt: skip


def check_ir_files(xml: Path, bin_: Path) -> dict:
    """Check that ``bin_`` is the weights file ``xml`` describes, before OpenVINO reads them.

    Every ``Const`` layer's ``<data offset= size= shape= element_type=>`` must lie inside the ``.bin``
    and its size must be what its shape and type need; the ``.bin`` must end where the last Const ends
    (a longer one belongs to another IR). Returns ``{"consts", "bytes", "version"}``.

    Raises:
        ExportError: a missing file, an XML that does not parse, a truncated or mismatched ``.bin``.
    """
    if not xml.is_file():
        raise ExportError(f"the IR's .xml {xml} does not exist")
    if not bin_.is_file():
        raise ExportError(f"the IR's weights {bin_} do not exist: an IR is an .xml and a .bin side by side "
                          "(pass --bin if the .bin has another name)")  # fmt: skip
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as e:
        raise ExportError(f"{xml} is not an OpenVINO IR .xml: {e}") from e
    if root.tag != "net":
        raise ExportError(f"{xml} is not an OpenVINO IR .xml (its root element is <{root.tag}>, not <net>)")
    have = bin_.stat().st_size
    end, consts = 0, 0
    for layer in root.iter("layer"):
        if layer.get("type") not in ("Const", "Constant"):
            continue
        data = layer.find("data")
        if data is None or data.get("offset") is None:
            continue
        consts += 1
        name = layer.get("name", "?")
        try:
            off, size = int(data.get("offset")), int(data.get("size"))
            shape = [int(v) for v in data.get("shape", "").split(",") if v.strip()]
        except ValueError as e:
            raise ExportError(f"{xml}: Const layer {name!r} has malformed offset/size/shape: {e}") from e
        et = data.get("element_type", "f32")
        want = int(np.ceil(np.prod(shape, dtype=np.int64) * _IR_TYPES.get(et, 0))) if et in _IR_TYPES else size
        if want != size:
            raise ExportError(f"{xml} does not match itself: Const layer {name!r} is {et} {shape} ({want} bytes) "
                              f"but its data size is {size}")  # fmt: skip
        if off + size > have:
            raise ExportError(f"{bin_} is truncated or not this IR's weights: Const layer {name!r} needs bytes "
                              f"{off}..{off + size} but the file has {have} bytes")  # fmt: skip
        end = max(end, off + size)
    if consts == 0:
        raise ExportError(f"{xml} has no Const layers with data: not a network with weights")
    if have != end:
        raise ExportError(f"{bin_} does not match {xml.name}: the XML's constants end at byte {end} but the "
                          f".bin has {have} bytes (weights of another IR?)")  # fmt: skip
    return {"consts": consts, "bytes": have, "version": root.get("version", "?")}


def read_ir(xml: Path, bin_: Path):
    """``ov.Core().read_model(xml, bin)``, its errors as :class:`ExportError`."""
    ov = require("openvino")
    try:
        return ov.Core().read_model(str(xml), str(bin_))
    except Exception as e:  # openvino raises RuntimeError subclasses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"OpenVINO cannot read the IR {xml.name} + {bin_.name}: {first}") from e


# --------------------------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------------------------


@dataclass
class QWeight:
    """An int8 constant on its way through the IR's decompression: ``(q - zp) * scale``; ``value`` is
    the same numbers computed as the IR computes them (its element type)."""

    q: np.ndarray
    zp: np.ndarray
    scale: np.ndarray
    value: np.ndarray


@dataclass
class Translation:
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)  # "heatmaps"/"pafs" -> tensor
    counts: dict = field(default_factory=dict)
    fq: dict = field(default_factory=lambda: {"qdq": 0, "qdq_per_channel": 0, "float_form": 0, "dropped": 0})
    int8_convs: int = 0
    float_convs: list = field(default_factory=list)
    #: tensor -> per-tensor scale of the exact Q/DQ pair that made it (int8 build)
    qscale: dict = field(default_factory=dict)
    #: tensor -> per-channel factor f: the real values are the tensor's times f (int8 build, see
    #: :func:`_fake_quantize`); the depthwise conv reading it multiplies its weight scales by f
    chscale: dict = field(default_factory=dict)
    #: conv output with its bias -> its meta; relu output -> (its input, its IR output key)
    biased: dict = field(default_factory=dict)
    relu_src: dict = field(default_factory=dict)
    uses: dict = field(default_factory=dict)
    rescaled: int = 0
    #: int8 build: FakeQuantize whose zero point is not an integer -> the nearest integer (Q/DQ that
    #: ONNX Runtime fuses) instead of the exact float form
    snap_zero_points: bool = False


def _fold(op: str, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Constant arithmetic in the operands' own type (f16 stays f16, as OpenVINO folds it)."""
    if op == "Subtract":
        return np.subtract(a, b, dtype=np.result_type(a, b))
    if op == "Multiply":
        return np.multiply(a, b, dtype=np.result_type(a, b))
    if op == "Add":
        return np.add(a, b, dtype=np.result_type(a, b))
    raise AssertionError(op)


def _round_zp(zp: np.ndarray) -> np.ndarray | None:
    z = np.asarray(zp, np.float64)
    r = np.round(z)
    return r if np.all(np.abs(z - r) <= ZP_EPS) else None


def translate(model, precision: str = "fp32", where: str = "IR", snap_zero_points: bool = False) -> Translation:
    """Walk an ``openvino.Model``'s ordered ops and build ONNX nodes and initializers.

    Raises:
        ExportError: an unsupported op (named with its layer), an unsupported attribute, a FakeQuantize
            of other than 256 levels in the int8 build, or an input that is not one NCHW image.
    """
    onnx = require("onnx")
    helper, nh = onnx.helper, require("onnx.numpy_helper")
    t = Translation(snap_zero_points=snap_zero_points)
    val: dict = {}  # (node name, port) -> np.ndarray | QWeight | str (tensor name)
    uses: dict[str, int] = {}
    n_params = 0

    def key(out) -> tuple[str, int]:
        return out.get_node().get_name(), out.get_index()  # unique; friendly names need not be

    def name_of(node) -> str:
        return node.get_friendly_name()

    def const(arr: np.ndarray, hint: str) -> str:
        nm = f"{hint}__{len(t.inits)}"
        t.inits.append(nh.from_array(np.ascontiguousarray(arr), nm))
        return nm

    def tensor(v, hint: str) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, QWeight):
            v = v.value
        return const(np.asarray(v).astype(np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v), hint)

    def emit(op: str, inputs: list[str], hint: str, **attrs) -> str:
        out = f"{hint}:{op}:{len(t.nodes)}"
        t.nodes.append(helper.make_node(op, inputs, [out], name=f"{hint}/{op}" if op else hint, **attrs))
        return out

    ops = list(model.get_ordered_ops())
    for node in ops:  # consumers per output (to fold a bias Add into the conv that only it reads)
        for inp in node.inputs():
            k = key(inp.get_source_output())
            uses[f"{k[0]}:{k[1]}"] = uses.get(f"{k[0]}:{k[1]}", 0) + 1
    conv_out: dict[str, dict] = {}  # conv output tensor -> {"node": NodeProto, "name", "w_scale", "x"}
    t.uses = uses

    for node in ops:
        op, nm, uid = node.get_type_name(), name_of(node), node.get_name()
        t.counts[op] = t.counts.get(op, 0) + 1
        ins = [val.get(key(i.get_source_output())) for i in node.inputs()]
        attrs = node.get_attributes()
        out_v = None
        if op not in SUPPORTED_OPS:
            raise ExportError(f"{where}: unsupported op {op} (layer {nm!r}); the converter knows "
                              f"{', '.join(o for o in SUPPORTED_OPS if o not in ('Const', 'ReLU'))}")  # fmt: skip
        if op == "Parameter":
            n_params += 1
            shape = node.get_output_partial_shape(0)
            dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
            if n_params > 1 or len(dims) != 4 or dims[1] != 3:
                raise ExportError(f"{where}: input {nm!r} has shape {shape}; expected one NCHW image (1, 3, H, W)")
            out_v = INPUT
        elif op in ("Constant", "Const"):
            out_v = node.get_data().copy()
        elif op == "Convert":
            dst = str(attrs.get("destination_type", "f32"))
            a = ins[0]
            if isinstance(a, np.ndarray):
                if a.dtype == np.int8 or a.dtype == np.uint8:
                    f = a.astype(np.float16 if dst == "f16" else np.float32)
                    out_v = QWeight(a, np.zeros((), np.float64), np.ones((), np.float64), f)
                else:
                    out_v = a.astype({"f16": np.float16, "f32": np.float32}.get(dst, np.float32))
            else:
                if dst not in ("f16", "f32"):
                    raise ExportError(f"{where}: Convert {nm!r} to {dst} on activations is not supported")
                out_v = a  # activations are float32 throughout the ONNX graph
        elif op in ("Subtract", "Multiply", "Add"):
            a, b = ins
            if isinstance(a, QWeight) and isinstance(b, np.ndarray):
                v = _fold(op, a.value, b.astype(a.value.dtype))
                if op == "Subtract":
                    out_v = QWeight(a.q, a.zp + b.astype(np.float64), a.scale, v)
                elif op == "Multiply":
                    out_v = QWeight(a.q, a.zp, a.scale * b.astype(np.float64), v)
                else:
                    out_v = v
            elif isinstance(a, (np.ndarray, QWeight)) and isinstance(b, (np.ndarray, QWeight)):
                av = a.value if isinstance(a, QWeight) else a
                bv = b.value if isinstance(b, QWeight) else b
                out_v = _fold(op, av, bv)
            elif op == "Add" and isinstance(a, str) and isinstance(b, np.ndarray) and a in conv_out \
                    and uses.get(conv_out[a]["key"], 0) == 1 and b.size == conv_out[a]["cout"]:
                out_v = _add_bias(t, conv_out.pop(a), b, precision, const)
                t.biased[out_v] = dict(t.biased.get(out_v, {}), out_key=f"{uid}:0")
            else:
                onnx_op = {"Subtract": "Sub", "Multiply": "Mul", "Add": "Add"}[op]
                out_v = emit(onnx_op, [tensor(a, nm), tensor(b, nm)], nm)
        elif op == "Reshape":
            a, shape = ins
            if not isinstance(shape, np.ndarray):
                raise ExportError(f"{where}: Reshape {nm!r} has a computed target shape; only constant shapes are supported")
            if isinstance(a, (np.ndarray, QWeight)):
                tgt = [int(s) for s in shape.ravel()]
                av = a.value if isinstance(a, QWeight) else a
                if attrs.get("special_zero", False):
                    tgt = [av.shape[i] if s == 0 else s for i, s in enumerate(tgt)]
                v = av.reshape(tgt)
                out_v = QWeight(a.q.reshape(tgt), a.zp, a.scale, v) if isinstance(a, QWeight) else v
            else:
                if not attrs.get("special_zero", False) and 0 in shape.ravel().tolist():
                    raise ExportError(f"{where}: Reshape {nm!r} with a 0 in its shape and special_zero false")
                out_v = emit("Reshape", [a, const(shape.astype(np.int64), nm)], nm)
        elif op in ("Convolution", "GroupConvolution"):
            out_v, meta = _conv(t, nm, op, ins, attrs, precision, const, emit, where)
            conv_out[out_v] = dict(meta, key=f"{uid}:0")
        elif op in ("ReLU", "Relu"):
            out_v = emit("Relu", [ins[0]], nm)
            t.relu_src[out_v] = (ins[0], f"{uid}:0")
        elif op == "Elu":
            out_v = emit("Elu", [ins[0]], nm, alpha=float(attrs.get("alpha", 1.0)))
        elif op == "Concat":
            axis = int(attrs.get("axis", 1))
            if any(not isinstance(a, str) for a in ins):
                out_v = np.concatenate([np.asarray(a.value if isinstance(a, QWeight) else a) for a in ins], axis)
            else:
                out_v = emit("Concat", list(ins), nm, axis=axis)
        elif op == "FakeQuantize":
            out_v = _fake_quantize(t, node, nm, ins, attrs, precision, const, emit, where)
        elif op == "Result":
            src = ins[0]
            if not isinstance(src, str) or src == INPUT:
                raise ExportError(f"{where}: output {nm!r} is not computed from the image")
            shape = node.get_input_partial_shape(0)
            ch = shape[1].get_length() if shape.rank.is_static and shape.rank.get_length() == 4 and shape[1].is_static else None
            role = {LAYOUT.heatmap_channel_count: HEATMAPS, LAYOUT.paf_channel_count: PAFS}.get(ch)
            if role is None or role in t.outputs:
                raise ExportError(_not_pose(model, where))
            t.outputs[role] = src
        val[(uid, 0)] = out_v
        for i in range(1, node.get_output_size()):
            val[(uid, i)] = None
    if set(t.outputs) != {HEATMAPS, PAFS}:
        raise ExportError(_not_pose(model, where))
    return t


def _not_pose(model, where: str) -> str:
    shapes = ", ".join(f"{o.get_any_name()} {o.get_partial_shape()}" for o in model.outputs)
    return (f"{where} is not pose-shaped: its outputs are {shapes}; expected two NCHW maps, heatmaps with "
            f"{LAYOUT.heatmap_channel_count} channels (18 COCO parts + background) and PAFs with "
            f"{LAYOUT.paf_channel_count} (19 limbs x 2), like human-pose-estimation-0001's Mconv7_stage2_L2 "
            "and Mconv7_stage2_L1")  # fmt: skip


def _pads(attrs: dict, where: str, nm: str) -> dict:
    auto = str(attrs.get("auto_pad", "explicit")).lower()
    out = {"strides": [int(v) for v in attrs["strides"]], "dilations": [int(v) for v in attrs["dilations"]]}
    if auto in ("explicit", "notset"):
        out["pads"] = [int(v) for v in attrs["pads_begin"]] + [int(v) for v in attrs["pads_end"]]
    elif auto == "valid":
        out["pads"] = [0, 0, 0, 0]
    elif auto in ("same_upper", "same_lower"):
        out["auto_pad"] = auto.upper()
    else:
        raise ExportError(f"{where}: layer {nm!r} has auto_pad {auto!r}")
    return out


def _conv(t: Translation, nm, op, ins, attrs, precision, const, emit, where) -> tuple[str, dict]:
    x, w = ins
    if not isinstance(x, str) or not isinstance(w, (np.ndarray, QWeight)):
        raise ExportError(f"{where}: {op} {nm!r} needs a tensor input and constant weights")
    wv = w.value if isinstance(w, QWeight) else w
    kw = _pads(attrs, where, nm)
    group = 1
    if op == "GroupConvolution":
        if wv.ndim != 5:
            raise ExportError(f"{where}: GroupConvolution {nm!r} has weights of shape {wv.shape}; expected 5-D")
        group = wv.shape[0]
        onnx_shape = (wv.shape[0] * wv.shape[1], *wv.shape[2:])
    else:
        onnx_shape = wv.shape
    cout = onnx_shape[0]
    meta = {"cout": cout, "x": x, "w_scale": None, "node": None, "ws_name": None, "wf_name": None}
    f = t.chscale.get(x)  # the input is channel-rescaled: so are this depthwise conv's weights
    if f is not None and not (group == cout == f.size and onnx_shape[1] == 1):
        raise AssertionError(f"{nm}: a channel-rescaled input must feed depthwise convs only")
    w_name = None
    if precision == "int8" and isinstance(w, QWeight):
        zp = _round_zp(w.zp)
        sc = np.asarray(w.scale, np.float64)
        # per output channel: one scale (and zero point) per filter, or one for all
        if zp is not None and (sc.size in (1, cout)) and zp.size in (1, cout) and np.all(zp == 0) \
                and np.all(sc > 0):
            q = w.q.reshape(onnx_shape).astype(np.int8)
            scale = np.broadcast_to(sc.reshape(-1), (cout,)).astype(np.float64)
            scale = (scale * (1.0 if f is None else f)).astype(np.float32)
            qn = const(q, f"{nm}_wq")
            meta["ws_name"] = f"{nm}_ws__{len(t.inits)}"
            w_name = f"{nm}_w:DQ"
            from onnx import helper

            t.nodes.append(helper.make_node("DequantizeLinear", [qn, const(scale, f"{nm}_ws"),
                                                                 const(np.zeros(cout, np.int8), f"{nm}_wzp")],
                                            [w_name], name=f"{nm}/weights/DequantizeLinear", axis=0))  # fmt: skip
            meta["w_scale"] = scale
    if w_name is None:
        wf = wv.reshape(onnx_shape).astype(np.float32)
        if f is not None:
            wf = (wf * f.reshape(-1, 1, 1, 1)).astype(np.float32)
        meta["wf_name"] = f"{nm}_w__{len(t.inits)}"
        w_name = const(wf, f"{nm}_w")
    out = emit("Conv", [x, w_name], nm, group=group, **kw)
    meta["node"] = t.nodes[-1]
    return out, meta


def _add_bias(t: Translation, meta: dict, b: np.ndarray, precision: str, const) -> str:
    """A per-channel Add after a conv becomes the conv's bias (int32 at x_scale*w_scale where the conv
    runs int8 in ONNX Runtime, float otherwise)."""
    from onnx import helper

    conv = meta["node"]
    nm = conv.name.removesuffix("/Conv")
    bias = b.astype(np.float32).reshape(-1)
    xs = t.qscale.get(meta["x"])
    if precision == "int8" and meta["w_scale"] is not None and xs is not None:
        s = (np.float64(xs) * meta["w_scale"].astype(np.float64)).astype(np.float32)
        q = np.round(bias.astype(np.float64) / s).astype(np.int64)
        if np.abs(q).max() < 2**31:
            dq = f"{nm}_b:DQ"
            meta["bs_name"] = f"{nm}_bs__{len(t.inits) + 1}"
            t.nodes.insert(t.nodes.index(conv), helper.make_node(
                "DequantizeLinear", [const(q.astype(np.int32), f"{nm}_bq"), const(s, f"{nm}_bs"),
                                     const(np.zeros(bias.size, np.int32), f"{nm}_bzp")],
                [dq], name=f"{nm}/bias/DequantizeLinear", axis=0))  # fmt: skip
            conv.input.append(dq)
            t.int8_convs += 1
            t.biased[conv.output[0]] = meta
            return conv.output[0]
    meta["bf_name"] = f"{nm}_b__{len(t.inits)}"
    conv.input.append(const(bias, f"{nm}_b"))
    if precision == "int8":
        t.float_convs.append(nm)
    t.biased[conv.output[0]] = meta
    return conv.output[0]


def _scale_init(t: Translation, name: str | None, r: np.ndarray) -> bool:
    """Multiply initializer ``name`` by ``r`` along its first axis (in place); False when absent."""
    from onnx import numpy_helper

    for i, init in enumerate(t.inits):
        if init.name == name:
            a = numpy_helper.to_array(init).astype(np.float64)
            a = a * r.reshape((-1,) + (1,) * (a.ndim - 1))
            t.inits[i] = numpy_helper.from_array(a.astype(np.float32), name)
            return True
    return False


def _can_rescale(t: Translation, node, x: str, il: np.ndarray) -> dict | None:
    """The meta of the conv whose output channels can absorb a per-channel FakeQuantize's scales, when
    ``x`` is ``Relu(conv + bias)`` read only by this FakeQuantize, the ranges start at 0 and every reader
    of the FakeQuantize is a depthwise GroupConvolution (channel multiplier 1); else None."""
    if np.any(il != 0) or x not in t.relu_src:
        return None
    src, relu_key = t.relu_src[x]
    meta = t.biased.get(src)
    if meta is None or t.uses.get(meta.get("out_key"), 0) != 1 or t.uses.get(relu_key, 0) != 1:
        return None
    if not (meta.get("ws_name") or meta.get("wf_name")) or not (meta.get("bs_name") or meta.get("bf_name")):
        return None
    for target in node.output(0).get_target_inputs():
        g = target.get_node()
        if g.get_type_name() != "GroupConvolution" or target.get_index() != 0:
            return None
        w = g.input_value(1).get_partial_shape()
        if not (w.rank.is_static and w.rank.get_length() == 5 and w[1].is_static and w[1].get_length() == 1
                and w[2].is_static and w[2].get_length() == 1 and w[0].is_static and w[0].get_length() == il.size):
            return None
    return meta


def _fake_quantize(t: Translation, node, nm, ins, attrs, precision, const, emit, where) -> str:
    x, il, ih, ol, oh = ins
    levels = int(attrs.get("levels", 0))
    if not isinstance(x, str) or not all(isinstance(v, np.ndarray) for v in (il, ih, ol, oh)):
        raise ExportError(f"{where}: FakeQuantize {nm!r} needs a tensor input and constant ranges")
    if precision == "fp32":
        t.fq["dropped"] += 1
        return x
    if levels != 256:
        raise ExportError(f"{where}: FakeQuantize {nm!r} has {levels} levels; the int8 build maps 256-level "
                          "FakeQuantize to uint8 QuantizeLinear/DequantizeLinear (build --precision fp32, "
                          "which drops activation FakeQuantize)")  # fmt: skip
    il, ih, ol, oh = (np.asarray(v, np.float64) for v in (il, ih, ol, oh))
    shape = np.broadcast_shapes(il.shape, ih.shape, ol.shape, oh.shape)
    per_tensor = int(np.prod(shape)) == 1
    if not per_tensor and not (len(shape) == 4 and shape[0] == 1 and shape[2] == 1 and shape[3] == 1):
        raise ExportError(f"{where}: FakeQuantize {nm!r} has ranges of shape {shape}; per tensor or per "
                          "channel (1, C, 1, 1) are supported")  # fmt: skip

    def vec(a):
        a = np.broadcast_to(a, shape).astype(np.float64)
        return a.reshape(-1)[0] if per_tensor else a.reshape(-1)

    il, ih, ol, oh = vec(il), vec(ih), vec(ol), vec(oh)
    s_in, s_out = (ih - il) / (levels - 1), (oh - ol) / (levels - 1)
    if np.any(s_in <= 0) or np.any(s_out < 0):
        raise ExportError(f"{where}: FakeQuantize {nm!r} has an empty input range")
    axis = {} if per_tensor else {"axis": 1}
    same = np.allclose(il, ol, rtol=0, atol=0) and np.allclose(ih, oh, rtol=0, atol=0)
    zp = _round_zp(-il / s_in)
    if zp is None and same and t.snap_zero_points:
        # the grid moves by less than half a step (the IR's are 0.01-0.05 of a step): a few values
        # round to the neighbouring level, but the pair is a plain Q/DQ that ONNX Runtime fuses
        zp = np.round(-il / s_in)
        t.fq["snapped"] = t.fq.get("snapped", 0) + 1
        t.fq["snapped_max_shift"] = max(t.fq.get("snapped_max_shift", 0.0), float(np.max(np.abs(zp + il / s_in))))
    meta = None if per_tensor or not same or zp is None else _can_rescale(t, node, x, il)
    if meta is not None:
        # Per-channel ranges [0, h_c] before a depthwise conv: ONNX Runtime fuses only per-tensor
        # activation scales. Relu(conv + bias) is positively homogeneous, so the producing conv's output
        # channels are scaled by r_c = S / s_c (its int8 weights unchanged: only their float scales and
        # the bias move), the tensor is quantised per tensor at S (round(x r_c / S) = round(x / s_c):
        # the same integers), and the depthwise conv's weight scales take 1 / r_c back.
        big = float(np.float32(s_in.max()))
        r = big / s_in
        _scale_init(t, meta.get("ws_name") or meta.get("wf_name"), r)
        _scale_init(t, meta.get("bs_name") or meta.get("bf_name"), r)
        sn, zn = const(np.asarray(np.float32(big)), f"{nm}_s"), const(np.asarray(np.uint8(0)), f"{nm}_zp")
        q = emit("QuantizeLinear", [x, sn, zn], nm)
        out = emit("DequantizeLinear", [q, sn, zn], nm)
        t.qscale[out] = big
        t.chscale[out] = 1.0 / r
        t.fq["qdq"] += 1
        t.rescaled += 1
        return out
    if same and zp is not None and np.all((zp >= 0) & (zp <= 255)):
        sc = np.float32(s_in) if per_tensor else s_in.astype(np.float32)
        z = np.uint8(zp) if per_tensor else zp.astype(np.uint8)
        sn, zn = const(np.asarray(sc), f"{nm}_s"), const(np.asarray(z), f"{nm}_zp")
        q = emit("QuantizeLinear", [x, sn, zn], nm, **axis)
        out = emit("DequantizeLinear", [q, sn, zn], nm, **axis)
        t.fq["qdq" if per_tensor else "qdq_per_channel"] += 1
        if per_tensor:
            t.qscale[out] = float(sc)
        return out
    # exact float form: q = clip(round((x - il) / s_in), 0, 255); y = q * s_out + ol
    def lo(a):
        return np.asarray(np.float32(a)) if per_tensor else a.astype(np.float32).reshape(1, -1, 1, 1)

    shifted = emit("Sub", [x, const(lo(il), f"{nm}_il")], nm)
    sc_in = np.asarray(np.float32(s_in)) if per_tensor else s_in.astype(np.float32)
    sc_out = np.asarray(np.float32(s_out)) if per_tensor else s_out.astype(np.float32)
    z0 = np.asarray(np.uint8(0)) if per_tensor else np.zeros(s_in.size, np.uint8)
    zn = const(z0, f"{nm}_zp")
    q = emit("QuantizeLinear", [shifted, const(sc_in, f"{nm}_s"), zn], nm, **axis)
    d = emit("DequantizeLinear", [q, const(sc_out, f"{nm}_so"), zn], nm, **axis)
    t.fq["float_form"] += 1
    return emit("Add", [d, const(lo(ol), f"{nm}_ol")], nm)


def build_model(t: Translation, precision: str):
    """The ONNX model of a :class:`Translation`: input ``image`` (N, 3, H, W) dynamic, outputs ``heatmaps``
    and ``pafs``, opset 17 and IR version 8."""
    onnx = require("onnx")
    from converters.common import rename_tensors

    rename_tensors(t.nodes, {t.outputs[HEATMAPS]: HEATMAPS, t.outputs[PAFS]: PAFS})
    image = onnx.helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["batch", 3, "height", "width"])
    graph = onnx.helper.make_graph(t.nodes, f"human-pose-estimation ({precision})", [image],
                                   map_outputs(LAYOUT.heatmap_channel_count, LAYOUT.paf_channel_count), t.inits)  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    stamp_versions(model)
    model.producer_name, model.producer_version = "edgepose-converters", __version__
    return model


# --------------------------------------------------------------------------------------------
# Parity against OpenVINO
# --------------------------------------------------------------------------------------------


@dataclass
class ParityReport:
    """ORT on the converted model against OpenVINO on the IR, per size (w, h).

    ``maps_max``: largest |difference| of any heatmap/PAF value; ``kp_max_px``: largest distance of a
    keypoint found by both (original-image pixels); ``kp_within_1px``: share of those within 1 px;
    ``kp_compared``; ``kp_only_one``: keypoints found by one side only; ``people``: (OpenVINO, ORT).
    """

    reference: str
    sizes: dict = field(default_factory=dict)

    def worst(self, k: str) -> float:
        vals = [v[k] for v in self.sizes.values()]
        return (min(vals) if k == "kp_within_1px" else max(vals)) if vals else 0.0

    def summary(self) -> str:
        return "; ".join(
            f"{s}: maps max {v['maps_max']:.2e}, keypoints max {v['kp_max_px']:.2f} px, "
            f"{100 * v['kp_within_1px']:.1f} % of {v['kp_compared']} within 1 px, {v['kp_only_one']} found by one "
            f"side only, people {v['people'][0]}/{v['people'][1]}" for s, v in self.sizes.items())  # fmt: skip


def default_parity_images() -> list[Path]:
    """Real photographs of people (and others) shipped with scikit-image (public domain)."""
    from converters.tfpose import parity_images

    return parity_images()


def _openvino_reference(xml: Path, bin_: Path, bypass_fq: bool):
    ov = require("openvino")
    core = ov.Core()
    model = core.read_model(str(xml), str(bin_))
    if bypass_fq:  # OpenVINO's float reference: the same IR with every FakeQuantize an identity
        for op in model.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize":
                for target in list(op.output(0).get_target_inputs()):
                    target.replace_source_output(op.input_value(0))
    return core, model


def _match_people(a: list, b: list) -> tuple[list[float], int]:
    """Distances of keypoints found in both of two people lists (greedy pairing of people by shared
    keypoints and distance), and how many keypoints one side found and the other did not."""
    dists, only = [], 0
    used = set()
    for pa in a:
        best, best_cost = None, None
        for j, pb in enumerate(b):
            if j in used:
                continue
            both = (pa.keypoints[:, 2] > 0) & (pb.keypoints[:, 2] > 0)
            if not both.any():
                continue
            d = np.hypot(*(pa.keypoints[both, :2] - pb.keypoints[both, :2]).T)
            cost = (-int(both.sum()), float(np.median(d)))
            if best_cost is None or cost < best_cost:
                best, best_cost = j, cost
        if best is None:
            only += int((pa.keypoints[:, 2] > 0).sum())
            continue
        used.add(best)
        pb = b[best]
        va, vb = pa.keypoints[:, 2] > 0, pb.keypoints[:, 2] > 0
        both = va & vb
        dists += np.hypot(*(pa.keypoints[both, :2] - pb.keypoints[both, :2]).T).tolist()
        only += int((va ^ vb).sum())
    for j, pb in enumerate(b):
        if j not in used:
            only += int((pb.keypoints[:, 2] > 0).sum())
    return dists, only


def check_parity(model, xml: Path, bin_: Path, precision: str, images: list[Path],
                 sizes=PARITY_SIZES, threads: int = 2) -> dict[str, ParityReport]:  # fmt: skip
    """Run the converted model (ONNX Runtime, CPU) and the IR (OpenVINO, CPU) on ``images`` resized to
    each size; compare the maps and the keypoints edgepose's decoder finds in both.

    References: ``float``, the IR with its FakeQuantize ops bypassed (OpenVINO's float run of the same
    weights), and for ``int8`` also ``int8``, the IR as published (OpenVINO's own int8 run).

    Returns:
        ``{"build vs float": ..., ["build vs int8": ..., "int8 vs float": ...]}`` (the last one is
        OpenVINO's int8 run against its float run: what quantisation itself changes).
    """
    import cv2

    ort = require("onnxruntime", "cpu")
    from edgepose.decode import DecoderConfig, Workspace
    from edgepose.geometry import Letterbox
    from edgepose.runner import decode_to_image

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    refs = {"float": _openvino_reference(xml, bin_, bypass_fq=True)}
    if precision == "int8":
        refs["int8"] = _openvino_reference(xml, bin_, bypass_fq=False)
    names = {"float": "OpenVINO, the IR with FakeQuantize bypassed (float)", "int8": "OpenVINO, the IR as published (int8)"}
    pairs = [("build", "float")] + ([("build", "int8"), ("int8", "float")] if precision == "int8" else [])
    reports = {f"{a} vs {b}": ParityReport(f"{'ORT ' + precision if a == 'build' else names[a]} vs {names[b]}")
               for a, b in pairs}  # fmt: skip
    pics = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ExportError(f"cannot read the parity image {p}")
        pics.append(img)
    cfg = DecoderConfig()
    from edgepose.geometry import fit_size
    from edgepose.preprocess import resize_for, to_input

    meta = ModelMeta(layout=LAYOUT, stride=STRIDE, channel_order="BGR", scale=1.0, mean=0.0)
    for w, h in sizes:
        acc = {k: {"maps_max": 0.0, "d": [], "only": 0, "people": [0, 0]} for k in reports}
        for img in pics:  # letterboxed into the size's pixel budget, as the runtime does
            ih, iw = img.shape[:2]
            nw, nh_, pw, ph = fit_size(iw, ih, (w, h), STRIDE)
            box = Letterbox((iw, ih), (nw, nh_), (pw, ph))
            x = to_input(resize_for(img, box), box, meta)[None]
            maps = {"build": [np.asarray(a, np.float32) for a in sess.run([HEATMAPS, PAFS], {INPUT: x})]}
            for k, (core, ref) in refs.items():
                ref.reshape({ref.inputs[0]: [1, 3, ph, pw]})
                c = core.compile_model(ref, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
                by_ch = {o.get_partial_shape()[1].get_length(): o for o in c.outputs}
                r = c(x)
                maps[k] = [np.asarray(r[by_ch[LAYOUT.heatmap_channel_count]], np.float32),
                           np.asarray(r[by_ch[LAYOUT.paf_channel_count]], np.float32)]  # fmt: skip
            people = {k: decode_to_image(m[0][0], m[1][0], box, LAYOUT, STRIDE, cfg, Workspace())[0]
                      for k, m in maps.items()}  # fmt: skip
            for a, b in pairs:
                st = acc[f"{a} vs {b}"]
                st["maps_max"] = max(st["maps_max"], *(float(np.abs(u - v).max()) for u, v in zip(maps[a], maps[b])))
                d, o = _match_people(people[b], people[a])
                st["d"] += d
                st["only"] += o
                st["people"][0] += len(people[b])
                st["people"][1] += len(people[a])
        for k, st in acc.items():
            d = np.asarray(st["d"])
            reports[k].sizes[f"{w}x{h}"] = {
                "maps_max": st["maps_max"], "kp_max_px": float(d.max()) if d.size else 0.0,
                "kp_within_1px": float((d <= 1.0).mean()) if d.size else 1.0, "kp_compared": int(d.size),
                "kp_only_one": st["only"], "people": st["people"],
            }  # fmt: skip
    for rep in reports.values():
        log.info("parity %s: %s", rep.reference, rep.summary())
    return reports


def _judge(reports: dict[str, ParityReport], precision: str) -> None:
    """fp32: maps within :data:`FP32_MAP_TOLERANCE` of OpenVINO's float run and every keypoint within
    1 px, the same keypoints found. int8: ORT's int8 run must be as close to OpenVINO's float run as
    OpenVINO's own int8 run is (keypoints within 1 px: at most :data:`INT8_KP_SHARE_MARGIN` fewer;
    maps: at most its largest difference), and within :data:`INT8_MAP_TOLERANCE` of OpenVINO's int8 run."""
    fl = reports["build vs float"]
    if precision == "fp32":
        ok = fl.worst("maps_max") <= FP32_MAP_TOLERANCE and fl.worst("kp_max_px") <= FP32_KEYPOINT_PX \
            and fl.worst("kp_only_one") == 0
        rule = (f"maps within {FP32_MAP_TOLERANCE:g}, every keypoint within {FP32_KEYPOINT_PX:g} px, "
                "the same keypoints found")  # fmt: skip
        bad = fl.summary()
    else:
        own, vs8 = reports["int8 vs float"], reports["build vs int8"]
        ok = (fl.worst("kp_within_1px") >= own.worst("kp_within_1px") - INT8_KP_SHARE_MARGIN
              and fl.worst("maps_max") <= max(own.worst("maps_max"), 1e-3)
              and vs8.worst("maps_max") <= INT8_MAP_TOLERANCE)  # fmt: skip
        rule = ("as close to OpenVINO's float run as OpenVINO's own int8 run (keypoints within 1 px, at most "
                f"{100 * INT8_KP_SHARE_MARGIN:g} points fewer; maps), maps within {INT8_MAP_TOLERANCE:g} of its "
                "int8 run")  # fmt: skip
        bad = f"ORT int8 vs float: {fl.summary()}; OpenVINO int8 vs float: {own.summary()}; ORT vs OpenVINO int8: {vs8.summary()}"
    if not ok:
        raise ExportError(f"parity check failed ({precision}; needs {rule}): {bad}; model not written")


# --------------------------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------------------------


def convert_openvino(
    xml: str | Path,
    out: str | Path,
    *,
    bin_path: str | Path | None = None,
    precision: str = "fp32",
    weight_type: str = "s8",
    zero_points: str = "exact",
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    parity_images: list[str | Path] | None = None,
    parity_sizes=PARITY_SIZES,
    do_simplify: bool = True,
    pad_channels: bool = True,
    threads: int = 2,
) -> Path:
    """Convert an OpenVINO IR of Lightweight OpenPose (OMZ ``human-pose-estimation-0001``) to an
    edgepose model; return ``out``.

    Args:
        xml: the IR's ``.xml``.
        out: where to write the ``.onnx``.
        bin_path: its ``.bin`` (default: next to the ``.xml``, same name).
        precision: ``fp32`` or ``int8`` (:data:`PRECISIONS`).
        weight_type: int8 build: ``s8`` (the IR's int8 weights; u8s8 kernels: fastest on VNNI CPUs and
            arm64) or ``u8`` (the same numbers as uint8 with zero point 128: u8u8 kernels, exact on x86
            CPUs without VNNI, where u8s8 saturates).
        zero_points: int8 build: ``exact`` (a FakeQuantize whose zero point is not an integer becomes the
            exact float form, which runs in float) or ``nearest`` (its zero point rounded: a Q/DQ pair
            that ONNX Runtime fuses into int8 convs; the grid moves by a few hundredths of a step).
        input_size: preferred ``(w, h)`` written into the metadata.
        parity_images: real pictures for the parity check (default: scikit-image's photographs).
        parity_sizes: the ``(w, h)`` sizes both run at.
        do_simplify: fp32: run onnxsim (never on int8: it folds DequantizeLinear of weights).
        pad_channels: fp32: pad the stage-2 concat's inputs for ONNX Runtime's NCHWc kernels.
        threads: CPU threads for the parity runs.

    Raises:
        ExportError: bad files, an unsupported op, a non-pose IR, or a failed parity check; nothing is
            written then.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if weight_type not in ("s8", "u8"):
        raise ExportError(f"--weight-type must be s8 or u8, not {weight_type!r}")
    if weight_type != "s8" and precision != "int8":
        raise ExportError("--weight-type applies to --precision int8 only")
    if zero_points not in ("exact", "nearest"):
        raise ExportError(f"--zero-points must be exact or nearest, not {zero_points!r}")
    if zero_points != "exact" and precision != "int8":
        raise ExportError("--zero-points applies to --precision int8 only")
    xml = Path(xml)
    bin_ = Path(bin_path) if bin_path else xml.with_suffix(".bin")
    out = check_writable(Path(out))
    onnx = require("onnx")
    with step("check IR files"):
        info = check_ir_files(xml, bin_)
    log.info("%s: IR v%s, %d constants, %.1f MB of weights", xml.name, info["version"], info["consts"], info["bytes"] / 1e6)
    with step("read IR (openvino)"):
        ir = read_ir(xml, bin_)
    with step(f"translate ({precision})"):
        t = translate(ir, precision, where=xml.name, snap_zero_points=zero_points == "nearest")
        model = build_model(t, precision)
    if precision == "int8" and not t.counts.get("FakeQuantize"):
        raise ExportError(f"{xml.name} has no FakeQuantize: it holds no int8 ranges to build --precision int8 from; "
                          "use the FP16-INT8 IR (omz_downloader --precisions FP16-INT8) or --precision fp32")  # fmt: skip
    ops = ", ".join(f"{k} {v}" for k, v in sorted(t.counts.items()))
    log.info("IR ops: %s", ops)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError
        raise ExportError(f"the translated model is not valid ONNX: {e}") from e
    padding = "none"
    extra: dict[str, str] = {}
    if precision == "fp32":
        if do_simplify:
            with step("onnxsim"):
                model = simplify(model)
        if pad_channels:
            model, padding = pad_for_nchwc(model)
    else:
        u8 = []
        if weight_type == "u8":
            from converters.variants import weights_to_u8

            u8 = weights_to_u8(model)
        from converters.variants import INT8_KERNELS

        fq = t.fq
        extra = {
            "quant_format": "QDQ",
            "quant_source": "the IR's FakeQuantize ranges and int8 weights (Open Model Zoo's calibration)",
            "quant_weights": ("uint8 (zero point 128) per-channel" if weight_type == "u8"
                              else "int8 symmetric per-channel"),  # fmt: skip
            "quant_u8_weight_convs": json.dumps(u8),
            "quant_activations": "uint8 asymmetric per-tensor"
            + (f" ({fq['qdq_per_channel']} per-channel)" if fq["qdq_per_channel"] else ""),
            "quant_kernels": INT8_KERNELS["u8", weight_type, False],
            "quant_fake_quantize": json.dumps(fq),
            "quant_zero_points": zero_points,
            "quant_int8_convs": str(t.int8_convs),
            "float_nodes": json.dumps(t.float_convs),
        }
        fused, total = ort_fused_convs(model)
        extra["quant_ort_fused_convs"] = f"{fused} of {total} convs run as QLinearConv (onnxruntime {_ort_version()})"
        log.info("int8: ONNX Runtime runs %d of the %d convs as QLinearConv", fused, total)
        log.info("int8: FakeQuantize -> %d exact Q/DQ pairs per tensor (%d of them per-channel ranges rescaled into "
                 "the conv before), %d per channel, %d in the exact float form (zero point not an integer); %d convs "
                 "with int8 inputs, weights and int32 bias, %d float", fq["qdq"], t.rescaled, fq["qdq_per_channel"],
                 fq["float_form"], t.int8_convs, len(t.float_convs))  # fmt: skip
    stamp_versions(model)
    model.graph.ClearField("doc_string")
    meta = ModelMeta(layout=LAYOUT, stride=STRIDE, channel_order="BGR", scale=1.0, mean=0.0,
                     input_size=tuple(input_size), variant=precision, source_sha256=sha256_file(bin_))  # fmt: skip
    extra.update({
        "source_name": xml.name, "source_format": f"openvino-ir v{info['version']}", "source_xml_sha256": sha256_file(xml),
        "source_outputs": json.dumps({HEATMAPS: _ir_output(ir, LAYOUT.heatmap_channel_count),
                                      PAFS: _ir_output(ir, LAYOUT.paf_channel_count)}),
        "input_normalisation": "in the graph (the IR's own Multiply/Add): feed BGR pixels 0..255",
        "channel_padding": padding, "heatmaps_background": "network",
    })  # fmt: skip
    set_metadata(model, meta, **extra)
    images = [Path(p) for p in (parity_images if parity_images else default_parity_images())]
    if len(images) < 2:
        raise ExportError("the parity check needs at least two real pictures: pass --parity-images "
                          "(or install scikit-image: pip install 'edgepose[demo]')")  # fmt: skip
    with step(f"parity vs OpenVINO ({precision})"):
        reports = check_parity(model, xml, bin_, precision, images, parity_sizes, threads)
    for rep in reports.values():
        print(f"parity {rep.reference}: {rep.summary()}")
    _judge(reports, precision)
    model.metadata_props.add(key="parity_openvino", value=json.dumps(
        {"images": [p.name for p in images], **{k: {"reference": r.reference, "sizes": r.sizes} for k, r in reports.items()}}))  # fmt: skip
    with step("write"):
        save_atomic(model, out)
    return out


def _ort_version() -> str:
    return require("onnxruntime", "cpu").__version__


def ort_fused_convs(model) -> tuple[int, int]:
    """How many convs ONNX Runtime's CPU provider runs with int8 kernels (``QLinearConv`` in its optimized
    graph), and how many convs the model has."""
    import tempfile

    onnx = require("onnx")
    ort = require("onnxruntime", "cpu")
    total = sum(n.op_type == "Conv" for n in model.graph.node)
    with tempfile.TemporaryDirectory(prefix="edgepose-ort-") as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(Path(tmp, "optimized.onnx"))
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        fused = sum(n.op_type == "QLinearConv" for n in onnx.load(so.optimized_model_filepath).graph.node)
    return fused, total


def _ir_output(ir, channels: int) -> str:
    for o in ir.outputs:
        s = o.get_partial_shape()
        if s.rank.is_static and s.rank.get_length() == 4 and s[1].is_static and s[1].get_length() == channels:
            return o.get_any_name()
    return "?"


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--xml", type=Path, required=True, help="the IR's .xml (e.g. human-pose-estimation-0001.xml)")
    p.add_argument("--bin", type=Path, help="the IR's .bin (default: next to the .xml, same name)")
    p.add_argument("--out", type=Path, required=True, help="where to write the edgepose .onnx model")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32",
                   help="; ".join(f"{k}: {v}" for k, v in PRECISIONS.items()) + " (default %(default)s)")  # fmt: skip
    p.add_argument("--weight-type", choices=("s8", "u8"), default="s8",
                   help="int8: s8 keeps the IR's int8 weights (u8s8 kernels: VNNI CPUs, arm64); u8 stores them as "
                        "uint8 with zero point 128 (u8u8: exact on x86 without VNNI) (default %(default)s)")  # fmt: skip
    p.add_argument("--zero-points", choices=("exact", "nearest"), default="exact",
                   help="int8: a FakeQuantize whose zero point is not an integer becomes the exact float form "
                        "(exact) or a Q/DQ pair with the zero point rounded, fused by ONNX Runtime (nearest: faster, "
                        "a few hundredths of a step off) (default %(default)s)")
    p.add_argument("--preferred-size", type=size_arg, default=DEFAULT_INPUT_SIZE, metavar="WxH",
                   help="preferred input size for the metadata (default %(default)s)")
    p.add_argument("--parity-images", nargs="+", type=Path, metavar="IMAGE",
                   help="real pictures for the parity check against OpenVINO (default: scikit-image's photographs)")
    p.add_argument("--no-simplify", action="store_true", help="fp32: skip onnxsim")
    p.add_argument("--no-pad-channels", action="store_true", help="fp32: keep the stage-2 concat's channel counts")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the parity runs (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    out = convert_openvino(args.xml, args.out, bin_path=args.bin, precision=args.precision,
                           weight_type=args.weight_type, zero_points=args.zero_points, input_size=args.preferred_size,
                           parity_images=args.parity_images, do_simplify=not args.no_simplify,
                           pad_channels=not args.no_pad_channels, threads=args.threads)  # fmt: skip
    print(f"model: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m converters.openvino --xml X.xml --out M.onnx``; exit 2 on an export error."""
    return cli_main("edgepose convert openvino", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
