"""A real ``tritonserver`` on this machine, for development and tests (``edgepose triton serve``).

The server is the one the PyPI wheel ``nvidia-pytriton`` bundles (Triton 2.51, Python backend only),
installed in its own environment (``make triton-venv`` makes ``.venv-triton``: the wheel needs
numpy<2). That environment also holds edgepose, onnxruntime and OpenCV: the Python backend's stub
runs the models with the first ``python3`` on its ``PATH``, so the launcher puts the environment's
``bin`` first. Production runs NVIDIA's container instead (docs/triton.md).

What the launcher does: copies the Python backend (``libtriton_python.so``, its utilities, and the
stub for the environment's Python version) into one backend folder, points ``LD_LIBRARY_PATH`` at
the wheel's bundled libraries, gives every server its own shared-memory prefix, serves only the
models whose backend is there (and names the others), and waits until the server is ready.

The model-repository API stays closed: the server runs with ``--model-control-mode=none`` on a
private repository folder that links only the models it serves, so a client cannot load its own
Python model (a ``file:1/model.py`` load request runs code as the server's user) nor unload ours.
The server binds loopback unless told otherwise; :func:`exposure_warning` says what another address
opens. ``require_header`` makes every request (health included) carry a shared secret header
(Triton's restricted-API options); ``tls`` serves gRPC over TLS (``grpcs://``).

Example:
    >>> with TritonServer("triton_repo") as srv:  # doctest: +SKIP
    ...     print(srv.grpc_url, srv.loaded, srv.skipped)
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from itertools import count
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["TritonServer", "TritonInstall", "ServerError", "log_tail", "find_install", "free_port", "repository_models",
           "exposure_warning", "RESTRICTABLE_APIS"]

#: every API group Triton 2.51's restricted-API options take (``require_header`` restricts them all)
RESTRICTABLE_APIS = ("health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
                     "statistics", "trace", "logging")

#: backends built into the server core (no backend library needed)
_BUILTIN = {"ensemble"}
_PLATFORMS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch",
              "tensorflow_savedmodel": "tensorflow", "tensorflow_graphdef": "tensorflow", "ensemble": "ensemble"}  # fmt: skip
_SEQ = count()


class ServerError(ConnectionError):
    """A Triton server is missing, cannot start, is unreachable or refused a request; the message says why."""


@dataclass
class TritonInstall:
    """Where the server binary, its bundled libraries and the Python backend are."""

    binary: Path
    libs: Path | None
    python_backend: Path | None  # folder with libtriton_python.so and triton_python_backend_utils.py
    stubs: Path | None  # python_backend_stubs/ (one folder per Python version)
    env: Path  # the Python environment the models run in (its bin/ goes first on PATH)


def _site_packages(env: Path) -> list[Path]:
    return sorted(env.glob("lib/python3.*/site-packages"))


def find_install(env: str | Path | None = None) -> TritonInstall:
    """Find the pytriton wheel's server in a Python environment.

    Args:
        env: the environment's folder; default ``$EDGEPOSE_TRITON_ENV``, then ``.venv-triton`` in the
            current folder, then the running interpreter's environment.

    Raises:
        ServerError: no ``tritonserver`` there (the message says how to make the environment).
    """
    checkout = Path(__file__).resolve().parents[2] / ".venv-triton"  # an editable install's checkout
    cands = [Path(env)] if env else [Path(p) for p in (os.environ.get("EDGEPOSE_TRITON_ENV"), ".venv-triton") if p]
    if not env:
        cands += [checkout, Path(sys.prefix)]
    cands = list(dict.fromkeys(c.resolve() for c in cands))
    for e in cands:
        for sp in _site_packages(e):
            root = sp / "pytriton" / "tritonserver"
            binary = root / "bin" / "tritonserver"
            if binary.is_file():
                libs = sp / "nvidia_pytriton.libs"
                pyb = root / "backends" / "python"
                return TritonInstall(binary, libs if libs.is_dir() else None, pyb if pyb.is_dir() else None,
                                     root / "python_backend_stubs", e.resolve())  # fmt: skip
    where = ", ".join(str(c) for c in cands)
    raise ServerError(
        f"no tritonserver found (looked for the nvidia-pytriton wheel in {where}); make the server's environment "
        "with `make triton-venv`, or pass --triton-env DIR"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def repository_models(repo: Path) -> dict[str, dict]:
    """Model folder -> ``{"backend": name, "steps": [models an ensemble calls]}`` from each ``config.pbtxt``."""
    from edgepose.triton.repo import parse_config

    out = {}
    for cfg_path in sorted(Path(repo).glob("*/config.pbtxt")):
        cfg = parse_config(cfg_path.read_text())
        backend = cfg.backend or _PLATFORMS.get(cfg.platform, cfg.platform)
        steps = [s.model_name for s in cfg.ensemble_scheduling.step]
        out[cfg_path.parent.name] = {"backend": backend, "steps": steps}
    return out


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """What serving on ``host`` opens, or None for a loopback address."""
    if is_loopback(host):
        return None
    return (f"tritonserver listens on {host}: anyone who reaches its ports can run inference and read the models' "
            "metadata (the model-repository API stays closed); keep it behind a firewall or TLS proxy, or use "
            "--host 127.0.0.1")


def _libpython_present(version: str) -> bool:
    name = f"libpython{version}.so.1.0"
    dirs = [*os.environ.get("LD_LIBRARY_PATH", "").split(":"), "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
            "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib", "/lib64", "/usr/lib64"]  # fmt: skip
    return any(d and (Path(d) / name).exists() for d in dirs)


class TritonServer:
    """A ``tritonserver`` process serving ``repo`` on loopback.

    Args:
        repo: the model repository (``edgepose triton export``).
        grpc_port, http_port: ports (0: a free one).
        host: address to listen on (loopback by default).
        env: the Python environment with the pytriton wheel and edgepose (see :func:`find_install`).
        models: the models to load (default: every one whose backend the server has).
        startup_timeout: seconds to wait for readiness.
        log_path: where the server's output goes (default: a file in its temporary folder).
        require_header: ``(name, value)``: every request (health, inference, metadata, ...) must carry
            this header; the others are refused (Triton's restricted-API options).
        tls: ``(certificate file, key file)``: gRPC over TLS (``grpcs://``; HTTP stays plain: put a TLS
            proxy in front of it).
        warn_exposure: log :func:`exposure_warning` for a non-loopback ``host`` (the CLI prints it itself).

    Raises:
        ServerError: no server binary, no Python backend, or the server did not become ready.
    """

    def __init__(self, repo: str | Path, *, grpc_port: int = 0, http_port: int = 0, host: str = "127.0.0.1",
                 env: str | Path | None = None, models: list[str] | None = None, startup_timeout: float = 60.0,
                 log_path: str | Path | None = None, require_header: tuple[str, str] | None = None,
                 tls: tuple[str | Path, str | Path] | None = None, warn_exposure: bool = True) -> None:  # fmt: skip
        warn = exposure_warning(host) if warn_exposure else None
        if warn:  # said first, before anything can fail
            log.warning("%s", warn)
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise FileNotFoundError(f"no model repository at {repo}")
        self.install = find_install(env)
        self.host = host
        self.grpc_port = grpc_port or free_port(host)
        self.http_port = http_port or free_port(host)
        self.startup_timeout = startup_timeout
        self._models = models
        self._log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.loaded: list[str] = []
        self.skipped: dict[str, str] = {}  # model -> why it was not loaded
        self._tmp: Path | None = None
        self.require_header = require_header
        self.tls = tls
        if require_header and (not require_header[0] or any(c in "=,: " for c in require_header[0])):
            raise ValueError("the required header's name must be a plain HTTP header name")

    # -- urls ---------------------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{'grpcs' if self.tls else 'grpc'}://{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def client_headers(self) -> dict[str, str]:
        """The headers a client sends with ``require_header`` (Triton 2.51's gRPC side expects the name
        prefixed with ``triton-grpc-protocol-``; HTTP the name as it is)."""
        if not self.require_header:
            return {}
        k, v = self.require_header
        return {k: v, f"triton-grpc-protocol-{k}": v}

    @property
    def log_text(self) -> str:
        """The server's output so far (kept after :meth:`stop`)."""
        if getattr(self, "_last_log", None) is not None:
            return self._last_log
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    # -- set-up -------------------------------------------------------------------------------------
    def _backend_dir(self) -> Path:
        inst = self.install
        root = self._tmp / "backends"
        if inst.python_backend is None:
            return root  # no Python backend: only ensembles (and nothing they need) can load
        sp = _site_packages(inst.env)
        version = sp[0].parent.name.removeprefix("python") if sp else f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = inst.stubs / version / "triton_python_backend_stub" if inst.stubs else None
        if stub is None or not stub.is_file():
            raise ServerError(f"the pytriton wheel in {inst.env} has no Python backend stub for Python {version}")
        if not _libpython_present(version):
            raise ServerError(f"the Python backend stub needs libpython{version}.so.1.0 "
                              f"(Debian/Ubuntu: apt-get install libpython{version})")  # fmt: skip
        py = root / "python"
        py.mkdir(parents=True)
        for f in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(inst.python_backend / f, py / f)
        shutil.copy2(stub, py / stub.name)
        return root

    def _plan(self, backends: set[str]) -> list[str]:
        models = repository_models(self.repo)
        wanted = self._models or list(models)
        ok: dict[str, bool] = {}

        def loadable(name: str, seen: tuple = ()) -> bool:
            if name in ok:
                return ok[name]
            m = models.get(name)
            if m is None:
                self.skipped[name] = "not in the repository"
                ok[name] = False
            elif m["backend"] not in backends | _BUILTIN:
                self.skipped[name] = f"the server has no {m['backend']!r} backend (it has: {', '.join(sorted(backends)) or 'none'})"
                ok[name] = False
            else:
                bad = [s for s in m["steps"] if s in seen or not loadable(s, seen + (name,))]
                if bad:
                    self.skipped[name] = f"ensemble step {bad[0]} cannot load"
                ok[name] = not bad
            return ok[name]

        chosen = [m for m in wanted if loadable(m)]
        needed: list[str] = []  # the chosen models and every model their ensembles call

        def add(name: str) -> None:
            if name not in needed:
                needed.append(name)
                for s in models[name]["steps"]:
                    add(s)

        for m in chosen:
            add(m)
        return needed

    def _serving_repo(self, models: list[str]) -> Path:
        """A private repository folder that links only ``models`` (with control mode none the server
        loads every model it finds, and no client can load or unload one)."""
        root = self._tmp / "repository"
        root.mkdir()
        for m in models:
            (root / m).symlink_to(self.repo / m, target_is_directory=True)
        return root

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready and its models are loaded."""
        self._tmp = Path(tempfile.mkdtemp(prefix="edgepose-triton-"))
        try:
            backend_dir = self._backend_dir()
            backends = {p.name for p in backend_dir.iterdir()} if backend_dir.is_dir() else set()
            self.loaded = self._plan(backends)
            if not self.loaded:
                raise ServerError(f"no model in {self.repo} can load on this server: " +
                                  "; ".join(f"{k}: {v}" for k, v in self.skipped.items()))  # fmt: skip
            self.log_path = self._log_path or self._tmp / "tritonserver.log"
            prefix = f"edgepose{os.getpid()}x{next(_SEQ)}x{self.grpc_port}_"
            cmd = [
                str(self.install.binary), f"--model-repository={self._serving_repo(self.loaded)}",
                f"--backend-directory={backend_dir}", "--model-control-mode=none",  # the repository API stays closed
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                "--allow-metrics=false", "--exit-timeout-secs=2", "--log-verbose=0",
                f"--backend-config=python,shm-region-prefix-name={prefix}",
            ]  # fmt: skip
            if self.require_header:
                k, v = self.require_header
                apis = ",".join(RESTRICTABLE_APIS)
                cmd += [f"--http-restricted-api={apis}:{k}={v}", f"--grpc-restricted-protocol={apis}:{k}={v}"]
            if self.tls:
                cert, key = (Path(f).resolve() for f in self.tls)
                cmd += ["--grpc-use-ssl=true", f"--grpc-server-cert={cert}", f"--grpc-server-key={key}"]
            env = dict(os.environ)
            env["PATH"] = f"{self.install.env / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            if self.install.libs:
                env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.install.libs), env.get("LD_LIBRARY_PATH")) if p)
            env.pop("PYTHONPATH", None)
            shown = [a.split(":", 1)[0] + ":(secret)" if "-restricted-" in a else a for a in cmd]
            log.info("starting %s", " ".join(shown))
            with open(self.log_path, "wb") as out:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=env, start_new_session=True)  # fmt: skip
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://{self.host}:{self.http_port}/v2/health/ready"
        req = urllib.request.Request(url, headers=dict([self.require_header]) if self.require_header else {})
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"tritonserver exited with status {self.proc.returncode} while starting:\n"
                                  + log_tail(self.log_text))  # fmt: skip
            try:
                with urllib.request.urlopen(req, timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ServerError(f"tritonserver was not ready after {self.startup_timeout:.0f} s:\n" + log_tail(self.log_text))

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; remove the temporary folder. Returns the exit status."""
        rc = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        elif self.proc is not None:
            rc = self.proc.returncode
        if self._tmp is not None and (self._log_path is None):
            keep = self.log_text
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._last_log = keep
        return rc

    def kill(self) -> None:
        """SIGKILL the server at once (tests: a server dying mid-stream)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def log_tail(text: str, lines: int = 25) -> str:
    """The last ``lines`` lines of a server log that say something (no table borders)."""
    keep = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("+", "|"))]
    return "\n".join(keep[-lines:]) or "(no output)"
