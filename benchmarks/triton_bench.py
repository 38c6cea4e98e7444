"""Triton server tier against the local estimator, in the same run on the same machine.

Measures (docs/triton.md, "Figures"):

1. throughput (frames/s) and latency (p50/p99 ms) for 1, 2, 4 clients x 1, 2 server instances, and
   the local ``PoseEstimator`` in its configurations (1 worker x all cores, 2 workers x half);
2. the server hop: one client, one frame at a time at the default input size, remote
   (client letterbox + gRPC round trip + server pre-processing, network and decoding) minus local
   (the same work in-process), interleaved frame by frame so both see the same machine;
3. the JPEG wire's extra cost for 1080p frames (client encode + server decode) and its bytes;
4. the keypoint difference of JPEG-encoded video frames against a local run, at a stated quality.

The server is the pytriton wheel's tritonserver (``make triton-venv``) with the self-contained
pipeline model (the Python backend; the onnxruntime-backend ensemble needs NVIDIA's container).

Run on a quiet machine::

    make bench-triton
    .venv/bin/python benchmarks/triton_bench.py --model models/mobilenet_thin.onnx --data ../shared/data
    .venv/bin/python benchmarks/triton_bench.py --quick        # a tiny setting: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepose.runner import PoseEstimator  # noqa: E402
from edgepose.session import usable_cores  # noqa: E402
from edgepose.triton.client import RemoteEstimator  # noqa: E402
from edgepose.triton.repo import ExportOptions, export_repository  # noqa: E402
from edgepose.triton.server import TritonServer  # noqa: E402


def video_frames(path: Path, n: int, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) if size else f)
    cap.release()
    if not out:
        raise SystemExit(f"no frames in {path}")
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def drive(make_est, clients: int, frames: list[np.ndarray], per_client: int) -> dict:
    """``clients`` threads, each with its own estimator, one frame at a time: fps and latency."""
    lat: list[float] = []
    lock = threading.Lock()
    ests = [make_est() for _ in range(clients)]
    for e in ests:  # warm-up
        e.predict(frames[0])
    barrier = threading.Barrier(clients + 1)

    def run(c: int) -> None:
        mine = []
        barrier.wait()
        for k in range(per_client):
            t0 = time.perf_counter()
            ests[c].predict(frames[(c * 7 + k) % len(frames)])
            mine.append((time.perf_counter() - t0) * 1e3)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "frames": clients * per_client, "fps": clients * per_client / wall,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}  # fmt: skip


def local_configs(model: Path, frames, per_client: int, cores: int) -> list[dict]:
    rows = []
    for workers, threads in ((1, cores), (2, max(1, cores // 2))):
        r = drive(lambda t=threads: PoseEstimator(model, device="cpu", threads=t), workers, frames, per_client)
        rows.append({"what": f"local {workers} x {threads} threads", **r})
    return rows


def match_people(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """Greedy pairs of people (M, K, 3) by mean distance of the parts both have."""
    pairs, used = [], set()
    for i in range(len(a)):
        best, bj = None, -1
        for j in range(len(b)):
            if j in used:
                continue
            both = (a[i, :, 2] > 0) & (b[j, :, 2] > 0)
            if not both.any():
                continue
            d = float(np.linalg.norm(a[i, both, :2] - b[j, both, :2], axis=1).mean())
            if best is None or d < best:
                best, bj = d, j
        if bj >= 0:
            used.add(bj)
            pairs.append((i, bj))
    return pairs


def jpeg_accuracy(server: TritonServer, local: PoseEstimator, frames, quality: int) -> dict:
    remote = RemoteEstimator(server.grpc_url, wire="jpeg", jpeg_quality=quality)
    diffs, people_differ = [], 0
    for f in frames:
        a, b = remote.predict(f).keypoints(), local.predict(f).keypoints()
        if len(a) != len(b):
            people_differ += 1
        for i, j in match_people(a, b):
            both = (a[i, :, 2] > 0) & (b[j, :, 2] > 0)
            diffs.extend(np.linalg.norm(a[i, both, :2] - b[j, both, :2], axis=1).tolist())
    return {"quality": quality, "frames": len(frames), "frames_with_other_people_count": people_differ,
            "kp_diff_px_mean": float(np.mean(diffs)) if diffs else 0.0, "kp_diff_px_p99": pct(diffs, 99),
            "kp_diff_px_max": float(np.max(diffs)) if diffs else 0.0}  # fmt: skip


def hop(server: TritonServer, local: PoseEstimator, frames, n: int) -> dict:
    """Remote minus local per frame, interleaved (A B A B ...) at the default input size."""
    remote = RemoteEstimator(server.grpc_url)
    remote.predict(frames[0]), local.predict(frames[0])
    r_ms, l_ms = [], []
    for k in range(n):
        f = frames[k % len(frames)]
        for est, acc in ((remote, r_ms), (local, l_ms)) if k % 2 == 0 else ((local, l_ms), (remote, r_ms)):
            t0 = time.perf_counter()
            est.predict(f)
            acc.append((time.perf_counter() - t0) * 1e3)
    d = [a - b for a, b in zip(r_ms, l_ms)]
    return {"frames": n, "remote_ms_median": statistics.median(r_ms), "local_ms_median": statistics.median(l_ms),
            "hop_ms_median": statistics.median(d), "hop_ms_mean": float(np.mean(d))}  # fmt: skip


def jpeg_cost(server: TritonServer, frames_1080, quality: int, n: int) -> dict:
    raw = RemoteEstimator(server.grpc_url)
    jpg = RemoteEstimator(server.grpc_url, wire="jpeg", jpeg_quality=quality)
    raw.predict(frames_1080[0]), jpg.predict(frames_1080[0])
    enc, t_raw, t_jpg, sizes = [], [], [], []
    for k in range(n):
        f = frames_1080[k % len(frames_1080)]
        t0 = time.perf_counter()
        data = jpg.encode(f)
        enc.append((time.perf_counter() - t0) * 1e3)
        sizes.append(len(data))
        for est, acc in ((raw, t_raw), (jpg, t_jpg)) if k % 2 == 0 else ((jpg, t_jpg), (raw, t_raw)):
            t0 = time.perf_counter()
            est.predict(f)
            acc.append((time.perf_counter() - t0) * 1e3)
    x, box = raw.preprocess(frames_1080[0])
    return {"frame": "1920x1080", "quality": quality, "frames": n, "encode_ms_median": statistics.median(enc),
            "jpeg_kb_median": statistics.median(sizes) / 1024, "raw_kb": x.nbytes / 1024,
            "raw_ms_median": statistics.median(t_raw), "jpeg_ms_median": statistics.median(t_jpg),
            "jpeg_extra_ms_median": statistics.median(t_jpg) - statistics.median(t_raw)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "mobilenet_thin.onnx")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--clients", default="1,2,4")
    p.add_argument("--instances", default="1,2")
    p.add_argument("--frames", type=int, default=60, help="frames per client per configuration")
    p.add_argument("--hop-frames", type=int, default=100)
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--queue-delay-us", type=int, default=0, help="dynamic batching's queue delay (default: the export's, 0)")
    p.add_argument("--accuracy-frames", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="a tiny setting (checks that it runs; figures mean nothing)")
    p.add_argument("--out", type=Path, default=None, help="JSON results (default benchmarks/results/triton-DATE.json)")
    a = p.parse_args(argv)
    if a.quick:
        a.clients, a.instances, a.frames, a.hop_frames, a.accuracy_frames = "1,2", "1", 4, 6, 6
    cores = usable_cores()
    video = a.data / "video" / "mmaction2__demo_skeleton.mp4"
    frames = video_frames(video, 60)
    frames_1080 = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR) for f in frames[:10]]
    local = PoseEstimator(a.model, device="cpu", threads=cores)
    out: dict = {"date": date.today().isoformat(), "machine": {"cpu": platform.processor() or platform.machine(),
                 "cores": cores, "python": platform.python_version()}, "model": a.model.name,
                 "input_size": list(local.budget), "queue_delay_us": a.queue_delay_us, "throughput": []}  # fmt: skip
    rows = local_configs(a.model, frames, a.frames, cores)
    out["throughput"] += rows
    with tempfile.TemporaryDirectory() as tmp:
        for inst in (int(x) for x in a.instances.split(",")):
            repo = Path(tmp) / f"repo{inst}"
            export_repository(a.model, repo, ExportOptions(instances=inst, queue_delay_us=a.queue_delay_us))
            with TritonServer(repo, models=["edgepose_pipeline"], startup_timeout=180) as srv:
                for c in (int(x) for x in a.clients.split(",")):
                    r = drive(lambda s=srv: RemoteEstimator(s.grpc_url, in_flight=1), c, frames, a.frames)
                    out["throughput"].append({"what": f"triton {inst} instance(s) x {cores // inst} threads", **r})
                if inst == 1:
                    out["hop"] = hop(srv, local, frames, a.hop_frames)
                    out["jpeg_1080p"] = jpeg_cost(srv, frames_1080, a.jpeg_quality, max(4, a.hop_frames // 2))
                    out["jpeg_accuracy"] = jpeg_accuracy(srv, local, frames[: a.accuracy_frames], a.jpeg_quality)
    best_local = max(r["fps"] for r in rows)
    for r in out["throughput"]:
        r["x_best_local"] = r["fps"] / best_local
    print("| configuration | clients | frames/s | p50 ms | p99 ms | x best local |\n|---|---|---|---|---|---|")
    for r in out["throughput"]:
        print(f"| {r['what']} | {r['clients']} | {r['fps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['x_best_local']:.2f} |")
    print(json.dumps({k: out[k] for k in ("hop", "jpeg_1080p", "jpeg_accuracy")}, indent=1))
    dest = a.out or ROOT / "benchmarks" / "results" / f"triton-{out['date']}.json"
    if a.quick and a.out is None:
        print("(--quick: nothing written)")
        return 0
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
