"""Does one network call on a batch of frames (several cameras' frames) beat one call per frame?
(issue #17: "frames from several cameras batched into one network call where the provider gains
from it — measure it, and pick the default from the measurement").

The real model on real frames of the test video, letterboxed as a 640x360 camera's are (the
default budget gives a 432x248 input). For each configuration, rounds in lock step: N single calls,
then one call on a batch of N (order alternating per round), per-frame milliseconds of each; the
median over rounds and the ratio. Configurations: the session's threads x concurrent workers (2x1:
one call at a time on both cores; 1x2: two workers calling at once, as ``edgepose run`` does for
streams).

Usage::

    .venv/bin/python benchmarks/batch_study.py --out benchmarks/results/batch-study-DATE.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "video" / "mmaction2__demo_skeleton.mp4"


def frames(n: int, size=(640, 360)):
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    cap.release()
    return out


def timed(fn, workers: int) -> float:
    """Seconds for ``workers`` threads running ``fn`` once each, started together."""
    if workers == 1:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    go = threading.Barrier(workers + 1)
    ths = [threading.Thread(target=lambda: (go.wait(), fn())) for _ in range(workers)]
    for th in ths:
        th.start()
    go.wait()
    t = time.perf_counter()
    for th in ths:
        th.join()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "mobilenet_thin.onnx"))
    ap.add_argument("--batches", default="2,4", help="batch sizes to compare with single calls")
    ap.add_argument("--configs", default="2x1,1x2", help="threads x workers")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from edgepose import PoseEstimator
    from edgepose.bench.machine import machine_info
    from edgepose.fileio import write_json_atomic

    batches = [int(b) for b in args.batches.split(",")]
    pics = frames(max(batches))
    rows = []
    for cfg in args.configs.split(","):
        threads, workers = (int(v) for v in cfg.split("x"))
        est = PoseEstimator(args.model, threads=threads)
        xs = [est.preprocess(p)[0].copy() for p in pics]
        shape = xs[0].shape
        for n in batches:
            xb = np.stack(xs[:n])
            singles = [x[None] for x in xs[:n]]

            def one_by_one(singles=singles, est=est):
                for x in singles:
                    est.infer(x)

            def batched(xb=xb, est=est):
                est.infer(xb)

            for _ in range(2):  # warm-up: both shapes' kernels and arenas
                timed(one_by_one, workers), timed(batched, workers)
            a, b = [], []
            for r in range(args.rounds):
                order = (one_by_one, batched) if r % 2 == 0 else (batched, one_by_one)
                for fn in order:
                    dt = timed(fn, workers) * 1e3 / (n * workers)
                    (a if fn is one_by_one else b).append(dt)
            row = {"threads": threads, "workers": workers, "batch": n, "input": [shape[2], shape[1]],
                   "single_ms_per_frame": round(statistics.median(a), 2),
                   "batched_ms_per_frame": round(statistics.median(b), 2),
                   "batched_speedup": round(statistics.median(a) / statistics.median(b), 3)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    res = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "model": Path(args.model).name,
           "rounds": args.rounds, "rows": rows}  # fmt: skip
    if args.out:
        write_json_atomic(args.out, res, indent=2)
    print(f"machine: {platform.processor() or platform.machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
