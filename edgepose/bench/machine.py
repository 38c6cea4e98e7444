"""What a benchmark ran on: CPU, cores, memory, library versions, execution providers, checkout.

Standard library only (psutil, when installed, gives the physical core count).

Example:
    >>> info = machine_info()
    >>> info["cores"]["logical"] >= 1
    True
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from edgepose.cpu import cpu_flags

__all__ = ["machine_info", "cpu_model", "physical_cores", "usable_cores", "host_name", "checkout_root"]

#: CPU flags worth knowing when reading CPU numbers (SIMD width, int8 dot products, AMX)
_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
          "amx_bf16", "asimd", "asimddp", "sve")  # fmt: skip


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name``, or :func:`platform.processor`)."""
    m = re.search(r"^model name\s*:\s*(.+)$", _cpuinfo(), re.M)
    if m:
        return m.group(1).strip()
    return platform.processor() or platform.machine()


def _cpu_ids() -> dict[str, str]:
    info = _cpuinfo()
    out = {}
    for key, name in (("vendor_id", "vendor"), ("cpu family", "family"), ("model", "model_id"), ("stepping", "stepping")):
        m = re.search(rf"^{key}\s*:\s*(.+)$", info, re.M)
        if m:
            out[name] = m.group(1).strip()
    return out


def _cpu_flags() -> list[str]:
    have = cpu_flags(_cpuinfo())
    return [f for f in _FLAGS if f in have]


def usable_cores() -> int:
    """Logical CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical cores (psutil when installed, else distinct (package, core id) pairs, else logical CPUs)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
        if n:
            return min(int(n), usable_cores())
    except ImportError:
        pass
    pairs = set(re.findall(r"physical id\s*:\s*(\d+)[\s\S]*?core id\s*:\s*(\d+)", _cpuinfo()))
    return min(len(pairs), usable_cores()) if pairs else usable_cores()


def _version(*dists: str) -> str | None:
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def checkout_root() -> Path | None:
    """The edgepose repository this package runs from, or None (installed from a wheel).

    A checkout has ``pyproject.toml`` and the ``benchmarks/`` folder beside the ``edgepose`` package.
    """
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "benchmarks" / "__init__.py").is_file():
        return root
    return None


def _git(root: Path | None) -> str | None:
    if root is None:
        return None
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)  # fmt: skip
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def host_name() -> str:
    """The host name, safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname() or "host").strip("-") or "host"


def machine_info() -> dict:
    """Everything a reader needs to place the numbers: CPU, cores, memory, versions, providers, date."""
    from edgepose._ort import ort

    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    return {
        "host": host_name(),
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "cpu": {"model": cpu_model(), **_cpu_ids(), "flags": _cpu_flags()},
        "cores": {"logical": os.cpu_count() or 1, "usable": usable_cores(), "physical": physical_cores()},
        "memory_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": list(ort.get_available_providers()),
        "versions": {
            "numpy": _version("numpy"),
            "opencv": _version("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
            "tensorflow": _version("tensorflow-cpu", "tensorflow", "tensorflow-intel"),
            "pycocotools": _version("pycocotools"),
        },
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "MKL_NUM_THREADS") if k in os.environ},
        "git": _git(checkout_root()),
    }
