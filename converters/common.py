"""Shared export machinery: optional imports, timed steps, IR/opset stamping, atomic writes, graph I/O."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgepose.fileio import atomic_path
from edgepose.meta import HEATMAPS, PAFS

log = logging.getLogger(__name__)

#: ONNX IR version and default opset written into every model: ORT 1.16 (and the JetPack builds)
#: load IR 9 / opset 19 at most; IR 8 with opset 17 loads on every ORT from 1.12 on.
IR_VERSION = 8
OPSET = 17


class ExportError(RuntimeError):
    """A conversion step failed; the message says what is wrong and what to do."""


def require(module: str, extra: str = "convert"):
    """Import an optional dependency or fail with an ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{module} is needed for this step but is not installed ({e}); "
            f"install it with: pip install 'edgepose[{extra}]'"
        ) from e


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Log one export step with its duration, in one format for every converter."""
    t0 = time.perf_counter()
    log.info("%-22s ...", name)
    try:
        yield
    except Exception:
        log.error("%-22s failed after %.1f s", name, time.perf_counter() - t0)
        raise
    log.info("%-22s done in %.1f s", name, time.perf_counter() - t0)


def stamp_versions(model, opset: int = OPSET, ir_version: int = IR_VERSION) -> None:
    """Set the IR version and the default-domain opset explicitly (older ORT builds load it)."""
    model.ir_version = ir_version
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = opset


def size_arg(text: str) -> tuple[int, int]:
    """argparse type for ``WxH`` options (``--input-size 656x368``)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 656x368, not {text!r}") from None
    return w, h


def check_writable(out: str | Path) -> Path:
    """Fail early, with advice, when ``out`` cannot be written."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the output folder {parent}: {e.strerror}; choose another --out") from e
    try:  # probe for real: os.access says yes to root even where the file system refuses
        fd, probe = tempfile.mkstemp(prefix=".edgepose-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"the output folder {parent} is not writable ({e.strerror}); choose another --out") from e
    if out.exists() and out.is_dir():
        raise ExportError(f"{out} is a folder; --out must name a .onnx file")
    return out


def save_atomic(model, out: str | Path) -> int:
    """Check the model and write it to ``out`` via a temporary file and a rename.

    Returns:
        the size of the written file in bytes.
    """
    onnx = require("onnx")
    out = check_writable(out)
    onnx.checker.check_model(model)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    size = out.stat().st_size
    log.info("wrote %s (%.2f MB)", out, size / 1e6)
    return size


def simplify(model):
    """Run onnxsim on a model with dynamic spatial dims; return the simplified model."""
    onnxsim = require("onnxsim")
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model")
    return simplified


def rename_tensors(nodes, names: dict[str, str]) -> None:
    """Rename tensors in place: every node input or output named a key of ``names`` takes its value."""
    for n in nodes:
        for io in (n.input, n.output):
            for i, t in enumerate(io):
                if t in names:
                    io[i] = names[t]


def map_outputs(heatmap_channels: int, paf_channels: int) -> list:
    """The graph outputs every model has: ``heatmaps`` (N, parts+1, H/s, W/s) and ``pafs`` (N, 2*limbs,
    H/s, W/s), float32, batch and size dynamic (``onnx.ValueInfoProto`` s)."""
    onnx = require("onnx")
    fp = onnx.TensorProto.FLOAT
    return [
        onnx.helper.make_tensor_value_info(HEATMAPS, fp, ["batch", heatmap_channels, "out_height", "out_width"]),
        onnx.helper.make_tensor_value_info(PAFS, fp, ["batch", paf_channels, "out_height", "out_width"]),
    ]


def cli_main(prog: str, doc: str, add_arguments, run, argv: list[str] | None = None,
             errors: tuple[type[BaseException], ...] = ()) -> int:  # fmt: skip
    """What ``python -m converters.<name>`` does: parse ``argv`` with ``add_arguments``, log at INFO and
    ``run``; an :class:`ExportError` (or one of ``errors``) is printed and exits 2."""
    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ExportError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
