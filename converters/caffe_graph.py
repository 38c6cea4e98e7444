"""CMU OpenPose Caffe networks -> ONNX graphs: the prototxt's layers planned, checked and translated.

Pure translation, no files written and no parity check (that is :mod:`converters.caffe`, which
drives the steps): :func:`plan_network` walks a parsed prototxt (:mod:`converters.caffe_proto`)
into :class:`Op` s with channel counts and the weight shapes they need; :func:`find_heads` finds
the heatmap and PAF branches and the layout; :func:`build_onnx` turns the plan and the
caffemodel's weights into an ``onnx.ModelProto`` (Caffe's pooling rounding reproduced exactly).

Example:
    >>> from converters.caffe_proto import parse_prototxt  # doctest: +SKIP
    >>> plan = plan_network(parse_prototxt("pose_deploy.prototxt"))  # doctest: +SKIP
    >>> heads = find_heads(plan)  # doctest: +SKIP
    >>> model = build_onnx(plan, read_caffemodel("pose_iter_584000.caffemodel"), heads)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters import __version__
from converters.caffe_proto import CaffeFormatError, Message, parse_prototxt
from converters.common import OPSET, ExportError, map_outputs, rename_tensors, require
from edgepose.layouts import Layout, get_layout, layout_for_channels
from edgepose.meta import HEATMAPS, INPUT, PAFS

log = logging.getLogger(__name__)

__all__ = ["SUPPORTED_LAYERS", "CAFFE_LAYOUTS", "Op", "Plan", "plan_network", "expected_blob_shapes", "Heads",
           "find_heads", "build_onnx", "parse_prototxt_file"]  # fmt: skip

#: Caffe layer types this converter translates; anything else is refused with the layer's name.
SUPPORTED_LAYERS = ("Input", "Convolution", "ReLU", "PReLU", "Pooling", "Concat")
#: Layouts a CMU Caffe network can have (selectable with ``--layout``).
CAFFE_LAYOUTS = ("coco18", "mpi15", "body25")
# V1LayerParameter.LayerType (the legacy ``layers { type: CONVOLUTION }``) -> type strings.
_V1_TYPES = {"CONCAT": "Concat", "CONVOLUTION": "Convolution", "POOLING": "Pooling", "RELU": "ReLU",
             "3": "Concat", "4": "Convolution", "17": "Pooling", "18": "ReLU"}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Plan: a pure-Python walk over the prototxt (no onnx needed)
# --------------------------------------------------------------------------------------------


@dataclass
class Op:
    """One Caffe layer, resolved: its parameters, channel counts and expected blob shapes."""

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    attrs: dict = field(default_factory=dict)
    in_channels: int = 0
    out_channels: int = 0
    blob_shapes: list[tuple[int, ...]] = field(default_factory=list)
    blob_names: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """The network as a list of :class:`Op` plus what the ONNX graph needs around it.

    Attributes:
        name: the prototxt's ``name`` (may be empty).
        input_blob: the Caffe name of the image input.
        ops: layers in execution order (Input layers excluded).
        channels, strides: channel count and (h, w) stride of every Caffe blob at the end.
        outputs: Caffe blobs produced and never consumed (the network outputs).
    """

    name: str
    input_blob: str
    ops: list[Op]
    channels: dict[str, int]
    strides: dict[str, tuple[int, int] | None]
    outputs: list[str]


def _spatial(p: Message, where: str, key: str, h_key: str, w_key: str, default: int | None) -> tuple[int, int]:
    """Caffe's ``key`` (repeated, 1 or 2 values) or ``key_h``/``key_w`` as (h, w)."""
    if p.has(h_key) or p.has(w_key):
        if p.all(key):
            raise ExportError(f"{where}: give either {key} or {h_key}/{w_key}, not both")
        if default is None and not (p.has(h_key) and p.has(w_key)):
            raise ExportError(f"{where}: {h_key} and {w_key} must be given together")
        d = 0 if default is None else default
        return p.int(h_key, d), p.int(w_key, d)
    vals = p.ints(key)
    if not vals:
        if default is None:
            raise ExportError(f"{where}: {key} is required")
        return default, default
    if len(vals) == 1:
        return vals[0], vals[0]
    if len(vals) == 2:
        return vals[0], vals[1]
    raise ExportError(f"{where}: {key} has {len(vals)} values; only 2-D (1 or 2 values) is supported")


def _enum(value, names: dict[str, int], where: str, key: str) -> int:
    s = str(value).strip()
    if s in names:
        return names[s]
    if s.lstrip("-").isdigit() and int(s) in names.values():
        return int(s)
    raise ExportError(f"{where}: unknown {key} {s!r} (expected one of {', '.join(names)})")


def _included(layer: Message) -> bool:
    """Caffe's NetStateRule check for the TEST phase (deploy networks)."""
    def phase_ok(rule: Message) -> bool:
        ph = rule.get("phase")
        return ph is None or str(ph) in ("TEST", "1")

    inc, exc = layer.all("include"), layer.all("exclude")
    if inc:
        return any(isinstance(r, Message) and phase_ok(r) for r in inc)
    if exc:
        return not any(isinstance(r, Message) and phase_ok(r) for r in exc)
    ph = layer.get("phase")
    return ph is None or str(ph) in ("TEST", "1")


def _input_shape(dims: list[int], where: str) -> int:
    if len(dims) != 4:
        raise ExportError(f"{where}: the input must be 4-D N x C x H x W, got {dims}")
    if dims[1] != 3:
        raise ExportError(f"{where}: the input has {dims[1]} channels; edgepose expects a 3-channel BGR image")
    return dims[1]


def plan_network(net: Message, where: str = "prototxt") -> Plan:
    """Resolve a parsed prototxt into a :class:`Plan` (layer types, parameters, channels, shapes).

    Raises:
        ExportError: an unsupported layer type (named with its layer), a missing input, a bottom
            blob that no layer produced, or parameters Caffe itself would refuse.
    """
    v1 = bool(net.all("layers")) and not net.all("layer")
    layers = net.all("layers") if v1 else net.all("layer")
    if not layers:
        raise ExportError(f"{where} has no layers: not a Caffe network definition")

    channels: dict[str, int] = {}
    strides: dict[str, tuple[int, int] | None] = {}
    consumed: dict[str, bool] = {}
    input_blob: str | None = None

    inputs = net.strs("input")
    if inputs:
        if len(inputs) != 1:
            raise ExportError(f"{where}: {len(inputs)} inputs {inputs}; a pose network has one image input")
        dims = net.ints("input_dim")
        shapes = net.all("input_shape")
        if shapes:
            dims = shapes[0].ints("dim") if isinstance(shapes[0], Message) else []
        _input_shape(dims, f"{where}: input {inputs[0]!r}") if dims else None
        input_blob = inputs[0]
        channels[input_blob], strides[input_blob], consumed[input_blob] = 3, (1, 1), False

    ops: list[Op] = []
    for idx, layer in enumerate(layers):
        if not isinstance(layer, Message):
            raise ExportError(f"{where}: layer #{idx} is not a {{ ... }} block")
        name = layer.str("name", f"layer{idx}")
        ltype = layer.str("type", "")
        if v1:
            ltype = _V1_TYPES.get(ltype.upper(), ltype)
        lw = f"{where}: layer {name!r} ({ltype or 'no type'})"
        if not _included(layer):
            continue
        if ltype not in SUPPORTED_LAYERS:
            raise ExportError(
                f"{where}: layer {name!r} has type {ltype or '(none)'!r}, which this converter does not "
                f"support (supported: {', '.join(SUPPORTED_LAYERS)})"
            )
        bottoms, tops = layer.strs("bottom"), layer.strs("top")

        if ltype == "Input":
            if input_blob is not None or len(tops) != 1:
                raise ExportError(f"{lw}: a pose network has exactly one image input")
            shapes = layer.msg("input_param").all("shape")
            if shapes and isinstance(shapes[0], Message) and shapes[0].ints("dim"):
                _input_shape(shapes[0].ints("dim"), lw)
            input_blob = tops[0]
            channels[input_blob], strides[input_blob], consumed[input_blob] = 3, (1, 1), False
            continue

        if not tops:
            raise ExportError(f"{lw}: has no top blob")
        for b in bottoms:
            if b not in channels:
                raise ExportError(f"{lw}: bottom blob {b!r} is not produced by any earlier layer or input")
        want = {"Concat": None}.get(ltype, 1)
        if (want is not None and len(bottoms) != want) or not bottoms:
            raise ExportError(f"{lw}: expected {want or 'one or more'} bottom blob(s), got {len(bottoms)}")
        if len(tops) != 1:
            raise ExportError(f"{lw}: expected one top blob, got {len(tops)}")
        op = Op(name=name, type=ltype, bottoms=bottoms, tops=tops)
        cin = channels[bottoms[0]]
        stride = strides[bottoms[0]]
        op.in_channels = cin

        if ltype == "Convolution":
            p = layer.msg("convolution_param")
            num_output = p.int("num_output")
            if not num_output or num_output <= 0:
                raise ExportError(f"{lw}: convolution_param.num_output is required and must be > 0")
            kh, kw = _spatial(p, lw, "kernel_size", "kernel_h", "kernel_w", None)
            ph, pw = _spatial(p, lw, "pad", "pad_h", "pad_w", 0)
            sh, sw = _spatial(p, lw, "stride", "stride_h", "stride_w", 1)
            dil = p.ints("dilation") or [1]
            if len(dil) > 2:
                raise ExportError(f"{lw}: dilation has {len(dil)} values; only 2-D is supported")
            dh, dw = (dil[0], dil[0]) if len(dil) == 1 else (dil[0], dil[1])
            group = p.int("group", 1)
            if p.int("axis", 1) != 1:
                raise ExportError(f"{lw}: convolution_param.axis must be 1 (NCHW)")
            if min(kh, kw, sh, sw, dh, dw, group) <= 0 or min(ph, pw) < 0:
                raise ExportError(f"{lw}: kernel, stride, dilation and group must be positive, pad >= 0")
            if cin % group or num_output % group:
                raise ExportError(f"{lw}: group {group} does not divide the {cin} input / {num_output} output channels")
            bias = p.bool("bias_term", True)
            op.attrs = dict(kernel=(kh, kw), pads=(ph, pw), strides=(sh, sw), dilations=(dh, dw), group=group, bias=bias)
            op.out_channels = num_output
            op.blob_shapes = [(num_output, cin // group, kh, kw)] + ([(num_output,)] if bias else [])
            op.blob_names = ["weights", "bias"][: len(op.blob_shapes)]
            stride = None if stride is None else (stride[0] * sh, stride[1] * sw)

        elif ltype == "ReLU":
            op.attrs = dict(negative_slope=layer.msg("relu_param").float("negative_slope", 0.0))
            op.out_channels = cin

        elif ltype == "PReLU":
            shared = layer.msg("prelu_param").bool("channel_shared", False)
            op.attrs = dict(channel_shared=shared)
            op.out_channels = cin
            op.blob_shapes = [() if shared else (cin,)]
            op.blob_names = ["slope"]

        elif ltype == "Pooling":
            p = layer.msg("pooling_param")
            method = _enum(p.get("pool", "MAX"), {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}, lw, "pool")
            if method == 2:
                raise ExportError(f"{lw}: STOCHASTIC pooling is not supported (MAX and AVE are)")
            rmode = _enum(p.get("round_mode", "CEIL"), {"CEIL": 0, "FLOOR": 1}, lw, "round_mode")
            glob = p.bool("global_pooling", False)
            ph, pw = _spatial(p, lw, "pad", "pad_h", "pad_w", 0)
            sh, sw = _spatial(p, lw, "stride", "stride_h", "stride_w", 1)
            if glob:
                if ph or pw or sh != 1 or sw != 1:
                    raise ExportError(f"{lw}: global pooling takes no pad and stride 1 (as in Caffe)")
                kh = kw = 0
                stride = None
            else:
                kh, kw = _spatial(p, lw, "kernel_size", "kernel_h", "kernel_w", None)
                if min(kh, kw, sh, sw) <= 0 or min(ph, pw) < 0:
                    raise ExportError(f"{lw}: kernel and stride must be positive, pad >= 0")
                if ph >= kh or pw >= kw:
                    raise ExportError(f"{lw}: pad ({ph}, {pw}) must be smaller than the kernel ({kh}, {kw}) (Caffe's rule)")
                if rmode == 0 and ph == 0 and pw == 0 and (sh > kh or sw > kw):
                    # Caffe clips the last window only when padded; unpadded it emits empty windows
                    # (-FLT_MAX for MAX, a division by <= 0 for AVE) for some input sizes.
                    raise ExportError(
                        f"{lw}: stride ({sh}, {sw}) larger than the kernel ({kh}, {kw}) with CEIL rounding and "
                        "no padding: Caffe produces empty pooling windows there; not supported"
                    )
                stride = None if stride is None else (stride[0] * sh, stride[1] * sw)
            op.attrs = dict(method="MAX" if method == 0 else "AVE", ceil=rmode == 0, global_pool=glob,
                            kernel=(kh, kw), pads=(ph, pw), strides=(sh, sw))  # fmt: skip
            op.out_channels = cin

        elif ltype == "Concat":
            p = layer.msg("concat_param")
            axis = p.int("axis") if p.has("axis") else p.int("concat_dim", 1)
            if axis not in (1, -3, 0, -4, 2, -2, 3, -1):
                raise ExportError(f"{lw}: concat axis {axis} is out of range for 4-D blobs")
            axis = axis % 4
            op.attrs = dict(axis=axis)
            bstrides = {strides[b] for b in bottoms}
            if axis == 1:
                op.out_channels = sum(channels[b] for b in bottoms)
                if len(bstrides) > 1:
                    raise ExportError(f"{lw}: its bottoms have different strides {sorted(map(str, bstrides))}")
            else:
                cs = {channels[b] for b in bottoms}
                if len(cs) > 1:
                    raise ExportError(f"{lw}: bottoms with different channel counts {sorted(cs)} on axis {axis}")
                op.out_channels = cin
                stride = None if axis in (2, 3) else stride

        for b in bottoms:
            consumed[b] = True
        top = tops[0]
        channels[top], strides[top], consumed[top] = op.out_channels, stride, False
        ops.append(op)

    if input_blob is None:
        raise ExportError(f"{where}: no input (neither `input:` with input_dim/input_shape nor an Input layer)")
    if not ops:
        raise ExportError(f"{where}: no layers besides the input")
    outputs = [b for b, used in consumed.items() if not used and b != input_blob]
    return Plan(name=net.str("name", ""), input_blob=input_blob, ops=ops, channels=channels,
                strides=strides, outputs=outputs)  # fmt: skip


def expected_blob_shapes(prototxt: str | Path | Message) -> dict[str, list[tuple[int, ...]]]:
    """The weight blobs every layer of ``prototxt`` needs: ``{layer name: [shape, ...]}``.

    Handy to make (or check) a caffemodel: ``Convolution`` -> ``[(out, in/group, kh, kw), (out,)]``,
    ``PReLU`` -> ``[(channels,)]``; layers without weights are left out.

    Example:
        >>> shapes = expected_blob_shapes("pose/coco/pose_deploy_linevec.prototxt")  # doctest: +SKIP
        >>> shapes["conv1_1"]  # doctest: +SKIP
        [(64, 3, 3, 3), (64,)]
    """
    net = prototxt if isinstance(prototxt, Message) else parse_prototxt_file(prototxt)
    return {op.name: list(op.blob_shapes) for op in plan_network(net).ops if op.blob_shapes}


def parse_prototxt_file(prototxt: str | Path) -> Message:
    """The parsed prototxt at ``prototxt``.

    Raises:
        ExportError: the file does not exist or is not a valid prototxt.
    """
    path = Path(prototxt)
    if not path.is_file():
        raise ExportError(f"prototxt {path} does not exist")
    try:
        return parse_prototxt(path)
    except CaffeFormatError as e:
        raise ExportError(str(e)) from e


# --------------------------------------------------------------------------------------------
# Heads and layout
# --------------------------------------------------------------------------------------------


@dataclass
class Heads:
    """How the network's outputs map to ``heatmaps`` and ``pafs``.

    ``concat`` is the final Concat layer left out of the graph (its two inputs become the outputs),
    or None when the outputs are two separate blobs or one blob that is split by channels.
    """

    layout: Layout
    heatmaps: str  # Caffe blob
    pafs: str
    concat: str | None
    split_blob: str | None
    stride: int
    pafs_first: bool = False  # the final Concat lists the PAF branch first


def find_heads(plan: Plan, layout: str | None = None, where: str = "prototxt") -> Heads:
    """Locate the heatmap and PAF blobs and resolve the layout from their channel counts.

    Raises:
        ExportError: no recognisable ending, a layout that does not match the channel count,
            or heads with different strides.
    """
    outs = plan.outputs
    concat: str | None = None
    split_blob: str | None = None
    if len(outs) == 1:
        last = next((op for op in reversed(plan.ops) if op.tops[0] == outs[0]), None)
        if last is not None and last.type == "Concat" and last.attrs["axis"] == 1 and len(last.bottoms) == 2:
            concat = last.name
            pair = list(last.bottoms)
        else:
            split_blob = outs[0]
            pair = []
    elif len(outs) == 2:
        pair = list(outs)
    else:
        raise ExportError(
            f"{where}: the network has {len(outs)} outputs {outs}; expected one Concat of the heatmap and PAF "
            "branches (or those two blobs)"
        )
    total = sum(plan.channels[b] for b in pair) if pair else plan.channels[split_blob]
    if layout is None:
        try:
            lay = layout_for_channels(total)
        except ValueError as e:
            raise ExportError(f"{where}: {e}; pass --layout if this is a known layout") from e
    else:
        try:
            lay = get_layout(layout)
        except KeyError as e:
            raise ExportError(str(e.args[0])) from e
        if not lay.paf_channels:
            raise ExportError(f"layout {lay.id} has no PAFs; choose one of {', '.join(CAFFE_LAYOUTS)}")
        if lay.total_channels != total:
            raise ExportError(
                f"layout {lay.id} needs {lay.total_channels} output channels ({lay.heatmap_channel_count} heatmaps + "
                f"{lay.paf_channel_count} PAFs) but the network gives {total}"
                + (f" ({' + '.join(str(plan.channels[b]) for b in pair)})" if pair else "")
            )
    hm_c, paf_c = lay.heatmap_channel_count, lay.paf_channel_count
    if pair:
        c0, c1 = plan.channels[pair[0]], plan.channels[pair[1]]
        pafs_first = False
        if (c0, c1) == (hm_c, paf_c):
            hm, paf = pair
        elif (c0, c1) == (paf_c, hm_c):
            paf, hm = pair
            pafs_first = True
        else:
            raise ExportError(
                f"{where}: the output branches have {c0} and {c1} channels; layout {lay.id} needs "
                f"{hm_c} heatmaps and {paf_c} PAFs"
            )
        st = {plan.strides[hm], plan.strides[paf]}
    else:
        hm = paf = split_blob
        pafs_first = False
        log.warning("%s: the output %r is not a Concat of two branches; splitting its channels as "
                    "[%d heatmaps, %d PAFs]", where, split_blob, hm_c, paf_c)  # fmt: skip
        st = {plan.strides[split_blob]}
    if len(st) != 1 or None in st or len({s for t in st for s in t}) != 1:
        raise ExportError(f"{where}: cannot determine one output stride (heads have strides {sorted(map(str, st))})")
    stride = next(iter(st))[0]
    return Heads(layout=lay, heatmaps=hm, pafs=paf, concat=concat, split_blob=split_blob, stride=stride,
                 pafs_first=pafs_first and concat is not None)


# --------------------------------------------------------------------------------------------
# ONNX graph
# --------------------------------------------------------------------------------------------


def _check_blobs(op: Op, weights: dict[str, list[np.ndarray]], source: str) -> list[np.ndarray]:
    if op.name not in weights:
        raise ExportError(f"{source} has no weights for layer {op.name!r} ({op.type}); is it the caffemodel of this prototxt?")
    got = weights[op.name]
    if len(got) != len(op.blob_shapes):
        raise ExportError(
            f"{source}: layer {op.name!r} ({op.type}) has {len(got)} blob(s) but the prototxt needs "
            f"{len(op.blob_shapes)} ({', '.join(f'{n} {s}' for n, s in zip(op.blob_names, op.blob_shapes, strict=True))})"
        )
    out = []
    for arr, shape, what in zip(got, op.blob_shapes, op.blob_names, strict=True):
        if tuple(arr.shape) != shape:
            squeeze = tuple(arr.shape)
            while squeeze and squeeze[0] == 1:
                squeeze = squeeze[1:]
            want = shape
            while want and want[0] == 1:
                want = want[1:]
            if squeeze != want:  # legacy 4-D blobs (1, 1, 1, n) are fine: same values, same order
                raise ExportError(
                    f"{source}: layer {op.name!r} ({op.type}) {what}: expected shape {shape} from the prototxt, "
                    f"got {tuple(arr.shape)}"
                )
            arr = arr.reshape(shape)
        if not np.all(np.isfinite(arr)):
            raise ExportError(f"{source}: layer {op.name!r} ({op.type}) {what} holds NaN or infinite values")
        out.append(np.ascontiguousarray(arr, dtype=np.float32))
    return out


def build_onnx(plan: Plan, weights: dict[str, list[np.ndarray]], heads: Heads | None = None,
               *, opset: int = OPSET, source: str = "caffemodel"):  # fmt: skip
    """Translate a :class:`Plan` with its weights into an ``onnx.ModelProto``.

    With ``heads`` the outputs are ``heatmaps`` and ``pafs`` (the final Concat left out); without,
    every network output keeps its Caffe blob name (useful to test single layers).

    Raises:
        ExportError: a layer's weights are missing or do not match the prototxt.
    """
    onnx = require("onnx")
    helper, TP = onnx.helper, onnx.TensorProto
    nodes, inits = [], []
    used: set[str] = {INPUT}
    reserved = {HEATMAPS, PAFS}
    current: dict[str, str] = {plan.input_blob: INPUT}

    def fresh(name: str) -> str:
        base = name if name not in reserved else f"{name}_"
        cand, k = base, 1
        while cand in used:
            cand, k = f"{base}_{k}", k + 1
        used.add(cand)
        return cand

    def const(name: str, arr: np.ndarray) -> str:
        n = fresh(name)
        inits.append(onnx.numpy_helper.from_array(np.asarray(arr), n))
        return n

    concat_inputs: list[str] | None = None
    for op in plan.ops:
        xs = [current[b] for b in op.bottoms]
        if heads is not None and op.name == heads.concat:
            concat_inputs = xs
            continue
        y = fresh(op.tops[0])
        a = op.attrs
        if op.type == "Convolution":
            blobs = _check_blobs(op, weights, source)
            ins = [xs[0], const(f"{op.name}/W", blobs[0])] + ([const(f"{op.name}/b", blobs[1])] if a["bias"] else [])
            (ph, pw), (kh, kw) = a["pads"], a["kernel"]
            nodes.append(helper.make_node(
                "Conv", ins, [y], name=op.name, kernel_shape=[kh, kw], pads=[ph, pw, ph, pw],
                strides=list(a["strides"]), dilations=list(a["dilations"]), group=a["group"]))  # fmt: skip
        elif op.type == "ReLU":
            if a["negative_slope"]:
                nodes.append(helper.make_node("LeakyRelu", xs, [y], name=op.name, alpha=float(a["negative_slope"])))
            else:
                nodes.append(helper.make_node("Relu", xs, [y], name=op.name))
        elif op.type == "PReLU":
            (slope,) = _check_blobs(op, weights, source)
            slope = slope.reshape(1, 1, 1) if a["channel_shared"] else slope.reshape(-1, 1, 1)
            nodes.append(helper.make_node("PRelu", [xs[0], const(f"{op.name}/slope", slope)], [y], name=op.name))
        elif op.type == "Pooling":
            nodes.extend(_pool_nodes(helper, op, xs[0], y, fresh, const))
        elif op.type == "Concat":
            nodes.append(helper.make_node("Concat", xs, [y], name=op.name, axis=a["axis"]))
        else:  # plan_network refuses these already
            raise ExportError(f"layer {op.name!r}: unsupported type {op.type!r}")
        current[op.tops[0]] = y

    fp = TP.FLOAT
    in_vi = helper.make_tensor_value_info(INPUT, fp, ["batch", 3, "height", "width"])
    if heads is None:
        outputs = [(current[b], b, plan.channels[b]) for b in plan.outputs]
        out_vis = []
        rename = {}
        for tensor, blob, c in outputs:
            rename[tensor] = blob if blob not in used or blob == tensor else tensor
            out_vis.append(helper.make_tensor_value_info(rename[tensor], fp, ["batch", c, "out_height", "out_width"]))
    else:
        lay = heads.layout
        if heads.split_blob is not None:
            src = current[heads.split_blob]
            sizes = const("split_sizes", np.array([lay.heatmap_channel_count, lay.paf_channel_count], np.int64))
            nodes.append(helper.make_node("Split", [src, sizes], [HEATMAPS, PAFS], name="split_heads", axis=1))
            rename = {}
        else:
            if concat_inputs is None:
                hm_t, paf_t = current[heads.heatmaps], current[heads.pafs]
            else:
                concat_op = next(op for op in plan.ops if op.name == heads.concat)
                by_blob = dict(zip(concat_op.bottoms, concat_inputs, strict=True))
                hm_t, paf_t = by_blob[heads.heatmaps], by_blob[heads.pafs]
            if INPUT in (hm_t, paf_t) or hm_t == paf_t:
                raise ExportError("the heatmap and PAF outputs must be two different computed blobs")
            rename = {hm_t: HEATMAPS, paf_t: PAFS}
        out_vis = map_outputs(lay.heatmap_channel_count, lay.paf_channel_count)
    rename_tensors(nodes, rename)
    graph = helper.make_graph(nodes, plan.name or "caffe", [in_vi], out_vis, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="edgepose-converters", producer_version=__version__)  # fmt: skip
    # Dead branches (layers whose output nobody uses) are dropped by onnxsim; prune here too.
    _prune(model)
    return model


def _pool_nodes(helper, op: Op, x: str, y: str, fresh, const) -> list:
    """Caffe pooling as ONNX pooling with floor rounding and explicit padding.

    Caffe's output size (pooling_layer.cpp) is ``ceil((H + 2p - k) / s) + 1`` (CEIL), minus one when
    ``p > 0`` and the last window would start in the right padding. Padding the right/bottom by
    ``e = min(s - 1, k - p - 1)`` extra cells and rounding down gives exactly that count for every
    ``H`` (the extra cells never fill a window on their own), so no ``ceil_mode`` is needed and the
    result does not depend on how an ONNX Runtime version treats ceil_mode.

    MAX ignores padded cells (ONNX MaxPool pads act as -inf). AVE in Caffe divides by the window
    clipped to ``H + p`` (symmetric padding counted, ceil overhang not): zero-pad by ``p`` first,
    then average with ``count_include_pad=0`` over the extra cells.
    """
    a = op.attrs
    if a["global_pool"]:
        return [helper.make_node("GlobalMaxPool" if a["method"] == "MAX" else "GlobalAveragePool", [x], [y], name=op.name)]
    (kh, kw), (ph, pw), (sh, sw) = a["kernel"], a["pads"], a["strides"]
    eh, ew = (min(sh - 1, kh - ph - 1), min(sw - 1, kw - pw - 1)) if a["ceil"] else (0, 0)
    if a["method"] == "MAX":
        return [helper.make_node("MaxPool", [x], [y], name=op.name, kernel_shape=[kh, kw], strides=[sh, sw],
                                 pads=[ph, pw, ph + eh, pw + ew], ceil_mode=0)]  # fmt: skip
    nodes = []
    if ph or pw:
        padded = fresh(f"{op.tops[0]}/padded")
        pads = const(f"{op.name}/pads", np.array([0, 0, ph, pw, 0, 0, ph, pw], np.int64))
        nodes.append(helper.make_node("Pad", [x, pads], [padded], name=f"{op.name}/pad", mode="constant"))
        x = padded
    nodes.append(helper.make_node("AveragePool", [x], [y], name=op.name, kernel_shape=[kh, kw], strides=[sh, sw],
                                  pads=[0, 0, eh, ew], ceil_mode=0, count_include_pad=0))  # fmt: skip
    return nodes


def _prune(model) -> None:
    g = model.graph
    need = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(n.input)
    if len(keep) != len(g.node):
        log.info("dropping %d layer(s) that do not reach the outputs", len(g.node) - len(keep))
        del g.node[:]
        g.node.extend(reversed(keep))
    inits = [t for t in g.initializer if t.name in need]
    if len(inits) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(inits)
