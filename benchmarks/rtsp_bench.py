"""Several RTSP cameras in one process, realtime mode (issue #17): each camera's share of the
processed frames (target: at least 0.8x of an equal share), glass-to-result latency p50/p99, and
resident memory growth over the run (target: at most 5 MB over 10 minutes).

Starts tests/rtsp_server.py (GStreamer's RTSP server, system Python; ``make system-deps``) with
``--cameras`` mounts serving the test video at 640x360 25 fps, then runs one
:class:`edgepose.stream.Stream` over all of them with ``realtime=True`` and a JSON-lines-like sink
that only counts.

Usage::

    .venv/bin/python benchmarks/rtsp_bench.py --cameras 4 --duration 600 --out benchmarks/results/rtsp-4cam.json
    .venv/bin/python benchmarks/rtsp_bench.py --duration 20     # a smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "video" / "mmaction2__demo_skeleton.mp4"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Count:
    needs_image = False

    def __init__(self) -> None:
        self.n = 0

    def consume(self, result, image) -> None:
        self.n += 1

    def close(self) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (the issue's figure: 600)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before the memory baseline")
    ap.add_argument("--model", default=str(ROOT / "models" / "mobilenet_thin.onnx"))
    ap.add_argument("--size", default=None, help="input size preset (default: the model's)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--transport", choices=("auto", "udp", "tcp"), default="tcp")
    ap.add_argument("--batch", type=int, default=1, help="frames one inference call may take (Stream's batch)")
    ap.add_argument("--workers", type=int, default=1, help="inference workers (Stream's workers)")
    ap.add_argument("--video", default=str(VIDEO))
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from edgepose import PoseEstimator
    from edgepose.fileio import write_json_atomic
    from edgepose.stream import Stream

    mounts = ",".join(f"cam{i}" for i in range(args.cameras))
    server = subprocess.Popen(["/usr/bin/python3", str(ROOT / "tests" / "rtsp_server.py"), args.video,
                               "--mounts", mounts, "--size", "640x360", "--fps", "25"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    urls = [server.stdout.readline().strip() for _ in range(args.cameras)]
    try:
        kw = {"size": args.size} if args.size else {}
        est = PoseEstimator(args.model, threads=args.threads, **kw)
        stream = Stream(est, sources=urls, realtime=True, sinks=[Count()], rtsp_transport=args.transport,
                        batch=args.batch, workers=args.workers)  # fmt: skip
        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()

        def stopper() -> None:
            while time.monotonic() - t0 < args.duration:
                samples.append((time.monotonic() - t0, rss_mb()))
                time.sleep(1.0)
            stream.stop()

        threading.Thread(target=stopper, daemon=True).start()
        stream.run()
    finally:
        server.terminate()
        server.wait(10)
    st = stream.stats
    processed = {name: d["processed"] for name, d in st.sources.items()}
    total = sum(processed.values())
    equal = total / max(1, len(processed))
    after = [m for t, m in samples if t >= args.warmup]
    res = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "cores": len(__import__("os").sched_getaffinity(0)), "cameras": args.cameras, "duration_s": args.duration,
        "transport": args.transport, "model": Path(args.model).name, "input": list(est.budget),
        "threads": est.threads, "workers": args.workers, "batch": args.batch,
        "processed": processed, "share_of_equal": {k: round(v / equal, 3) if equal else 0 for k, v in processed.items()},
        "min_share_of_equal": round(min(processed.values()) / equal, 3) if equal else 0.0,
        "fps_total": round(st.fps, 2), "latency_ms": st.latency_ms,
        "latency_ms_per_camera": {k: d["latency_ms"] for k, d in st.sources.items()},
        "dropped": st.dropped, "rss_mb_after_warmup": round(after[0], 1) if after else None,
        "rss_mb_end": round(samples[-1][1], 1) if samples else None,
        "rss_growth_mb": round(samples[-1][1] - after[0], 2) if after else None, "accounted": st.accounted,
    }  # fmt: skip
    print(json.dumps(res, indent=2))
    if args.out:
        write_json_atomic(args.out, res, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
