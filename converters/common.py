"""Shared export machinery: optional imports, timed steps, IR/opset stamping, atomic writes."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgepose.fileio import atomic_path

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
