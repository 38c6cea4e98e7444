"""Range equalization before int8 calibration: exact float re-parametrisations that keep small channels.

int8 on CPU quantizes each activation tensor with ONE scale (per-tensor) and each weight tensor
per output channel. A tensor whose channels span very different ranges loses its small channels:
in mobilenet_thin the 1x1 depthwise convs of the refinement stages scale channels by factors that
differ 300-fold, and the stage inputs concatenate backbone features (0..35) with heatmaps and PAFs
(0..1). Two exact re-parametrisations of the float graph fix most of it before calibration:

* fold_depthwise_1x1: a 1x1 depthwise conv (a per-channel scale) followed by a conv is folded into
  that conv's input columns (one op and one quantized tensor fewer);
* equalize_ranges: each channel c of a conv's output is multiplied by a power of two s_c (rows of
  the producer, exact in float) and divided back where it is consumed: in a depthwise conv's weights
  (free: per-channel weights) or in the input columns of a dense conv (a trade-off with that conv's
  per-row weight ranges, balanced SmoothQuant-style with ``alpha``). ReLU, MaxPool and Concat pass
  the scales through. Powers of two keep the float model bit-exact up to summation order.

Used by :func:`converters.variants.build_int8`; needs the ``onnx`` package (the convert extra).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["ChannelStats", "EqualizedSite", "channel_stats", "equalization_sites", "equalize_ranges", "fold_depthwise_1x1"]


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx

            return onnx.helper.get_attribute_value(a)
    return default


def _maps(graph):
    prod = {o: n for n in graph.node for o in n.output}
    cons: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    uses: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    return prod, cons, uses


def _is_depthwise(node, w) -> bool:
    g = _attr(node, "group", 1)
    return g > 1 and w.dims[1] == 1 and g == w.dims[0]


def fold_depthwise_1x1(model) -> list[str]:
    """Fold every 1x1 depthwise conv that feeds exactly one dense conv into that conv (in place).

    ``Conv_dw(x)[c] = a_c * x_c (+ b_c)`` followed by ``Conv(W, B)`` equals ``Conv(W * a, B + W b)``.

    Returns:
        the names of the removed depthwise nodes.
    """
    from onnx import numpy_helper as nh

    g = model.graph
    init = {i.name: i for i in g.initializer}
    _, cons, uses = _maps(g)
    outputs = {o.name for o in g.output}
    removed = []
    for d in list(g.node):
        if d.op_type != "Conv" or len(d.input) < 2 or d.input[1] not in init:
            continue
        wd = init[d.input[1]]
        if not _is_depthwise(d, wd) or list(wd.dims[1:]) != [1, 1, 1]:
            continue
        if any(v != 1 for v in _attr(d, "strides", [1, 1])) or any(v != 0 for v in _attr(d, "pads", [0, 0, 0, 0])):
            continue
        if any(v != 1 for v in _attr(d, "dilations", [1, 1])):
            continue  # (any auto_pad of a 1x1 kernel with stride 1 pads nothing)
        users = cons.get(d.output[0], [])
        if len(users) != 1 or d.output[0] in outputs:
            continue
        p = users[0]
        if p.op_type != "Conv" or _attr(p, "group", 1) != 1 or p.input[0] != d.output[0] or p.input[1] not in init:
            continue
        if uses.get(p.input[1], 0) != 1 or uses.get(d.input[1], 0) != 1:
            continue  # shared weights
        has_bd = len(d.input) > 2 and d.input[2] != ""
        wp = nh.to_array(init[p.input[1]]).astype(np.float64)
        if has_bd and (d.input[2] not in init or list(wp.shape[2:]) != [1, 1]):
            continue  # a bias through a padded kxk conv is not a plain bias any more
        a = nh.to_array(wd).reshape(-1).astype(np.float64)
        has_bp = len(p.input) > 2 and p.input[2] != ""
        if has_bp and (p.input[2] not in init or uses.get(p.input[2], 0) != 1):
            continue
        bias = nh.to_array(init[p.input[2]]).astype(np.float64) if has_bp else np.zeros(wp.shape[0])
        if has_bd:
            bias = bias + wp.sum(axis=(2, 3)) @ nh.to_array(init[d.input[2]]).astype(np.float64)
        init[p.input[1]].CopyFrom(nh.from_array((wp * a[None, :, None, None]).astype(np.float32), p.input[1]))
        if has_bp:
            init[p.input[2]].CopyFrom(nh.from_array(bias.astype(np.float32), p.input[2]))
        elif has_bd:
            name = f"{p.name}/folded_bias"
            g.initializer.append(nh.from_array(bias.astype(np.float32), name))
            p.input.append(name)
        p.input[0] = d.input[0]
        g.node.remove(d)
        removed.append(d.name)
    if removed:
        used = {i for n in g.node for i in n.input}
        keep = [i for i in g.initializer if i.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
        vis = [v for v in g.value_info if v.name in used or v.name in outputs]
        del g.value_info[:]
        g.value_info.extend(vis)
    return removed


@dataclass
class _Site:
    producer: object  # the Conv whose output channels are scaled
    channels: int
    tensors: list[tuple[str, int]]  # quantized tensors on the way, with the channel offset there
    absorbers: list[tuple[object, int, str]]  # (conv, channel offset, "dw" | "dense")


def _width(t: str, prod, init) -> int | None:
    n = prod.get(t)
    if n is None:
        return None
    if n.op_type == "Conv" and n.input[1] in init:
        return init[n.input[1]].dims[0]
    if n.op_type in ("Relu", "MaxPool"):
        return _width(n.input[0], prod, init)
    if n.op_type == "Concat" and _attr(n, "axis") == 1:
        ws = [_width(i, prod, init) for i in n.input]
        return None if None in ws else sum(ws)
    return None


def equalization_sites(model) -> list[_Site]:
    """Convs whose output channels can be rescaled exactly, with where the scale is undone."""
    g = model.graph
    init = {i.name: i for i in g.initializer}
    prod, cons, uses = _maps(g)
    outputs = {o.name for o in g.output}
    sites = []
    for p in g.node:
        if p.op_type != "Conv" or len(p.input) < 2 or p.input[1] not in init or uses.get(p.input[1], 0) != 1:
            continue
        if len(p.input) > 2 and p.input[2] and (p.input[2] not in init or uses.get(p.input[2], 0) != 1):
            continue
        c_out = init[p.input[1]].dims[0]
        ok, tensors, absorbers = True, [], []
        stack = [(p.output[0], 0)]
        seen = set()
        while stack and ok:
            t, off = stack.pop()
            if t in outputs or (t, off) in seen:
                ok = t not in outputs
                continue
            seen.add((t, off))
            tensors.append((t, off))
            for c in cons.get(t, []):
                if c.op_type in ("Relu", "MaxPool") and c.input[0] == t:
                    stack.append((c.output[0], off))
                elif c.op_type == "Concat" and _attr(c, "axis") == 1:
                    o = 0
                    for i in c.input:
                        if i == t:
                            break
                        w = _width(i, prod, init)
                        if w is None:
                            ok = False
                            break
                        o += w
                    stack.append((c.output[0], off + o))
                elif (c.op_type == "Conv" and c.input[0] == t and c.input[1] in init
                      and uses.get(c.input[1], 0) == 1 and t not in c.input[1:]):  # fmt: skip
                    w = init[c.input[1]]
                    if _is_depthwise(c, w):
                        absorbers.append((c, off, "dw"))
                    elif _attr(c, "group", 1) == 1:
                        absorbers.append((c, off, "dense"))
                    else:
                        ok = False
                else:
                    ok = False
        if ok and absorbers:
            sites.append(_Site(p, c_out, tensors, absorbers))
    return sites


@dataclass
class ChannelStats:
    """Per-channel statistics of one NCHW tensor over the calibration frames.

    Attributes:
        lo, hi: per-channel minimum and maximum, shape (C,).
        sample: (C, K) values at K pixel positions drawn evenly from every frame.
    """

    lo: np.ndarray
    hi: np.ndarray
    sample: np.ndarray

    @property
    def absmax(self) -> np.ndarray:
        return np.maximum(np.abs(self.lo), np.abs(self.hi))


def channel_stats(model, inputs: Sequence[np.ndarray], tensors: Sequence[str], input_name: str = "image",
                  samples_per_frame: int = 128, progress: bool = False) -> dict[str, ChannelStats]:  # fmt: skip
    """Per-channel min/max and pixel samples of ``tensors`` (NCHW) over ``inputs`` (each (3, H, W))."""
    import onnx
    import onnxruntime as ort
    from tqdm import tqdm

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    want = set(tensors)
    names = [o.name for o in sess.get_outputs()]
    lo: dict[str, np.ndarray] = {}
    hi: dict[str, np.ndarray] = {}
    smp: dict[str, list[np.ndarray]] = {}
    for x in tqdm(inputs, desc="channel statistics", unit="frame", disable=not progress):
        for k, v in zip(names, sess.run(None, {input_name: x[None]}), strict=True):
            if k not in want or v.ndim != 4:
                continue
            flat = v[0].reshape(v.shape[1], -1)
            lo[k] = np.minimum(lo[k], flat.min(1)) if k in lo else flat.min(1)
            hi[k] = np.maximum(hi[k], flat.max(1)) if k in hi else flat.max(1)
            idx = np.linspace(0, flat.shape[1] - 1, min(samples_per_frame, flat.shape[1])).astype(int)
            smp.setdefault(k, []).append(flat[:, idx])
    return {k: ChannelStats(lo[k], hi[k], np.concatenate(smp[k], axis=1)) for k in lo}


def _fake_quant_act(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 asymmetric per-tensor quantize/dequantize, as ORT's QDQ does with range [lo, hi]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = np.clip(np.round(-lo / scale), 0, 255)
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


def _fake_quant_weight(w: np.ndarray) -> np.ndarray:
    """int8 symmetric per-output-channel quantize/dequantize of a (O, I) matrix."""
    scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return np.round(w / scale) * scale


@dataclass(frozen=True)
class EqualizedSite:
    """What :func:`equalize_ranges` did to one conv's output channels."""

    producer: str
    channels: int
    min_log2: int
    max_log2: int
    alpha: float | None  # None: undone in depthwise weights only (no trade-off)


ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _exponents(alpha: float, ok: np.ndarray, wrel: np.ndarray, rel: np.ndarray, room: np.ndarray,
               max_log2: int) -> np.ndarray:  # fmt: skip
    """Power-of-two exponents of a site whose scale a dense conv undoes (SmoothQuant-style balance)."""
    x = np.where(ok, np.round((1 - alpha) * np.log2(np.where(ok, wrel, 1.0)) - alpha * np.log2(rel)), 0.0)
    return np.clip(np.minimum(x, room), -max_log2, max_log2)


def equalize_ranges(model, stats: dict[str, ChannelStats], *, alpha: float | None = None,
                    max_log2: int = 8) -> list[EqualizedSite]:  # fmt: skip
    """Rescale conv output channels by powers of two so each quantized tensor uses its range well (in place).

    Where every consumer undoes the scale in depthwise weights (free with per-channel weights), each
    channel is raised as far as the tensor's range allows: to its own largest channel, or to the
    range of the other channels of a concatenation it joins. Where a dense conv undoes it (its input
    columns shrink while the activation grows), the exponent is
    ``round((1 - alpha) * log2(w_c) - alpha * log2(a_c))`` with ``a_c`` the channel's share of the
    tensor range and ``w_c`` its input column's share of the dense conv's row ranges, SmoothQuant-style;
    with ``alpha=None`` each site picks the alpha from :data:`ALPHAS` that minimises the simulated
    output error of its 1x1 dense consumers on the sampled pixels (0.25 for kxk consumers).

    Args:
        model: float ONNX model, changed in place (exactly equivalent in float).
        stats: per-channel statistics of the site tensors (:func:`channel_stats`).
        alpha: fixed trade-off, or None to search it per site.
        max_log2: largest |exponent|.

    Returns:
        one :class:`EqualizedSite` per rescaled conv.
    """
    from onnx import numpy_helper as nh

    init = {i.name: i for i in model.graph.initializer}

    def arr(name):
        return nh.to_array(init[name]).astype(np.float64)

    def put(name, a):
        init[name].CopyFrom(nh.from_array(a.astype(np.float32), name))

    done = []
    for site in equalization_sites(model):
        c_n = site.channels
        feeds = [(c.input[0], off) for c, off, _ in site.absorbers]
        if any(t not in stats for t, _ in feeds):
            continue
        r = np.max([stats[t].absmax[off : off + c_n] for t, off in feeds], axis=0).astype(np.float64)
        live = r > 1e-6 * max(float(r.max()), 1e-30)
        if not live.any():
            continue
        # Headroom: how far a channel may grow. Tensors holding only this conv's channels rescale with
        # them (no limit but the equalization itself); a concatenation's other channels set a ceiling.
        ceiling = np.inf
        for t, off in site.tensors:
            st = stats.get(t)
            if st is None or st.absmax.shape[0] == c_n:
                continue
            others = np.delete(st.absmax, np.arange(off, off + c_n))
            if others.size and others.max() > 0:
                ceiling = min(ceiling, float(others.max()))
        target = ceiling if np.isfinite(ceiling) else float(r.max())
        room = np.where(live, np.floor(np.log2(target / np.where(live, r, 1.0))), 0.0)
        dense = [(c, off) for c, off, kind in site.absorbers if kind == "dense"]
        if not dense:
            e, chosen = room, None
        else:
            rel = np.where(live, r / r.max(), 1.0)
            wrel = np.zeros(c_n)
            mats = []
            for c, off in dense:
                w = np.abs(arr(c.input[1]))
                rows = w.max(axis=tuple(range(1, w.ndim)), keepdims=True)
                cols = (w / np.maximum(rows, 1e-30)).max(axis=tuple(i for i in range(w.ndim) if i != 1))
                wrel = np.maximum(wrel, cols[off : off + c_n])
                if w.ndim == 4 and w.shape[2:] == (1, 1):
                    mats.append((arr(c.input[1])[:, :, 0, 0], c.input[0], off))
            ok = live & (wrel > 0)
            if alpha is not None or len(mats) != len(dense):
                chosen = 0.25 if alpha is None else alpha
            else:
                best = None
                for a in ALPHAS:
                    sc = 2.0 ** _exponents(a, ok, wrel, rel, room, max_log2)
                    err = 0.0
                    for w, t, off in mats:
                        st = stats[t]
                        full = np.ones(st.lo.shape[0])
                        full[off : off + c_n] = sc
                        x = st.sample.astype(np.float64)
                        xq = _fake_quant_act(
                            x * full[:, None], float((st.lo * full).min()), float((st.hi * full).max())
                        )
                        got = _fake_quant_weight(w / full[None, :]) @ xq
                        err += float(((got - w @ x) ** 2).sum())
                    if best is None or err < best[0] * (1 - 1e-9):
                        best = (err, a)
                chosen = best[1]
            e = _exponents(chosen, ok, wrel, rel, room, max_log2)
        e = np.clip(e, -max_log2, max_log2)
        if not e.any():
            continue
        s = 2.0**e
        p = site.producer
        w = arr(p.input[1])
        put(p.input[1], w * s.reshape(-1, *([1] * (w.ndim - 1))))
        if len(p.input) > 2 and p.input[2]:
            put(p.input[2], arr(p.input[2]) * s)
        for c, off, kind in site.absorbers:
            w = arr(c.input[1])
            if kind == "dw":
                w[off : off + c_n] /= s.reshape(-1, *([1] * (w.ndim - 1)))
            else:
                w[:, off : off + c_n] /= s.reshape(1, -1, *([1] * (w.ndim - 2)))
            put(c.input[1], w)
        # Later sites see this site's channels at their new size.
        for t, off in site.tensors:
            if t in stats:
                st = stats[t]
                sl = slice(off, off + c_n)
                st.lo[sl] *= s
                st.hi[sl] *= s
                st.sample[sl] *= s[:, None]
        done.append(EqualizedSite(p.name, c_n, int(e.min()), int(e.max()), chosen))
    return done
