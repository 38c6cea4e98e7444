"""What every part of the board checks shares: paths, the error, the log line, step timing, running commands.

``DATA`` is the shared data folder; the CLI rebinds it from ``--data``, so the other modules read it as
``common.DATA`` at call time and never import the name itself.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGEPOSE_CACHE", Path.home() / ".cache" / "edgepose"))
DATA = Path(os.environ.get("DATA", REPO.parent / "shared" / "data"))
HOST_PY = Path(os.environ.get("VPY", REPO / ".venv" / "bin" / "python"))


class CheckError(RuntimeError):
    """A step could not run; the message says what to do."""


# -- small helpers ---------------------------------------------------------------------------------
def host_cpu() -> str:
    """The host CPU's model and the SIMD flags that decide ONNX Runtime's int8 kernels."""
    from edgepose.bench.machine import cpu_model
    from edgepose.cpu import cpu_flags

    flags = cpu_flags()
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{cpu_model()}, {os.cpu_count()} CPUs, {' '.join(simd) or 'no x86 SIMD flags'}"


def say(msg: str) -> None:
    print(f"[boards] {msg}", flush=True)


class Steps:
    """Times each step and keeps them for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        say(f"{name} ...")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt_s = time.perf_counter() - t0
            self.seconds[name] = round(dt_s, 1)
            say(f"{name}: {dt_s:.1f} s")


def sh(cmd: list[str], *, timeout: float, env: dict | None = None, capture: bool = False,
       check: bool = True, nice: bool = False) -> subprocess.CompletedProcess:  # fmt: skip
    """Run ``cmd`` with a time limit (never hang); raise CheckError with its output's tail on failure."""
    if nice:
        cmd = ["nice", "-n", "10", *cmd]
    try:
        p = subprocess.run(cmd, env=env, timeout=timeout, text=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE if capture else None,
                           stderr=subprocess.STDOUT if capture else None)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise CheckError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from e
    except FileNotFoundError as e:
        raise CheckError(f"cannot run {cmd[0]}: {e}") from e
    if check and p.returncode != 0:
        tail = (p.stdout or "")[-3000:] if capture else "(output above)"
        raise CheckError(f"exit {p.returncode}: {' '.join(cmd)}\n{tail}")
    return p


def clean_env(**extra: str) -> dict[str, str]:
    """A clean environment: no host pip configuration, no virtualenv, no proxies of the host's venv."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    env.update(extra)
    return env
