"""Bring your own OpenPose-style ONNX model: any graph with part heatmaps and PAFs -> an edgepose model.

``edgepose convert onnx --model IN.onnx --out M.onnx --layout coco18|mpi15|body25|FILE --heatmaps NAME
--pafs NAME`` or a preset for a known exporter (``--from lwopenpose``, ``--from trt_pose --topology
human_pose.json``). Steps (each timed by :func:`converters.common.step`):

1. load the graph; find its one image input (4-D, 3 channels, NCHW or NHWC) and the two chosen
   tensors; keep only the nodes they need (a multi-stage network exports every stage's maps); read
   its precision (fp32, fp16, int8 with its quantisation) and any normalisation it does itself before
   its first Conv (then a preset's normalisation gives way to raw pixels); print the normalisation
   that will be baked in and where each value came from;
2. probe: run that pruned source once under ONNX Runtime to learn the maps' shapes: NCHW or NHWC,
   channel counts against the layout (a heatmap tensor of exactly ``parts`` channels has no
   background channel), the stride (input size / map size);
3. rebuild the ends: one input ``image`` (N, 3, H, W) with dynamic N/H/W; an NHWC input gets a
   Transpose; a per-channel normalisation (trt_pose's ImageNet mean/std) is folded into the graph as
   a first ``Sub``/``Mul`` so that the metadata contract stays scalar (``input_mean`` 0, ``input_scale``
   1: the runtime feeds raw pixels); NHWC maps get a Transpose; a missing background channel is
   appended as ``clip(1 - max over parts, 0, 1)``; outputs are named ``heatmaps`` and ``pafs``;
4. opset 17 (onnx's version converter), onnxsim (not for a quantised source: its folds change the
   int8 rounding), channel padding (:mod:`converters.graph`), the metadata contract (a layout from a
   topology file travels as data: names, limbs, PAF channels; the variant and ``quant_*`` read from
   the graph);
5. parity: the result and the source on the same pixels under ONNX Runtime, maps within the
   tolerance (:data:`TOLERANCES`: 1e-4 absolute for fp32 sources, more for fp16/int8), at the probe
   size and at a second size (which also proves H/W are dynamic); nothing is written when it fails;
6. the result finds someone in a picture with people (parity cannot see a wrong normalisation);
7. write atomically.

PRESETS is the table of known exporters and what they fix; every preset value can be overridden by
the matching option except the ones listed in ``fixed``.

Example:
    $ edgepose convert onnx --from lwopenpose --model human-pose-estimation.onnx --out models/lwopenpose.onnx
    $ edgepose convert onnx --from trt_pose --topology human_pose.json --model resnet18.onnx --out models/trt.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters import __version__
from converters.common import (
    OPSET,
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
from edgepose.layouts import COCO17_NAMES, LAYOUTS, Layout
from edgepose.meta import HEATMAPS, INPUT, PAFS, ModelMeta

log = logging.getLogger(__name__)

__all__ = ["PRESETS", "Preset", "convert_onnx", "load_topology", "add_arguments", "run", "main"]

BUILTIN = ("coco18", "mpi15", "body25")


@dataclass(frozen=True)
class Preset:
    """What a known exporter fixes: output names, layout, input normalisation, size and stride.

    ``mean``/``scale`` have one value (all channels) or three (per channel, in the network's channel
    order): the network input is ``(pixel - mean) * scale``.
    """

    heatmaps: str
    pafs: str
    layout: str | None  # None: needs --topology
    channel_order: str
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    input_size: tuple[int, int]
    stride: int
    source: str


PRESETS: dict[str, Preset] = {
    # Lightweight OpenPose (Daniil-Osokin/lightweight-human-pose-estimation.pytorch): its
    # scripts/convert_to_onnx.py exports input `data` (1,3,256,456) and two outputs per refinement
    # stage; the last stage is the one its demo decodes. BGR, (x - 128) / 256; 18 parts + background
    # in CMU's COCO order, its BODY_PARTS_PAF_IDS are CMU's COCO-18 PAF channels.
    "lwopenpose": Preset("stage_1_output_1_heatmaps", "stage_1_output_0_pafs", "coco18", "BGR",
                         (128.0,), (1 / 256,), (456, 256), 8, "Lightweight OpenPose (scripts/convert_to_onnx.py)"),
    # trt_pose (NVIDIA-AI-IOT/trt_pose): outputs `cmap` (parts, no background) and `paf`; RGB in
    # 0..1 normalised with ImageNet's per-channel mean/std; the topology JSON (COCO category:
    # keypoints, 1-based skeleton) fixes parts and limbs; limb k's PAF is channels 2k (y) and 2k+1 (x).
    "trt_pose": Preset("cmap", "paf", None, "RGB", (123.675, 116.28, 103.53), (1 / 58.395, 1 / 57.12, 1 / 57.375),
                       (224, 224), 4, "trt_pose (torch.onnx export of a trt_pose model)"),
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Layouts: built-in ids, edgepose layout JSON, trt_pose topology JSON
# --------------------------------------------------------------------------------------------


def _coco17_map(names: tuple[str, ...]) -> tuple[int, ...] | None:
    """COCO-17 mapping by name (``left_shoulder``, ``LShoulder``, ``l_shoulder``); None if no name matches."""

    def key(n: str) -> str:
        n = n.lower().replace("_", "").replace("-", "")
        for word, letter in (("left", "l"), ("right", "r")):
            if n.startswith(word):
                n = letter + n[len(word):]
        return n

    index = {key(n): i for i, n in enumerate(names)}
    out = tuple(index.get(key(n), -1) for n in COCO17_NAMES)
    return out if any(i >= 0 for i in out) else None


def load_topology(path: str | Path, layout_id: str | None = None) -> Layout:
    """A layout from a JSON file: trt_pose's topology or an edgepose layout.

    trt_pose's form is a COCO category, ``{"keypoints": [names], "skeleton": [[a, b], ...]}`` with
    1-based part numbers; limb ``k``'s PAF is in channels ``2k`` (the y component) and ``2k + 1`` (x),
    as trt_pose's ``coco_category_to_topology`` and ``generate_paf`` define it. edgepose's form is
    :meth:`edgepose.layouts.Layout.to_dict`: ``{"names", "limbs" (0-based), "paf_channels" ((cx, cy)
    per limb), optionally "mirror" (each part's left/right twin)}``. Left/right pairs found from the
    names (or given) are stored in the layout, so the model's metadata carries them.

    Raises:
        ExportError: the file is missing, is not JSON, or is neither form, or refers to unknown parts.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise ExportError(f"cannot read the topology file {path}: {e.strerror}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise ExportError(f"the topology file {path} is not valid JSON: {e}") from e
    lid = layout_id or re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem) or "custom"
    if lid in LAYOUTS:
        lid = f"custom-{lid}"
    try:
        if isinstance(doc, dict) and "keypoints" in doc and "skeleton" in doc:
            names = tuple(str(n) for n in doc["keypoints"])
            skel = [(int(a), int(b)) for a, b in doc["skeleton"]]
            bad = [(a, b) for a, b in skel if not (1 <= a <= len(names) and 1 <= b <= len(names))]
            if bad:
                raise ExportError(f"the topology file {path} refers to unknown parts: skeleton pairs {bad} "
                                  f"(1-based) but there are {len(names)} keypoints")  # fmt: skip
            limbs = tuple((a - 1, b - 1) for a, b in skel)
            pafs = tuple((2 * k + 1, 2 * k) for k in range(len(limbs)))  # (x, y): trt_pose puts y first
            lay = Layout(lid, names, limbs, pafs, _coco17_map(names))
            fmt = "trt_pose"
        elif isinstance(doc, dict) and "names" in doc and "limbs" in doc:
            d = dict(doc, id=doc.get("id") if doc.get("id") and not layout_id else lid)
            if not d.get("paf_channels"):
                d["paf_channels"] = [[2 * k, 2 * k + 1] for k in range(len(d["limbs"]))]
            n = len(d["names"])
            bad = [ab for ab in d["limbs"] if not all(isinstance(i, int) and 0 <= i < n for i in ab)]
            if bad:
                raise ExportError(f"the topology file {path} refers to unknown parts: limbs {bad} (0-based) "
                                  f"but there are {n} names")  # fmt: skip
            if "to_coco17" not in d:
                d["to_coco17"] = _coco17_map(tuple(d["names"]))
            lay = Layout.from_dict(d)
            fmt = "edgepose"
        else:
            raise ExportError(
                f"the topology file {path} is neither trt_pose's form ({{'keypoints': [...], 'skeleton': "
                "[[a, b], ...]}}, 1-based) nor an edgepose layout ({'names', 'limbs', 'paf_channels'})"
            )
    except ExportError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        raise ExportError(f"the topology file {path} does not parse as a layout: {e}") from e
    if len(set(lay.names)) != len(lay.names):
        raise ExportError(f"the topology file {path} names a part twice: {sorted(lay.names)}")
    try:  # the left/right pairs travel as data (metadata ``mirror_parts``), not only as name conventions
        lay.mirror_limbs()
        lay = dataclasses.replace(lay, mirror=lay.mirror_parts())
    except ValueError as e:
        log.warning("%s: %s (flip averaging will not be available for this model)", path, e)
    log.info("topology %s (%s form): %d parts, %d limbs", path.name, fmt, lay.num_parts, lay.num_limbs)
    return lay


def resolve_layout(layout: str | Layout | None, topology: str | Path | None) -> Layout:
    if isinstance(layout, Layout):
        return layout
    if topology is not None:
        return load_topology(topology)
    if layout is None:
        raise ExportError("no layout: pass --layout coco18|mpi15|body25|FILE (or --topology FILE)")
    if layout in LAYOUTS:
        if not LAYOUTS[layout].paf_channels:
            raise ExportError(f"layout {layout} has no PAFs; choose one of {', '.join(BUILTIN)} or a topology file")
        return LAYOUTS[layout]
    if Path(layout).suffix.lower() == ".json" or Path(layout).exists():
        return load_topology(layout)
    raise ExportError(f"unknown layout {layout!r}: choose {', '.join(BUILTIN)} or give a topology JSON file")


# --------------------------------------------------------------------------------------------
# Graph surgery
# --------------------------------------------------------------------------------------------


def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim]


def _image_input(model, where: str):
    """The graph's one non-initializer input, checked to be 4-D with 3 channels; ``(vi, "NCHW"|"NHWC")``."""
    inits = {t.name for t in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise ExportError(f"{where} has {len(ins)} inputs ({[i.name for i in ins]}); expected one image input")
    vi = ins[0]
    dims = _dims(vi)
    if len(dims) != 4:
        raise ExportError(f"{where}: input {vi.name!r} has shape {dims}; expected a 4-D image (N, 3, H, W) or (N, H, W, 3)")
    if dims[1] == 3:
        return vi, "NCHW"
    if dims[3] == 3:
        return vi, "NHWC"
    if dims[1] is None and dims[3] is None:  # unknown channels: assume the usual NCHW
        return vi, "NCHW"
    raise ExportError(f"{where}: input {vi.name!r} has shape {dims}; expected 3 colour channels (N, 3, H, W) or (N, H, W, 3)")


def prune(model, outputs: list[str], where: str):
    """Make ``outputs`` the graph's outputs and drop every node, initializer and value_info they do not need.

    Raises:
        ExportError: a name is not a tensor of the graph.
    """
    onnx = require("onnx")
    g = model.graph
    produced = {o: n for n in g.node for o in n.output}
    known = set(produced) | {i.name for i in g.input}
    missing = [o for o in outputs if o not in known]
    if missing:
        listed = ", ".join(o.name for o in g.output)
        raise ExportError(f"{where} has no tensor named {', '.join(map(repr, missing))}; its outputs are: {listed} "
                          "(any intermediate tensor name works too)")  # fmt: skip
    before = len(g.node)
    need, stack, keep = set(), list(outputs), set()
    while stack:
        t = stack.pop()
        if t in need:
            continue
        need.add(t)
        n = produced.get(t)
        if n is not None and id(n) not in keep:
            keep.add(id(n))
            stack.extend(i for i in n.input if i)
            for a in n.attribute:  # subgraphs (If/Loop) read outer tensors too
                if a.type == a.GRAPH:
                    stack.extend(i for sn in a.g.node for i in sn.input if i)
    old = {o.name: o for o in g.output}
    try:  # intermediate tensors chosen as outputs need a type: take it from shape inference
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    except Exception:  # inference is best effort here; the probe run checks the shapes
        inferred = []
    nodes = [n for n in g.node if id(n) in keep]
    del g.node[:]
    g.node.extend(nodes)
    for coll in (g.initializer,):
        kept = [t for t in coll if t.name in need]
        del coll[:]
        coll.extend(kept)
    inits = {t.name for t in g.initializer}
    kept_in = [i for i in g.input if i.name in need or i.name in inits]
    del g.input[:]
    g.input.extend(kept_in)
    vis = {vi.name: vi for vi in [*inferred, *g.value_info]}
    del g.output[:]
    for o in outputs:
        src = old.get(o) or vis.get(o)
        if src is None or not src.type.tensor_type.HasField("shape"):  # rank unknown: maps are 4-D
            src = onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, ["d0", "d1", "d2", "d3"])
        g.output.append(src)
    return model, before - len(nodes)


def _session(model_or_bytes):
    ort = require("onnxruntime", "cpu")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------
# What the source graph says about itself: precision, quantisation, built-in normalisation
# --------------------------------------------------------------------------------------------

#: parity tolerance per source precision (largest absolute map difference, maps are about 0..1).
#: fp32: the conversion only rewrites the ends, onnxsim's folds change the last bits (measured < 1e-6).
#: fp16: one float16 step near 1 is 1e-3; a fold done in float32 then rounded can move a few steps.
#: int8: one uint8 step of a 0..1 activation is 0.004; a bias Add folded into a quantised Conv moved
#: Lightweight OpenPose's maps by 0.0225 (issue 26). The converter does not fold across Q/DQ (onnxsim is
#: skipped for quantised sources), so the measured difference is 0; the tolerance only bounds what the
#: opset conversion and the channel padding could change.
TOLERANCES: dict[str, float] = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}

#: operators that make a graph a quantised (int8) one
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "ConvInteger",
                       "QLinearMatMul", "MatMulInteger", "QLinearAdd", "QLinearMul", "QGemm"})  # fmt: skip

_NORM_OPS = ("Sub", "Mul", "Add", "Div")
_PASS_OPS = ("Identity", "Cast", "Transpose")
_CONV_OPS = ("Conv", "QLinearConv", "ConvInteger")


def _constants(model) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph: initializers, ``Constant`` outputs and ``DequantizeLinear`` of
    an initializer (a quantised constant), as float arrays where they are small (scalars, per channel)."""
    from onnx import numpy_helper

    g = model.graph
    out = {t.name: numpy_helper.to_array(t) for t in g.initializer if np.prod(t.dims, dtype=np.int64) <= 64}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in out and n.input[1] in out:
            x = out[n.input[0]].astype(np.float64)
            zp = out[n.input[2]].astype(np.float64) if len(n.input) > 2 and n.input[2] in out else 0.0
            sc = out[n.input[1]].astype(np.float64)
            if np.ndim(sc) == 0 or np.size(sc) == np.size(x):
                out[n.output[0]] = (x - zp) * sc
    return out


def builtin_normalisation(model, input_name: str) -> list[str]:
    """The arithmetic a graph does on its image input before its first convolution.

    Follows the input through ``Sub``/``Mul``/``Add``/``Div`` by constants (also quantised constants and
    through ``QuantizeLinear -> DequantizeLinear``, ``Transpose``, ``Cast``) and a ``BatchNormalization``,
    while each tensor has one reader, and keeps what it saw only when the chain ends at a ``Conv``.

    Returns:
        one line per step (``["Sub 128", "Mul 0.00390625"]``); empty when the input goes straight into a
        convolution (or its normalisation is folded into the weights: that cannot be seen).
    """
    g = model.graph
    readers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    consts = _constants(model)
    cur, steps = input_name, []
    for _ in range(16):
        users = readers.get(cur, [])
        if len(users) != 1:
            return []
        n = users[0]
        if n.op_type in _CONV_OPS:
            return steps
        if n.op_type in _NORM_OPS and len(n.input) == 2:
            other = n.input[1] if n.input[0] == cur else n.input[0]
            if other not in consts:
                return []
            v = np.asarray(consts[other], np.float64).ravel()
            vals = f"{v[0]:.6g}" if np.allclose(v, v[0]) else "(" + ", ".join(f"{x:.6g}" for x in v) + ")"
            steps.append(f"{n.op_type} {vals}" if n.input[0] == cur else f"{vals} {n.op_type} x")
        elif n.op_type == "BatchNormalization":
            steps.append("BatchNormalization")
        elif n.op_type == "QuantizeLinear":
            nxt = readers.get(n.output[0], [])
            if len(nxt) != 1 or nxt[0].op_type != "DequantizeLinear":
                return steps if nxt and all(u.op_type in _CONV_OPS for u in nxt) else []
            n = nxt[0]
        elif n.op_type not in _PASS_OPS:
            return []
        cur = n.output[0]
    return []


def _dtype_name(data_type: int) -> str:
    from onnx import TensorProto

    return {TensorProto.UINT8: "uint8", TensorProto.INT8: "int8"}.get(data_type, TensorProto.DataType.Name(data_type).lower())


def source_precision(model) -> tuple[str, dict[str, str]]:
    """``("int8" | "fp16" | "fp32", metadata)`` read from the graph's operators and tensor types.

    int8: any quantisation operator (QDQ ``QuantizeLinear``/``DequantizeLinear``, ``QLinearConv``,
    ``ConvInteger`` ...). The metadata then has what edgepose's own int8 variants record
    (:func:`converters.variants.build_int8`) so that the runtime treats the model the same way (its
    u8s8-on-x86-without-VNNI warning reads ``quant_activations`` and ``quant_weights``):
    ``quant_format``, ``quant_activations`` (``uint8 asymmetric per-tensor`` ...), ``quant_weights``
    (``int8 symmetric per-channel``, ``uint8 (zero point 128) ...``, with ``(7-bit, reduce_range)`` when
    every int8 weight is within +-64), ``quant_u8_weight_convs``, ``quant_kernels``; fp16: a float16
    initializer or a ``Cast`` to float16.
    """
    from onnx import TensorProto, numpy_helper

    g = model.graph
    ops = {n.op_type for n in g.node}
    quant = sorted(ops & QUANT_OPS)
    if not quant:
        f16 = any(t.data_type == TensorProto.FLOAT16 for t in g.initializer) or any(
            n.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in n.attribute) for n in g.node
        )
        return ("fp16", {"source_precision": "fp16 (float16 tensors in the source graph)"}) if f16 else ("fp32", {})
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)

    def arr(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    acts: set[str] = set()  # activation types
    weights: list[tuple[str, str, np.ndarray, np.ndarray | None, int]] = []  # (conv, type, values, zero points, scales)

    def act(zp_name: str | None):
        acts.add(_dtype_name(inits[zp_name].data_type) if zp_name and zp_name in inits else "uint8")

    def weight(conv: str, w: str, zp: str | None, scale: str | None):
        t = inits[w]
        if t.data_type not in (TensorProto.INT8, TensorProto.UINT8):
            return  # int32 biases
        s = arr(scale) if scale else None
        weights.append((conv, _dtype_name(t.data_type), arr(w), arr(zp) if zp else None, 1 if s is None else int(np.size(s))))

    for n in g.node:
        ins = list(n.input) + [""] * 9
        if n.op_type == "QuantizeLinear":
            act(ins[2] or None)
        elif n.op_type == "DequantizeLinear" and ins[0] in inits:
            conv = next((c.name for c in consumers.get(n.output[0], []) if c.op_type in ("Conv", "Gemm", "MatMul")), "")
            weight(conv or n.name, ins[0], ins[2] or None, ins[1])
        elif n.op_type == "QLinearConv":
            act(ins[2] or None)
            if ins[3] in inits:
                weight(n.name, ins[3], ins[5] or None, ins[4])
        elif n.op_type == "ConvInteger":
            act(ins[2] or None)
            if ins[1] in inits:
                weight(n.name, ins[1], ins[3] or None, None)
    qlinear = [o for o in quant if o.startswith("QLinear") or o == "QGemm"]
    integer = [o for o in quant if o.endswith("Integer")]
    fmt = ("QOperator (" + ", ".join(qlinear) + ")" if qlinear else
           "integer ops (" + ", ".join(integer) + ")" if integer else "QDQ")  # fmt: skip
    a = "uint8" if acts <= {"uint8"} else "int8" if acts == {"int8"} else "mixed"
    props = {"quant_format": fmt, "quant_source": "read from the source graph by edgepose convert onnx",
             "quant_ops": json.dumps(quant)}  # fmt: skip
    props["quant_activations"] = {"uint8": "uint8 asymmetric", "int8": "int8", "mixed": "uint8 and int8"}[a] + " per-tensor"
    s8 = [w for w in weights if w[1] == "int8"]
    u8 = [w for w in weights if w[1] == "uint8"]
    per_channel = " per-channel" if any(w[4] > 1 for w in weights) else " per-tensor"
    seven_bit = bool(s8) and all(int(np.abs(w[2].astype(np.int32)).max(initial=0)) <= 64 for w in s8)
    s8_text = "int8 " + ("symmetric" if all(w[3] is None or not np.any(w[3]) for w in s8) else "asymmetric")
    u8_text = "uint8 " + ("(zero point 128)" if all(w[3] is not None and np.all(w[3] == 128) for w in u8) else "asymmetric")
    if s8 and u8:
        wt, props["quant_weights"] = "mixed", f"{u8_text} in {len(u8)} convs, {s8_text} elsewhere"
    elif u8:
        wt, props["quant_weights"] = "u8", u8_text
    else:
        wt, props["quant_weights"] = "s8", s8_text
    props["quant_weights"] += per_channel + (" (7-bit, reduce_range)" if seven_bit else "")
    props["quant_u8_weight_convs"] = json.dumps([w[0] for w in u8] if s8 else [])
    from converters.variants import INT8_KERNELS

    kernels = INT8_KERNELS.get(("u8" if a == "uint8" else "s8", wt, seven_bit))
    if kernels and a != "mixed":
        props["quant_kernels"] = kernels
    return "int8", props


def _pixels(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Deterministic (1, 3, h, w) float32 pixels 0..255: smooth gradients, a disc and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255])
    img[:, (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 4) ** 2] = np.array([40, 200, 90], np.float32)[:, None]
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.float32)[None]


def _normalise(x: np.ndarray, mean: tuple[float, ...], scale: tuple[float, ...]) -> np.ndarray:
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(scale, np.float32).reshape(1, -1, 1, 1)
    return ((x - m) * s).astype(np.float32)


@dataclass(frozen=True)
class Probe:
    """What one run of the pruned source says about its maps."""

    hm_layout: str  # NCHW | NHWC
    paf_layout: str
    background: bool  # the heatmaps carry a background channel
    stride: int
    size: tuple[int, int]  # (w, h) the probe ran at


def probe_maps(model, in_vi, in_layout: str, names: tuple[str, str], layout: Layout, size: tuple[int, int],
               mean, scale, where: str) -> Probe:  # fmt: skip
    """Run the pruned source once; check the maps' shapes against ``layout``.

    Raises:
        ExportError: the source does not run at ``size``, maps are not 4-D, or channel counts do not match.
    """
    w, h = size
    x = _normalise(_pixels(w, h), mean, scale)
    feed = x if in_layout == "NCHW" else x.transpose(0, 2, 3, 1)
    try:
        sess = _session(model)
        hm, paf = sess.run(list(names), {in_vi.name: np.ascontiguousarray(feed)})
    except Exception as e:  # onnxruntime's own exception types
        raise ExportError(f"{where} does not run under ONNX Runtime at {w}x{h}: {e}") from e
    p, pc = layout.num_parts, layout.paf_channel_count
    found = {}
    for what, arr, want in (("heatmaps", hm, (p + 1, p)), ("pafs", paf, (pc,))):
        if arr.ndim != 4:
            raise ExportError(f"{where}: {what} output {names[what == 'pafs']!r} has shape {arr.shape}; expected 4-D maps")
        for lay_, c in (("NCHW", arr.shape[1]), ("NHWC", arr.shape[3])):
            if c in want:
                found[what] = (lay_, c)
                break
        else:
            need = f"{p + 1} (parts + background) or {p} (parts)" if what == "heatmaps" else f"{pc} (2 x {layout.num_limbs} limbs)"
            raise ExportError(f"{where}: {what} output {names[what == 'pafs']!r} has shape {tuple(arr.shape)} but layout "
                              f"{layout.id} needs {need} channels (on axis 1 for NCHW or 3 for NHWC)")  # fmt: skip
    hm_l, hm_c = found["heatmaps"]
    paf_l, _ = found["pafs"]
    mh = hm.shape[2] if hm_l == "NCHW" else hm.shape[1]
    ph = paf.shape[2] if paf_l == "NCHW" else paf.shape[1]
    if mh != ph:
        raise ExportError(f"{where}: heatmaps ({mh} rows) and PAFs ({ph} rows) have different resolutions")
    stride = max(1, round(h / mh))
    return Probe(hm_l, paf_l, hm_c == p + 1, stride, size)


def rebuild(model, in_vi, in_layout: str, names: tuple[str, str], probe: Probe, layout: Layout,
            fold: tuple[tuple[float, ...], tuple[float, ...]] | None, opset: int):  # fmt: skip
    """New ends for the pruned graph: input ``image`` (N,3,H,W) dynamic, outputs ``heatmaps``/``pafs`` NCHW."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    src_in = in_vi.name
    internal = f"{src_in}__source_input"
    for n in g.node:
        for i, t in enumerate(n.input):
            if t == src_in:
                n.input[i] = internal
    head = []
    cur = INPUT
    if fold is not None:
        m = np.asarray(fold[0], np.float32).reshape(1, -1, 1, 1)
        s = np.asarray(fold[1], np.float32).reshape(1, -1, 1, 1)
        g.initializer.extend([numpy_helper.from_array(m, "edgepose_input_mean"),
                              numpy_helper.from_array(s, "edgepose_input_scale")])  # fmt: skip
        head += [helper.make_node("Sub", [cur, "edgepose_input_mean"], ["edgepose_centred"], name="edgepose_mean"),
                 helper.make_node("Mul", ["edgepose_centred", "edgepose_input_scale"], ["edgepose_normalised"],
                                  name="edgepose_scale")]  # fmt: skip
        cur = "edgepose_normalised"
    if in_layout == "NHWC":
        head.append(helper.make_node("Transpose", [cur], ["edgepose_nhwc"], perm=[0, 2, 3, 1], name="edgepose_to_nhwc"))
        cur = "edgepose_nhwc"
    head.append(helper.make_node("Identity", [cur], [internal], name="edgepose_input"))
    tail = []
    hm_t, paf_t = names
    if probe.hm_layout == "NHWC":
        tail.append(helper.make_node("Transpose", [hm_t], ["edgepose_hm_nchw"], perm=[0, 3, 1, 2], name="edgepose_hm_nchw"))
        hm_t = "edgepose_hm_nchw"
    if probe.paf_layout == "NHWC":
        tail.append(helper.make_node("Transpose", [paf_t], ["edgepose_paf_nchw"], perm=[0, 3, 1, 2],
                                     name="edgepose_paf_nchw"))  # fmt: skip
        paf_t = "edgepose_paf_nchw"
    if not probe.background:
        # background = clip(1 - max over parts, 0, 1), like OpenPose's training target
        g.initializer.extend([numpy_helper.from_array(np.array(1.0, np.float32), "edgepose_one"),
                              numpy_helper.from_array(np.array(0.0, np.float32), "edgepose_zero")])  # fmt: skip
        if opset >= 18:
            g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "edgepose_axis1"))
            rmax = helper.make_node("ReduceMax", [hm_t, "edgepose_axis1"], ["edgepose_part_max"], keepdims=1,
                                    name="edgepose_part_max")  # fmt: skip
        else:
            rmax = helper.make_node("ReduceMax", [hm_t], ["edgepose_part_max"], axes=[1], keepdims=1,
                                    name="edgepose_part_max")  # fmt: skip
        tail += [rmax,
                 helper.make_node("Sub", ["edgepose_one", "edgepose_part_max"], ["edgepose_bg_raw"], name="edgepose_bg"),
                 helper.make_node("Clip", ["edgepose_bg_raw", "edgepose_zero", "edgepose_one"], ["edgepose_bg"],
                                  name="edgepose_bg_clip"),
                 helper.make_node("Concat", [hm_t, "edgepose_bg"], ["edgepose_hm_bg"], axis=1, name="edgepose_hm_bg")]  # fmt: skip
        hm_t = "edgepose_hm_bg"
    tail += [helper.make_node("Identity", [hm_t], [HEATMAPS], name="edgepose_heatmaps"),
             helper.make_node("Identity", [paf_t], [PAFS], name="edgepose_pafs")]  # fmt: skip
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    inits = {t.name for t in g.initializer}
    others = [i for i in g.input if i.name in inits]
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, "height", "width"]))
    g.input.extend(others)
    del g.output[:]
    g.output.extend(map_outputs(layout.heatmap_channel_count, layout.paf_channel_count))
    del g.value_info[:]  # shapes of the old fixed size; onnxsim infers them again
    onnx.checker.check_model(model)
    return model


def to_opset(model, target: int = OPSET):
    """The model at opset ``target`` (onnx's version converter); unchanged when it is already there.

    Returns:
        ``(model, opset)``: the source opset is kept (with a warning) when the converter cannot do it.
    """
    onnx = require("onnx")
    cur = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), target)
    if cur == target:
        return model, cur
    try:
        from onnx import version_converter

        conv = version_converter.convert_version(model, target)
        onnx.checker.check_model(conv)
        return conv, target
    except Exception as e:  # the converter raises a mix of types
        log.warning("cannot convert opset %d to %d (%s); keeping opset %d", cur, target, e, cur)
        return model, cur


def _maps(sess, x: np.ndarray, names: tuple[str, str], in_name: str, in_layout: str, probe: Probe) -> list[np.ndarray]:
    feed = x if in_layout == "NCHW" else x.transpose(0, 2, 3, 1)
    out = sess.run(list(names), {in_name: np.ascontiguousarray(feed)})
    return [a if lay == "NCHW" else a.transpose(0, 3, 1, 2) for a, lay in zip(out, (probe.hm_layout, probe.paf_layout))]


def check_parity(model, source, in_vi, in_layout: str, names: tuple[str, str], probe: Probe,
                 src_norm: tuple[tuple, tuple], contract: tuple[float, float], tolerance: float) -> float:  # fmt: skip
    """Largest absolute difference of the maps between ``model`` and ``source`` on the same pixels.

    Runs at the probe size and at a size 2 strides larger each way: the second run also proves the
    converted model's H/W are dynamic (when the source itself has fixed H/W, only the converted model
    runs there and its map size is checked).

    Raises:
        ExportError: a difference above ``tolerance``, or the model does not run at the second size.
    """
    sess, ref_sess = _session(model), _session(source)
    (w, h), s = probe.size, probe.stride
    worst = 0.0
    for i, (ww, hh) in enumerate(((w, h), (w + 2 * s * 4, h + 2 * s * 2))):
        px = _pixels(ww, hh, seed=i)
        try:
            hm, paf = sess.run([HEATMAPS, PAFS], {INPUT: _normalise(px, (contract[0],), (contract[1],))})
        except Exception as e:  # onnxruntime
            raise ExportError(f"the converted model does not run at {ww}x{hh} ({e}); edgepose letterboxes frames "
                              "to varying sizes, so the network must accept any H/W (a multiple of the stride): "
                              "export it with dynamic height/width") from e  # fmt: skip
        if hm.shape[2:] != (hh // s, ww // s) and hm.shape[2:] != (-(-hh // s), -(-ww // s)):
            raise ExportError(f"at {ww}x{hh} the converted model gives maps of {hm.shape[2:]}, not input/stride {s}")
        try:
            ref_hm, ref_paf = _maps(ref_sess, _normalise(px, *src_norm), names, in_vi.name, in_layout, probe)
        except Exception as e:  # a fixed-size source: nothing to compare at the second size
            if i == 0:
                raise ExportError(f"the source does not run at {ww}x{hh}: {e}") from e
            log.info("parity at %dx%d: the source has a fixed size; the converted model runs there", ww, hh)
            continue
        parts = ref_hm.shape[1]
        d = max(float(np.abs(hm[:, :parts] - ref_hm).max()), float(np.abs(paf - ref_paf).max()))
        if not probe.background:  # the appended channel is what it says it is
            bg = np.clip(1.0 - ref_hm.max(axis=1), 0.0, 1.0)
            d = max(d, float(np.abs(hm[:, parts] - bg).max()))
        log.info("parity %dx%d: max |converted - source| = %.2e", ww, hh, d)
        worst = max(worst, d)
    if not worst <= tolerance:
        raise ExportError(f"parity check failed: max abs difference {worst:.3e} > tolerance {tolerance:g}; model not written")
    return worst


# --------------------------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------------------------


def _per_channel(v, what: str) -> tuple[float, ...]:
    t = tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
    if len(t) not in (1, 3):
        raise ExportError(f"{what} takes one value or three (one per channel), not {len(t)}")
    return t


def _fmt(v: tuple[float, ...]) -> str:
    return f"{v[0]:g}" if len(v) == 1 else "(" + ", ".join(f"{x:g}" for x in v) + ")"


def resolve_normalisation(mean: tuple[float, ...] | None, scale: tuple[float, ...] | None, pre: Preset | None,
                          preset: str | None, order: str, builtin: list[str]) -> tuple[tuple, tuple]:  # fmt: skip
    """The ``(mean, scale)`` to bake in, printed with where each value came from.

    A value given by the user wins. Otherwise a preset's value, except when the source graph normalises
    its input itself (``builtin``, from :func:`builtin_normalisation`): then raw pixels (mean 0, scale
    1), because the preset describes the network *behind* that normalisation (an OpenVINO/OMZ export of
    Lightweight OpenPose has it built in; its PyTorch export does not). Without a preset: 0 and 1. A
    partial override (one of the two given with a preset) is allowed and printed: which value is the
    user's and which the preset's.
    """
    def pick(given, preset_val, identity, flag):
        if given is not None:
            return given, flag
        if pre is not None and builtin:
            return (identity,), f"{identity:g} instead of the {preset} preset's {_fmt(preset_val)}, as the graph normalises itself"
        if pre is not None:
            return preset_val, f"the {preset} preset's"
        return (identity,), "default"

    m, m_from = pick(mean, pre.mean if pre else None, 0.0, "--input-mean")
    s, s_from = pick(scale, pre.scale if pre else None, 1.0, "--input-scale")
    if builtin:
        print(f"the source normalises its input itself before its first Conv: {', '.join(builtin)}")
        if (mean is not None and mean != (0.0,)) or (scale is not None and scale != (1.0,)):
            log.warning("the source normalises its input itself (%s), and (pixel - %s) * %s goes in front of that: "
                        "check that the graph's own input is not raw pixels", ", ".join(builtin), _fmt(m), _fmt(s))  # fmt: skip
    print(f"normalisation: input {order}, (pixel - {_fmt(m)}) * {_fmt(s)} (mean: {m_from}; scale: {s_from})")
    if pre is not None and (mean is None) != (scale is None):
        given, kept, val, src = (("--input-scale", "mean", m, m_from) if mean is None else
                                 ("--input-mean", "scale", s, s_from))  # fmt: skip
        print(f"note: only {given} was given: the {kept} {_fmt(val)} is {src}; give both --input-mean and "
              "--input-scale to state the source's normalisation in full")  # fmt: skip
    return m, s


def check_on_picture(model, image: Path | None, order: str, contract: tuple[float, float],
                     fold: tuple | None, builtin: list[str]) -> str | None:  # fmt: skip
    """Run the converted model (as the runtime will: its metadata, its decoder) on a picture with people.

    Parity compares the result with the source under the *same* assumed normalisation, so it cannot
    catch a wrong one; a network fed the wrong input finds nobody (issue 26: Lightweight OpenPose with
    the PyTorch export's normalisation in front of an OpenVINO export that has it built in: AP 0).

    Args:
        image: the picture; None: scikit-image's astronaut (``edgepose demo``'s), skipped with a warning
            when scikit-image is not installed.

    Returns:
        what was found (``"astronaut.png: 1 people, 18 of 18 parts"``), or None when skipped.

    Raises:
        ExportError: nobody is found, or the picture cannot be read.
    """
    onnx = require("onnx")
    from edgepose.imageio import read_image
    from edgepose.runner import PoseEstimator

    if image is None:
        try:
            from edgepose.commands.demo import sample_image

            image = sample_image()
        except ImportError as e:
            log.warning("no picture to check the converted model on (%s); pass --check-image PATH", e)
            print("check on a picture: skipped (no sample picture: install scikit-image or pass --check-image PATH)")
            return None
    if not image.is_file():
        raise ExportError(f"--check-image {image} does not exist")
    try:
        img, _ = read_image(image)
    except Exception as e:  # ImageError, OpenCV
        raise ExportError(f"cannot read --check-image {image}: {e}") from e
    with tempfile.TemporaryDirectory(prefix="edgepose-byo-") as tmp:
        path = Path(tmp) / "candidate.onnx"
        onnx.save(model, str(path))
        est = PoseEstimator(path, device="cpu")
        x, _ = est.preprocess(img)
        hm, _ = est.infer(x[None])
        people = est.predict(img).people
    parts = est.layout.num_parts
    thr = est.decoder.peak_threshold
    seen = int((hm[0, :parts].reshape(parts, -1).max(axis=1) > thr).sum())
    found = f"{image.name}: {len(people)} people, {seen} of {parts} parts above {thr:g}"
    if not people:
        norm = (f"(pixel - {list(fold[0])}) * {list(fold[1])} per channel" if fold is not None else
                f"(pixel - {contract[0]:g}) * {contract[1]:g}")  # fmt: skip
        hint = (f"; the source normalises its input itself ({', '.join(builtin)}), so it probably wants raw "
                "pixels: --input-mean 0 --input-scale 1" if builtin else
                "; a graph with the normalisation built in (an OpenVINO/OMZ export, or one folded into the first "
                "Conv) wants raw pixels: --input-mean 0 --input-scale 1")  # fmt: skip
        raise ExportError(
            f"the converted model finds nobody in {image} ({seen} of {parts} parts above {thr:g}) with input "
            f"{order}, {norm}: the input normalisation (or the channel order) is probably not the one the source "
            f"was trained with. Give the source's own with --input-mean M --input-scale S (and --channel-order)"
            f"{hint}. For a picture of your own use --check-image PATH; --no-check-image skips this check; "
            "model not written"
        )
    print(f"check on a picture: {found}")
    return found


def convert_onnx(
    model_path: str | Path,
    out: str | Path,
    *,
    preset: str | None = None,
    layout: str | Layout | None = None,
    topology: str | Path | None = None,
    heatmaps: str | None = None,
    pafs: str | None = None,
    input_scale: float | tuple[float, ...] | None = None,
    input_mean: float | tuple[float, ...] | None = None,
    channel_order: str | None = None,
    input_size: tuple[int, int] | None = None,
    stride: int | None = None,
    tolerance: float | None = None,
    do_simplify: bool = True,
    pad_channels: bool = True,
    check_image: str | Path | bool = True,
) -> Path:
    """Convert an OpenPose-style ONNX graph into an edgepose model; return ``out``.

    Args:
        model_path: the source ``.onnx``.
        out: where to write the model.
        preset: a key of :data:`PRESETS` filling in the other arguments (each can still be given).
        layout: ``coco18``, ``mpi15``, ``body25``, a topology JSON path or a :class:`Layout`.
        topology: a topology JSON (same as ``layout=FILE``; trt_pose's preset needs one).
        heatmaps, pafs: names of the source tensors with the part maps and the PAFs.
        input_scale, input_mean: the source's input is ``(pixel - mean) * scale``; one value or one per
            channel (a per-channel pair is folded into the graph; the contract then says raw pixels).
        channel_order: ``BGR`` or ``RGB``: what the source expects.
        input_size: preferred ``(w, h)`` for the metadata (and the probe when the source's is dynamic).
        stride: expected output stride; checked against the measured one.
        tolerance: largest absolute map difference accepted in the parity check (default: per source
            precision, :data:`TOLERANCES`).
        do_simplify: run onnxsim (never on a quantised source: its folds change int8 rounding).
        pad_channels: pad concatenated stage inputs for ONNX Runtime's NCHWc kernels.
        check_image: a picture with people the converted model must find someone in before it is
            written; True: scikit-image's astronaut (``edgepose demo``'s picture); False: no check.

    Raises:
        ExportError: bad input or a failed step; nothing is written then.

    Example:
        >>> convert_onnx("human-pose-estimation.onnx", "models/lw.onnx", preset="lwopenpose")  # doctest: +SKIP
    """
    onnx = require("onnx")
    model_path = Path(model_path)
    out = check_writable(Path(out))
    pre = None
    if preset is not None:
        if preset not in PRESETS:
            raise ExportError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        pre = PRESETS[preset]
        if pre.layout is None and layout is None and topology is None:
            raise ExportError(f"--from {preset} needs --topology FILE (the JSON with keypoints and skeleton)")
    heatmaps = heatmaps or (pre.heatmaps if pre else None)
    pafs = pafs or (pre.pafs if pre else None)
    if not heatmaps or not pafs:
        raise ExportError("name the source's map tensors with --heatmaps NAME --pafs NAME (or use --from PRESET)")
    lay = resolve_layout(layout if layout is not None or topology is not None else (pre.layout if pre else None),
                         topology)  # fmt: skip
    order = (channel_order or (pre.channel_order if pre else "BGR")).upper()
    if order not in ("BGR", "RGB"):
        raise ExportError(f"--channel-order must be BGR or RGB, not {order!r}")
    if input_mean is not None:
        input_mean = _per_channel(input_mean, "--input-mean")
    if input_scale is not None:
        input_scale = _per_channel(input_scale, "--input-scale")
    if not model_path.is_file():
        raise ExportError(f"{model_path} does not exist")
    if not isinstance(check_image, bool) and not Path(check_image).is_file():
        raise ExportError(f"--check-image {check_image} does not exist")
    where = model_path.name
    with step("load"):
        try:
            source = onnx.load(str(model_path))
        except Exception as e:  # protobuf DecodeError and friends
            raise ExportError(f"{model_path} is not an ONNX model: {e}") from e
        in_vi, in_layout = _image_input(source, where)
        dims = _dims(in_vi)
        hw = (dims[2], dims[3]) if in_layout == "NCHW" else (dims[1], dims[2])
        static = all(isinstance(v, int) and v > 0 for v in hw)
    size = (hw[1], hw[0]) if static else (input_size or (pre.input_size if pre else (432, 368)))
    names = (heatmaps, pafs)
    with step("prune"):
        pruned, dropped = prune(onnx.load(str(model_path)), list(names), where)
    log.info("kept %d nodes, dropped %d that %s and %s do not need", len(pruned.graph.node), dropped, *names)
    precision, quant_props = source_precision(pruned)
    builtin = builtin_normalisation(pruned, in_vi.name)
    mean, scale = resolve_normalisation(input_mean, input_scale, pre, preset, order, builtin)
    fold = None
    if len(mean) == 3 or len(scale) == 3:  # per channel: into the graph; the contract stays scalar
        fold = (mean if len(mean) == 3 else mean * 3, scale if len(scale) == 3 else scale * 3)
        contract = (0.0, 1.0)
    else:
        contract = (mean[0], scale[0])
    src_norm = (mean, scale)
    if tolerance is None:
        tolerance = TOLERANCES[precision]
    log.info("source precision %s: parity tolerance %g%s", precision, tolerance,
             f" ({quant_props['quant_format']}, activations {quant_props['quant_activations']}, weights "
             f"{quant_props['quant_weights']})" if quant_props.get("quant_format") else "")  # fmt: skip
    with step("probe maps"):
        probe = probe_maps(pruned, in_vi, in_layout, names, lay, size, mean, scale, where)
    if stride is None and pre is not None and pre.stride != probe.stride:
        log.warning("measured stride %d, the %s preset expects %d", probe.stride, preset, pre.stride)
    if stride is not None and stride != probe.stride:
        raise ExportError(f"--stride {stride} but the maps are 1/{probe.stride} of the input ({size[0]}x{size[1]})")
    log.info("maps: heatmaps %s%s, PAFs %s, stride %d", probe.hm_layout,
             "" if probe.background else " without background (one is appended)", probe.paf_layout, probe.stride)
    with step("opset"):
        model, opset = to_opset(pruned)
    with step("rebuild ends"):
        model = rebuild(model, in_vi, in_layout, names, probe, lay, fold, opset)
    if do_simplify and precision == "int8":
        # onnxsim folds a bias Add into the quantised Conv before it and constants across Q/DQ pairs:
        # the int8 rounding changes (2.3e-2 on Lightweight OpenPose's maps, issue 26). The graph runs
        # quantised either way, so there is nothing to gain from it.
        log.info("onnxsim skipped: the source is quantised (%s); its folds would change the int8 rounding",
                 ", ".join(json.loads(quant_props["quant_ops"])))  # fmt: skip
        print("onnxsim: skipped for a quantised source (folding across QuantizeLinear/DequantizeLinear changes "
              "the rounding)")  # fmt: skip
    elif do_simplify:
        with step("onnxsim"):
            model = simplify(model)
    padding = "none"
    if pad_channels:
        model, padding = pad_for_nchwc(model)
    if opset == OPSET:
        stamp_versions(model)  # else the source's IR version stays with its opset
    model.graph.ClearField("doc_string")
    model.producer_name, model.producer_version = "edgepose-converters", __version__
    meta = ModelMeta(
        layout=lay, stride=probe.stride, channel_order=order, scale=contract[1], mean=contract[0],
        input_size=tuple(input_size or (pre.input_size if pre else size)), variant=precision,
        source_sha256=sha256_file(model_path),
    )  # fmt: skip
    extra = {"source_name": model_path.name, "source_format": f"onnx ({preset})" if preset else "onnx",
             "source_outputs": json.dumps(list(names)), "channel_padding": padding,
             "heatmaps_background": "network" if probe.background else "derived: clip(1 - max over parts, 0, 1)"}  # fmt: skip
    if fold is not None:
        extra["input_normalisation"] = (f"folded into the graph: (pixel - {list(fold[0])}) * {list(fold[1])} "
                                        f"per {order} channel")  # fmt: skip
    if builtin:
        extra["source_input_normalisation"] = "in the source graph before its first Conv: " + ", ".join(builtin)
    extra.update(quant_props)
    extra["parity_tolerance"] = f"{tolerance:g} ({precision} source)"
    set_metadata(model, meta, **extra)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError
        raise ExportError(f"the converted model is not valid ONNX: {e}") from e
    with step("parity vs source"):
        worst = check_parity(model, source, in_vi, in_layout, names, probe, src_norm, contract, tolerance)
    model.metadata_props.add(key="parity_source_max_abs_diff", value=f"{worst:.3e}")
    print(f"parity: max |converted - source| = {worst:.2e} over heatmaps and PAFs (tolerance {tolerance:g} for "
          f"an {precision} source)")  # fmt: skip
    if check_image is not False:
        with step("check on a picture"):
            found = check_on_picture(model, None if check_image is True else Path(check_image), order, contract,
                                     fold, builtin)  # fmt: skip
        if found is not None:
            model.metadata_props.add(key="check_image", value=found)
    with step("write"):
        save_atomic(model, out)
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(eval_fraction(v)) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or three (e.g. 128 or 0.00390625 or 1/256), not {text!r}") from None
    if len(vals) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected one value or three (one per channel), not {len(vals)}")
    return vals


def eval_fraction(text: str) -> float:
    """``"1/256"`` -> 0.00390625; a plain number as itself."""
    if "/" in text:
        a, b = text.split("/", 1)
        return float(a) / float(b)
    return float(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="the source ONNX graph")
    p.add_argument("--out", type=Path, required=True, help="where to write the edgepose model")
    p.add_argument("--from", dest="preset", choices=sorted(PRESETS),
                   help="a known exporter: fills in output names, normalisation, layout and size")  # fmt: skip
    p.add_argument("--layout", help="coco18, mpi15, body25 or a topology JSON file (trt_pose's or edgepose's form)")
    p.add_argument("--topology", type=Path, help="topology JSON (trt_pose: keypoints + 1-based skeleton)")
    p.add_argument("--heatmaps", help="name of the source tensor with the part heatmaps")
    p.add_argument("--pafs", help="name of the source tensor with the part affinity fields")
    p.add_argument("--input-scale", type=_floats, metavar="S", help="input = (pixel - mean) * S; one value or three")
    p.add_argument("--input-mean", type=_floats, metavar="M", help="input = (pixel - M) * scale; one value or three")
    p.add_argument("--channel-order", choices=("BGR", "RGB"), type=str.upper, help="colour order the source expects")
    p.add_argument("--preferred-size", type=size_arg, metavar="WxH", help="preferred input size for the metadata")
    p.add_argument("--stride", type=int, help="expected output stride (checked against the measured one)")
    p.add_argument("--tolerance", type=float,
                   help="max abs map difference vs the source (default: by the source's precision: "
                        + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items()) + ")")  # fmt: skip
    p.add_argument("--check-image", type=Path, metavar="PATH",
                   help="a picture with people: the converted model must find someone in it before it is written "
                        "(default: scikit-image's astronaut.png, edgepose demo's picture)")  # fmt: skip
    p.add_argument("--no-check-image", action="store_true",
                   help="skip that check (a network not trained on people, random weights)")  # fmt: skip
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    p.add_argument("--no-pad-channels", action="store_true", help="keep the stage inputs' channel counts")


def run(args: argparse.Namespace) -> int:
    out = convert_onnx(args.model, args.out, preset=args.preset, layout=args.layout, topology=args.topology,
                       heatmaps=args.heatmaps, pafs=args.pafs, input_scale=args.input_scale,
                       input_mean=args.input_mean, channel_order=args.channel_order,
                       input_size=args.preferred_size, stride=args.stride, tolerance=args.tolerance,
                       do_simplify=not args.no_simplify, pad_channels=not args.no_pad_channels,
                       check_image=False if args.no_check_image else (args.check_image or True))  # fmt: skip
    print(f"model: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m converters.byo --model IN --out M ...``; exit 2 on an export error."""
    return cli_main("edgepose convert onnx", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
