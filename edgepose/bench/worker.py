"""A benchmark worker: one engine in its own process, driven over stdin/stdout with JSON lines.

Requests (one JSON object a line on stdin) and replies (one a line on the protocol pipe):

    {"cmd": "setup", "kind": "pipeline", "spec": {...},
     "module": null}                                -> {"ok": true, "info": {...}, "rss_mb": ...}
    {"cmd": "step", "n": 3}                         -> {"ok": true, "samples": [{"inference": 55.1, ...}, ...]}
    {"cmd": "call", "name": "accuracy", "args": {}} -> {"ok": true, "result": {...}}
    {"cmd": "stats"}                                -> {"ok": true, "peak_rss_mb": ..., "rss_mb": ...}
    {"cmd": "quit"}                                 -> (exits)

``module`` names a module whose ``ENGINES`` holds ``kind`` (default :mod:`edgepose.bench.engines`).
A failure answers ``{"ok": false, "error": "..."}`` and the worker keeps serving. Anything a library
prints on stdout goes to stderr: the protocol has a file descriptor of its own.

Memory comes from ``/proc`` and :mod:`resource` (psutil where ``/proc`` is missing): no extra needed.

Run as ``python -m edgepose.bench.worker`` (the parent, :mod:`edgepose.bench.lockstep`, does that).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback


def rss_mb() -> float:
    """Current resident set size in MiB (Linux ``/proc``, else psutil; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    try:  # pragma: no cover - not Linux
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def serve(inp, out) -> int:
    from edgepose.bench.engines import make_engine

    engine = None

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    for line in inp:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                reply({"ok": True})
                return 0
            if cmd == "setup":
                engine = make_engine(req["kind"], req.get("spec") or {}, req.get("module"))
                reply({"ok": True, "info": engine.info, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()})
            elif cmd == "step":
                if engine is None:
                    raise RuntimeError("step before setup")
                reply({"ok": True, "samples": [engine.step() for _ in range(int(req.get("n", 1)))]})
            elif cmd == "call":
                if engine is None:
                    raise RuntimeError("call before setup")
                reply({"ok": True, "result": engine.call(req["name"], req.get("args") or {})})
            elif cmd == "stats":
                reply({"ok": True, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()})
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as e:  # report and keep serving; the parent decides
            traceback.print_exc(file=sys.stderr)
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
    return 0


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints (C or Python) go to stderr
    return serve(sys.stdin, proto)


if __name__ == "__main__":
    sys.exit(main())
