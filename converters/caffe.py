"""CMU OpenPose Caffe networks (``.prototxt`` + ``.caffemodel``) -> self-describing ONNX models.

No Caffe, no protobuf classes and no third-party converter: the prototxt is read with a small
text-format parser and the weights with a hand-written wire-format decoder
(:mod:`converters.caffe_proto`); the layers are planned and translated to ONNX by
:mod:`converters.caffe_graph`. This module drives the steps (each timed by
:func:`converters.common.step`), runs the parity check and is the CLI:

1. parse the prototxt and plan the graph: every layer must be one of ``Input``, ``Convolution``,
   ``ReLU`` (``negative_slope`` -> LeakyRelu), ``PReLU``, ``Pooling`` (MAX/AVE, Caffe's CEIL/FLOOR
   rounding reproduced exactly) or ``Concat``; in-place layers are followed; channel counts are
   inferred so that the weights can be checked against them;
2. find the heads: the network ends in a Concat of the heatmap branch and the PAF branch; its two
   inputs become the outputs ``heatmaps`` (N, parts+1, H/8, W/8) and ``pafs`` (N, 2*limbs, H/8, W/8)
   (which is which is decided by their channel counts), and the layout is inferred from the total
   channel count or checked against ``--layout``;
3. read the caffemodel and check every layer's blobs (count and shape) against the plan;
4. build the ONNX graph (input ``image`` float32 NCHW BGR with dynamic N/H/W), simplify with
   onnxsim, stamp IR version and opset, write the metadata (CMU pre-processing: BGR,
   ``(pixel - 128) / 256``, preferred size 656x368);
5. parity: run the ONNX model and OpenCV's Caffe importer (``cv2.dnn.readNetFromCaffe``, OpenCV
   4.x) on the same input and refuse to write when ``max|onnx - opencv| / max|opencv|`` exceeds
   the tolerance (skipped with a warning where OpenCV has no Caffe reader);
6. write atomically (temporary file, then rename). On any error nothing is written.

Example:
    $ edgepose convert caffe --prototxt pose/coco/pose_deploy_linevec.prototxt \\
          --caffemodel pose/coco/pose_iter_440000.caffemodel --out models/openpose_coco.onnx

    >>> from converters.caffe import convert_caffe  # doctest: +SKIP
    >>> convert_caffe("pose_deploy.prototxt", "pose_iter_584000.caffemodel", "body25.onnx")  # doctest: +SKIP
    PosixPath('body25.onnx')
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from converters import __version__
from converters.caffe_graph import (
    CAFFE_LAYOUTS,
    SUPPORTED_LAYERS,
    Heads,
    Plan,
    build_onnx,
    expected_blob_shapes,
    find_heads,
    parse_prototxt_file,
    plan_network,
)
from converters.caffe_proto import CaffeFormatError, read_caffemodel, write_caffemodel
from converters.common import (
    OPSET,
    ExportError,
    check_writable,
    cli_main,
    require,
    save_atomic,
    size_arg,
    stamp_versions,
    step,
)
from converters.common import simplify as onnxsim_simplify
from converters.graph import pad_for_nchwc
from converters.metadata import set_metadata, sha256_file
from edgepose.meta import HEATMAPS, INPUT, PAFS, ModelMeta

log = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_LAYERS",
    "CAFFE_LAYOUTS",
    "Plan",
    "plan_network",
    "expected_blob_shapes",
    "Heads",
    "find_heads",
    "build_onnx",
    "check_parity",
    "convert_caffe",
    "read_caffemodel",
    "write_caffemodel",
    "add_arguments",
    "run",
    "main",
]

#: CMU's default network resolution (``--net_resolution -1x368`` on 16:9 video), (width, height).
DEFAULT_INPUT_SIZE = (656, 368)
#: CMU pre-processing: ``(pixel - 128) / 256`` on BGR pixels in 0..255.
CMU_MEAN, CMU_SCALE = 128.0, 1.0 / 256.0
PARITY_SIZE = (184, 184)


# --------------------------------------------------------------------------------------------
# Parity against OpenCV's Caffe importer
# --------------------------------------------------------------------------------------------


def opencv_can_read_caffe() -> bool:
    """True when the installed OpenCV has ``cv2.dnn.readNetFromCaffe`` (4.x; OpenCV 5 dropped it)."""
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(getattr(cv2, "dnn", None), "readNetFromCaffe")


def parity_input(image: str | Path | np.ndarray | None = None, size: tuple[int, int] = PARITY_SIZE) -> np.ndarray:
    """A (1, 3, H, W) float32 CMU-normalised blob: a BGR image resized to ``size`` = (w, h).

    Without an image, a deterministic synthetic picture (smooth gradients, a disc and seeded noise)
    is used, so the check needs no data files.
    """
    import cv2

    w, h = size
    if image is None:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1)
        img[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 4) ** 2] = (40, 200, 90)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    elif isinstance(image, np.ndarray):
        img = image
    else:
        img = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if img is None:
            raise ExportError(f"cannot read the parity image {image}")
    blob = cv2.dnn.blobFromImage(img, CMU_SCALE, (w, h), (CMU_MEAN,) * 3, swapRB=False, crop=False)
    return np.ascontiguousarray(blob, dtype=np.float32)


def run_opencv(prototxt: str | Path, caffemodel: str | Path, blob: np.ndarray) -> np.ndarray:
    """The Caffe network's output for ``blob`` according to OpenCV's Caffe importer."""
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.setInput(blob)
    return np.asarray(net.forward(), dtype=np.float32)


def run_onnx(model, blob: np.ndarray, threads: int = 0) -> np.ndarray:
    """Run an edgepose model; return heatmaps and PAFs concatenated on channels (Caffe's order)."""
    ort = require("onnxruntime", "cpu")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    data = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    hm, paf = sess.run([HEATMAPS, PAFS], {INPUT: blob})
    return np.concatenate([hm, paf], axis=1)


def relative_difference(got: np.ndarray, ref: np.ndarray) -> float:
    """``max|got - ref| / max|ref|`` (the parity measure)."""
    if got.shape != ref.shape:
        raise ExportError(f"parity: ONNX output {got.shape} but OpenCV {ref.shape}")
    denom = float(np.abs(ref).max())
    return float(np.abs(got - ref).max()) / (denom if denom > 0 else 1.0)


def check_parity(model, prototxt: str | Path, caffemodel: str | Path, heads: Heads | None = None,
                 image: str | Path | np.ndarray | None = None, size: tuple[int, int] = PARITY_SIZE,
                 tolerance: float = 1e-4) -> float:  # fmt: skip
    """Compare the ONNX model with OpenCV's Caffe importer on one input; return the relative difference.

    OpenCV's output is the final Concat (Caffe's order); when the converter swapped the branches
    (PAFs first in the prototxt), ``heads`` says so and the comparison follows.

    Raises:
        ExportError: the relative difference exceeds ``tolerance`` or the shapes differ.
    """
    blob = parity_input(image, size)
    ref = run_opencv(prototxt, caffemodel, blob)
    got = run_onnx(model, blob)
    if heads is not None and heads.pafs_first:
        hm_c = heads.layout.heatmap_channel_count
        got = np.concatenate([got[:, hm_c:], got[:, :hm_c]], axis=1)
    rel = relative_difference(got, ref)
    log.info("parity vs OpenCV at %dx%d: max|onnx - opencv| / max|opencv| = %.2e", size[0], size[1], rel)
    if not rel <= tolerance:
        raise ExportError(
            f"parity check failed: max|onnx - opencv| / max|opencv| = {rel:.3e} > tolerance {tolerance:g}; model not written"
        )
    return rel


# --------------------------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------------------------


def convert_caffe(
    prototxt: str | Path,
    caffemodel: str | Path,
    out: str | Path,
    layout: str | None = None,
    opset: int = OPSET,
    simplify: bool = True,
    *,
    parity: bool | None = None,
    parity_image: str | Path | None = None,
    parity_size: tuple[int, int] = PARITY_SIZE,
    tolerance: float = 1e-4,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    pad_channels: bool = True,
) -> Path:
    """Convert a CMU OpenPose Caffe network to an edgepose ONNX model; return ``out``.

    Args:
        prototxt: the network definition (``pose_deploy*.prototxt``).
        caffemodel: its weights (``pose_iter_*.caffemodel``).
        out: where to write the ``.onnx`` file.
        layout: ``coco18``, ``mpi15`` or ``body25``; inferred from the output channels when None.
        opset: ONNX opset of the default domain.
        simplify: run onnxsim.
        parity: compare with OpenCV's Caffe importer before writing: True requires it, None runs it
            where OpenCV has a Caffe reader, False skips it.
        parity_image: a BGR image for the parity check (default: a synthetic picture).
        parity_size: (w, h) of the parity input.
        tolerance: the largest ``max|onnx - opencv| / max|opencv|`` accepted.
        input_size: preferred (w, h) written into the metadata.
        pad_channels: pad concatenated stage inputs with zero channels to ONNX Runtime's NCHWc
            block (:func:`converters.graph.pad_depthwise_channels`; same outputs, faster on CPU).

    Raises:
        ExportError: any step failed (unsupported layer, weights that do not match, truncated
            caffemodel, wrong layout, parity failure ...); nothing is written then.

    Example:
        >>> convert_caffe("pose_deploy_linevec.prototxt", "pose_iter_440000.caffemodel",
        ...               "models/openpose_coco.onnx")  # doctest: +SKIP
    """
    prototxt, caffemodel = Path(prototxt), Path(caffemodel)
    out = check_writable(Path(out))
    onnx = require("onnx")
    if not caffemodel.is_file():
        raise ExportError(f"caffemodel {caffemodel} does not exist")
    with step("parse prototxt"):
        net = parse_prototxt_file(prototxt)
        plan = plan_network(net, where=str(prototxt))
        heads = find_heads(plan, layout, where=str(prototxt))
    log.info("%s: %d layers, layout %s, stride %d", prototxt.name, len(plan.ops), heads.layout.id, heads.stride)
    with step("read caffemodel"):
        try:
            weights = read_caffemodel(caffemodel)
        except CaffeFormatError as e:
            raise ExportError(str(e)) from e
    with step("build ONNX"):
        model = build_onnx(plan, weights, heads, opset=opset, source=str(caffemodel))
        del weights
    if simplify:
        with step("onnxsim"):
            model = onnxsim_simplify(model)
    padding = "none"
    if pad_channels:
        model, padding = pad_for_nchwc(model)
    stamp_versions(model, opset=opset)
    model.producer_name, model.producer_version = "edgepose-converters", __version__
    meta = ModelMeta(
        layout=heads.layout, stride=heads.stride, channel_order="BGR", scale=CMU_SCALE, mean=CMU_MEAN,
        input_size=tuple(input_size), variant="fp32", source_sha256=sha256_file(caffemodel),
    )  # fmt: skip
    extra = {"source_name": caffemodel.name, "prototxt_sha256": sha256_file(prototxt), "source_format": "caffe",
             "channel_padding": padding}  # fmt: skip
    if plan.name:
        extra["source_network"] = plan.name
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError
        raise ExportError(f"the translated model is not valid ONNX: {e}") from e
    run_parity = opencv_can_read_caffe() if parity is None else parity
    if run_parity:
        if not opencv_can_read_caffe():
            raise ExportError("the parity check needs OpenCV 4.x with cv2.dnn.readNetFromCaffe "
                              "(pip install 'opencv-python-headless<5'), or pass --no-parity")
        with step("parity vs OpenCV"):
            rel = check_parity(model, prototxt, caffemodel, heads, parity_image, parity_size, tolerance)
        extra["parity_opencv_max_rel_diff"] = f"{rel:.3e}"
    elif parity is None:
        log.warning("OpenCV has no Caffe reader (cv2.dnn.readNetFromCaffe): parity check skipped")
    set_metadata(model, meta, **extra)
    with step("write"):
        save_atomic(model, out)
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prototxt", type=Path, required=True, help="network definition (pose_deploy*.prototxt)")
    p.add_argument("--caffemodel", type=Path, required=True, help="weights (pose_iter_*.caffemodel)")
    p.add_argument("--out", type=Path, required=True, help="where to write the .onnx model")
    p.add_argument("--layout", choices=CAFFE_LAYOUTS, help="keypoint layout (default: inferred from the output channels)")
    p.add_argument("--opset", type=int, default=OPSET, help="ONNX opset (default %(default)s)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    p.add_argument("--no-pad-channels", action="store_true",
                   help="keep the stage inputs' channel counts (slower on CPU; same outputs)")  # fmt: skip
    p.add_argument("--no-parity", action="store_true", help="skip the parity check against OpenCV's Caffe importer")
    p.add_argument("--parity-image", type=Path, help="image for the parity check (default: a synthetic picture)")
    p.add_argument("--parity-size", type=size_arg, default=PARITY_SIZE, metavar="WxH",
                   help=f"network input size for the parity check (default {PARITY_SIZE[0]}x{PARITY_SIZE[1]})")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="max |onnx - opencv| / max |opencv| allowed (default %(default)g)")
    p.add_argument("--input-size", type=size_arg, default=DEFAULT_INPUT_SIZE, metavar="WxH",
                   help="preferred input size written into the metadata "
                   f"(default {DEFAULT_INPUT_SIZE[0]}x{DEFAULT_INPUT_SIZE[1]})")


def run(args: argparse.Namespace) -> int:
    out = convert_caffe(args.prototxt, args.caffemodel, args.out, layout=args.layout, opset=args.opset,
                        simplify=not args.no_simplify, parity=False if args.no_parity else None,
                        parity_image=args.parity_image, parity_size=args.parity_size, tolerance=args.tolerance,
                        input_size=args.input_size, pad_channels=not args.no_pad_channels)  # fmt: skip
    print(f"model: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m converters.caffe --prototxt P --caffemodel W --out M``; exit 2 on an export error."""
    return cli_main("edgepose convert caffe", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
