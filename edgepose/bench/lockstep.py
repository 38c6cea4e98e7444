"""The parent side: start worker processes and run them in lock step.

Why processes: each configuration gets its own peak RSS, and no runtime's idle-spinning thread pool
(ONNX Runtime's, TensorFlow's, OpenCV's) steals cores from another's run. Why lock step: on a small,
noisy machine, running configuration A for a minute and then B for a minute compares A's minute
with B's; taking one frame of each in turn (the order rotated every round) spreads the noise over all.

Workers are ``python -m edgepose.bench.worker`` with this interpreter, in this working directory.
Measuring other programs' CPU use reads ``/proc`` (Linux); elsewhere the waits are skipped.

Example:
    >>> with Worker("cpu fp32", "pipeline", {"model": "models/mobilenet_thin.onnx", "threads": 2,
    ...             "source": "../shared/data/video/mmaction2__demo_skeleton.mp4"}) as w:  # doctest: +SKIP
    ...     samples = interleave([w], warmup=2, repeats=10)["cpu fp32"]
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgepose.bench.machine import checkout_root

log = logging.getLogger(__name__)

__all__ = ["Worker", "WorkerError", "Quiet", "interleave", "settle", "cpu_ns", "others_cpu", "cpu_since", "wait_idle", "Burner"]


def _import_roots(module: str | None) -> list[str]:
    """Folders a worker needs on ``PYTHONPATH``: the checkout (when edgepose runs from one) and the
    folder holding ``module``'s top package (a plug-in found by the parent, such as ``benchmarks``)."""
    roots = []
    root = checkout_root()
    if root is not None:
        roots.append(str(root))
    if module:
        spec = importlib.util.find_spec(module.split(".")[0])
        if spec is not None and spec.origin:
            top = Path(spec.origin).parent
            roots.append(str(top.parent if Path(spec.origin).name == "__init__.py" else top))
    return list(dict.fromkeys(roots))


class WorkerError(RuntimeError):
    """A worker failed to start, answered an error, died or timed out."""


class Worker:
    """One engine in its own process.

    Args:
        label: how results name it.
        kind: engine kind (see :data:`edgepose.bench.engines.ENGINES`).
        spec: the engine's JSON-able spec.
        timeout: seconds to wait for any one answer.
        env: extra environment variables for the process.
        module: the module whose ``ENGINES`` holds ``kind`` (default: edgepose's own), such as
            ``"benchmarks.engines"`` in a checkout.
    """

    def __init__(self, label: str, kind: str, spec: dict, *, timeout: float = 600.0, env: dict | None = None,
                 module: str | None = None) -> None:  # fmt: skip
        self.label, self.kind, self.spec, self.timeout = label, kind, spec, timeout
        self.env = env or {}
        self.module = module
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.error: str | None = None
        self._err = None

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> dict:
        """Start the process and set the engine up; return its info (creation time, providers ...).

        Raises:
            WorkerError: the engine could not be set up (the message says why).
        """
        env = dict(os.environ)
        paths = _import_roots(self.module) + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.update({k: str(v) for k, v in self.env.items()})
        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgepose.bench.worker"], env=env, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
        )  # fmt: skip
        rep = self.request({"cmd": "setup", "kind": self.kind, "spec": self.spec, "module": self.module})
        self.info = dict(rep.get("info") or {})
        self.info["rss_after_setup_mb"] = rep.get("rss_mb")
        return self.info

    def close(self) -> None:
        """Ask the worker to quit (kill it if it does not)."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()
        finally:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            if self._err is not None:
                self._err.close()
                self._err = None
            self.proc = None

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------------------
    def _stderr_tail(self, n: int = 15) -> str:
        if self._err is None:
            return ""
        try:
            self._err.seek(0)
            lines = [ln for ln in self._err.read().splitlines() if ln.strip()]
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def request(self, msg: dict, timeout: float | None = None) -> dict:
        """Send one request and wait for its answer.

        Raises:
            WorkerError: the worker answered an error, died or did not answer in time.
        """
        if self.proc is None:
            raise WorkerError(f"{self.label}: not started")
        timeout = self.timeout if timeout is None else timeout
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError(f"{self.label}: worker died\n{self._stderr_tail()}") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise WorkerError(f"{self.label}: no answer to {msg.get('cmd')} within {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise WorkerError(f"{self.label}: worker exited ({code})\n{self._stderr_tail()}")
        rep = json.loads(line)
        if not rep.get("ok"):
            raise WorkerError(f"{self.label}: {rep.get('error')}")
        return rep

    def step(self, n: int = 1) -> list[dict]:
        return self.request({"cmd": "step", "n": n})["samples"]

    def call(self, name: str, args: dict | None = None, timeout: float | None = None) -> dict:
        return self.request({"cmd": "call", "name": name, "args": args or {}}, timeout=timeout)["result"]

    def stats(self) -> dict:
        rep = self.request({"cmd": "stats"})
        return {"rss_mb": rep["rss_mb"], "peak_rss_mb": rep["peak_rss_mb"]}


def cpu_ns(pid: int) -> int | None:
    """CPU time (ns) used so far by every thread of process ``pid`` (Linux schedstat; None elsewhere)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that just ended
    except OSError:
        return None
    return total


def settle(pid: int, *, poll_s: float = 0.002, cap_s: float = 0.5) -> float:
    """Wait until process ``pid`` stops using CPU (its runtime's threads stop spinning); return the
    CPU milliseconds it burnt meanwhile.

    Runtimes keep worker threads spinning for a while after a run (ONNX Runtime's about 20-30 ms
    by default); on a two-core machine that would slow down whichever configuration runs next.
    """
    start = cpu_ns(pid)
    if start is None:
        return 0.0
    prev, t_end = start, time.perf_counter() + cap_s
    while time.perf_counter() < t_end:
        time.sleep(poll_s)
        now = cpu_ns(pid)
        if now is None:
            break
        if now - prev < 0.1 * poll_s * 1e9:  # under 10 % of one core: idle
            prev = now
            break
        prev = now
    return (prev - start) / 1e6


def others_cpu(exclude: set[int]) -> dict[int, int]:
    """CPU time (ns) of every thread on the machine outside the processes in ``exclude``, by thread id.

    Use :func:`cpu_since` for the CPU other programs used between two snapshots (a thread that
    ended in between is missed; one that started counts fully). About a millisecond per call.
    """
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            tids = os.listdir(f"/proc/{name}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{name}/task/{tid}/schedstat", "rb") as f:
                    out[int(tid)] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return out


def cpu_since(before: dict[int, int], exclude: set[int]) -> int:
    """CPU ns other programs used since the snapshot ``before`` (never negative)."""
    now = others_cpu(exclude)
    return sum(max(0, v - before.get(tid, 0)) for tid, v in now.items())


def wait_idle(max_wait: float, *, window: float = 3.0, threshold: float = 0.1, poll: float = 5.0) -> dict:
    """Wait (at most ``max_wait`` seconds) until other programs used under ``threshold`` cores for ``window`` s.

    Returns:
        ``{"waited_s", "idle"}``: whether an idle window was found.
    """
    t0 = time.perf_counter()
    me = {os.getpid()}
    while True:
        before = others_cpu(me)
        time.sleep(window)
        if cpu_since(before, me) / 1e9 / window < threshold:
            return {"waited_s": round(time.perf_counter() - t0, 1), "idle": True}
        if time.perf_counter() - t0 + poll + window > max_wait:
            return {"waited_s": round(time.perf_counter() - t0, 1), "idle": False}
        time.sleep(poll)


class Burner:
    """A deliberate load: ``cores`` processes spinning on the CPU until :meth:`stop` (a context manager).

    Used to measure configurations "with one core busy elsewhere" reproducibly, whatever else
    the machine is doing.
    """

    def __init__(self, cores: int = 1) -> None:
        self.cores = cores
        self.procs: list[subprocess.Popen] = []

    def start(self) -> Burner:
        for _ in range(self.cores):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(0.2)
        return self

    @property
    def pids(self) -> set[int]:
        return {p.pid for p in self.procs}

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def __enter__(self) -> Burner:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Quiet:
    """Waits for, and measures, other programs' CPU use around each turn.

    Args:
        max_wait: seconds to wait for the machine to be quiet before a turn (then go anyway).
        threshold: other programs' CPU use, in cores, above which a turn counts as disturbed.
        retries: how many times a disturbed turn is measured again.
        ignore: process ids not counted as other programs (a load the experiment itself runs).
    """

    def __init__(self, max_wait: float = 2.0, threshold: float = 0.25, retries: int = 3,
                 ignore: set[int] | None = None) -> None:  # fmt: skip
        self.max_wait, self.threshold, self.retries = max_wait, threshold, retries
        self.ignore = set(ignore or ())  # processes that are part of the experiment (a load generator)
        self.enabled = os.path.isdir("/proc/self/task")
        self.waited_s = 0.0
        self.disturbed = 0
        self.turns = 0

    def wait(self, exclude: set[int]) -> None:
        if not self.enabled or self.max_wait <= 0:
            return
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.max_wait:
            a, ta = others_cpu(exclude), time.perf_counter()
            time.sleep(0.02)
            used = cpu_since(a, exclude)
            if used / 1e9 / (time.perf_counter() - ta) < self.threshold / 2:
                break
        self.waited_s += time.perf_counter() - t0

    def start(self, exclude: set[int]) -> tuple[dict[int, int], float]:
        return (others_cpu(exclude) if self.enabled else {}), time.perf_counter()

    def summary(self) -> dict:
        """What other programs did to the run: turns measured, disturbed, time spent waiting."""
        return {"turns": self.turns, "disturbed_turns": self.disturbed, "waited_s": round(self.waited_s, 1),
                "threshold_cores": self.threshold, "retries": self.retries}  # fmt: skip

    def cores(self, mark: tuple[dict[int, int], float], exclude: set[int]) -> float:
        """Other programs' average CPU use (cores) since ``mark``."""
        if not self.enabled:
            return 0.0
        before, t = mark
        return cpu_since(before, exclude) / 1e9 / max(time.perf_counter() - t, 1e-6)


def interleave(
    workers: list[Worker],
    *,
    warmup: int = 3,
    repeats: int = 20,
    per_turn: int = 1,
    progress: Callable[[int], None] | None = None,
    min_seconds: float = 0.0,
    quiet: Quiet | None = None,
) -> dict[str, list[dict]]:
    """Warm every worker up, then give each ``per_turn`` frames in turn until each has ``repeats``.

    The order rotates every round, so no configuration always follows the same one; after each
    turn the parent waits until the worker is idle (:func:`settle`), so that threads still spinning
    in one configuration never slow down the next, and adds the CPU time they burnt meanwhile to the
    turn's last sample as ``spin_cpu``. A worker that fails is dropped (its ``error`` set) and the
    others go on.

    Args:
        progress: called with the number of frames just measured (for a progress bar).
        min_seconds: keep going past ``repeats`` until this much time has passed (stable medians on
            fast configurations).
        quiet: waits for a quiet machine before each turn and measures each turn again (a few
            times at most) when other programs used more than its threshold meanwhile; each
            sample gets ``bg_cores``, other programs' CPU use during its turn. Default
            ``Quiet()``; pass ``Quiet(max_wait=0, retries=0)`` to switch it off.

    Returns:
        label -> list of per-frame samples (stage -> ms).
    """
    quiet = quiet or Quiet()
    live = [w for w in workers if w.error is None]
    for w in list(live):
        try:
            if warmup:
                w.step(warmup)
                settle(w.proc.pid)
        except WorkerError as e:
            w.error = str(e)
            live.remove(w)
            log.warning("%s", e)
    out: dict[str, list[dict]] = {w.label: [] for w in workers}
    t0 = time.perf_counter()
    r = 0
    while live and (min(len(out[w.label]) for w in live) < repeats or time.perf_counter() - t0 < min_seconds):
        k = r % len(live)
        for w in live[k:] + live[:k]:
            exclude = {os.getpid(), w.proc.pid} | quiet.ignore
            for attempt in range(quiet.retries + 1):
                quiet.wait(exclude)
                mark = quiet.start(exclude)
                try:
                    samples = w.step(per_turn)
                except WorkerError as e:
                    w.error = str(e)
                    live.remove(w)
                    log.warning("%s", e)
                    samples = None
                    break
                bg = quiet.cores(mark, exclude)
                spin = settle(w.proc.pid)
                quiet.turns += 1
                if bg > quiet.threshold:
                    quiet.disturbed += 1
                    if attempt < quiet.retries:
                        continue
                for x in samples:
                    x["bg_cores"] = bg
                if samples:
                    samples[-1]["spin_cpu"] = spin
                break
            if samples is None:
                continue
            out[w.label].extend(samples)
            if progress:
                progress(len(samples))
        r += 1
        if r > 100 * max(repeats, 1):  # safety net
            break
    return out
