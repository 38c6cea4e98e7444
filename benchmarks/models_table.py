"""Which model to pick: AP on coco-val-mini and time per frame for each network, variant and size preset.

Every (model, size) is timed in its own worker process (``benchmarks/omz_peer.py --edgepose-worker``)
on the same decoded frames of the 1080p video, from a decoded frame to keypoints, 2 threads, in
interleaved rounds so that drift on the machine hits every row alike; AP is measured in this process
before the timing (it does not depend on load). The table goes into docs/models.md.

Example:
    $ .venv/bin/python benchmarks/models_table.py models/mobilenet_thin.onnx models/mobilenet_thin.int8.onnx \\
          models/lwop.onnx models/lwop-int8.onnx --out benchmarks/results/models-2026-12-05.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from omz_peer import VIDEO, Peer, edgepose_ap  # noqa: E402

SIZES = ("small", "default", "large")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--sizes", nargs="+", default=list(SIZES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-ap", action="store_true")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)

    import numpy as np

    from edgepose.bench.machine import machine_info

    rows = {(str(m), s): {"model": str(m), "size": s} for m in a.models for s in a.sizes}
    if not a.no_ap:
        for (m, s), r in rows.items():
            r["ap"] = edgepose_ap(Path(m), s, a.threads)["AP"]
            print(f"AP {m} {s}: {r['ap']:.3f}", flush=True)
    workers = {k: Peer(Path(sys.executable), ["--edgepose-worker", "--model", k[0], "--size", k[1],
                                             "--threads", str(a.threads)]) for k in rows}  # fmt: skip
    ms: dict = {k: [] for k in rows}
    try:
        for _ in range(a.rounds):
            for k, w in workers.items():
                ms[k] += w.ask(cmd="time", video=str(VIDEO), frames=a.frames, warmup=3)["ms"]
    finally:
        for w in workers.values():
            w.close()
    for k, r in rows.items():
        r["ms_p50"] = float(np.median(ms[k]))
        r["ms_p90"] = float(np.percentile(ms[k], 90))
        ap = f"AP {r['ap']:.3f}" if "ap" in r else ""
        print(f"{Path(k[0]).name:28s} {k[1]:8s} p50 {r['ms_p50']:6.1f} ms  p90 {r['ms_p90']:6.1f} ms  {ap}")
    if a.out:
        from edgepose.fileio import write_json_atomic

        write_json_atomic(a.out, {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                  "threads": a.threads, "frames": a.frames, "rounds": a.rounds, "video": str(VIDEO),
                                  "rows": list(rows.values())})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
