"""One-shot GPU check: CUDA and TensorRT for real, checked against the CPU and measured, in one run.

Prepared to run once on a machine with an NVIDIA GPU and ``onnxruntime-gpu`` (TensorRT libraries
where present), with no network: the wheels and models travel with the working tree. In one
process it checks and measures:

* which providers ``auto`` picks, and node placement from ONNX Runtime's profiler (every node on the
  GPU provider, or the names of those that fell back to the CPU);
* CUDA fp32 and TensorRT fp32 / fp16 (and int8 with a fixed input shape, where the int8 variant
  exists) against the CPU provider: max heatmap/PAF difference, keypoints within 1 px, AP on
  ``coco-val-mini``;
* TensorRT's engine cache: a cold session (fresh cache folder) builds, a second one loads, the
  cache key changes with the model and the precision;
* inference p50/p99 at batch 1, 4 and 8 and at the three size presets;
* end to end ``edgepose run`` on the video, offline and realtime;
* the decoder's share of the frame time.

It writes one JSON and prints a markdown table. Without a GPU provider it stops at once with the
install hint (exit 2); ``--devices cpu`` runs the same machinery on the CPU (the tests do this).

Usage:
    make check-gpu                                           # = the line below
    python benchmarks/gpu_check.py --data ../shared/data --out benchmarks/results/gpu-check.json
    python benchmarks/gpu_check.py --devices cpu --quick     # the machinery, on a CPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepose._ort import ort  # noqa: E402
from edgepose.fileio import write_json_atomic  # noqa: E402
from edgepose.providers import CPU, CUDA, TRT, ProviderUnavailable, _clash_hint, resolve  # noqa: E402

GPU_PROVIDERS = (CUDA, TRT)
#: device words checked, in order; those whose provider is missing are skipped with the reason
DEVICES = ("cuda", "tensorrt", "tensorrt+fp16", "tensorrt+int8")


def install_hint() -> str:
    return ("no CUDA or TensorRT execution provider in this onnxruntime build. " + _clash_hint(ort.get_available_providers())
            + " On Jetson use NVIDIA's JetPack onnxruntime-gpu wheel; TensorRT needs its libraries on the "
            "library path (libnvinfer).")  # fmt: skip


def node_placement(profile_json: str | Path) -> dict[str, int]:
    """Count the nodes that ran on each provider in an ORT profile (``{provider: nodes}``)."""
    events = json.loads(Path(profile_json).read_text())
    seen: dict[str, str] = {}
    for ev in events:
        args = ev.get("args") or {}
        if ev.get("cat") == "Node" and "provider" in args:
            name = ev.get("name", "").removesuffix("_kernel_time").removesuffix("_fence_before").removesuffix("_fence_after")
            seen[name] = args["provider"]
    out: dict[str, int] = {}
    for p in seen.values():
        out[p] = out.get(p, 0) + 1
    return out


def placement(model: Path, word: str, x: np.ndarray) -> dict:
    """Run one profiled inference on ``word`` and count nodes per provider."""
    spec = resolve(word.replace("+int8", ""), model_sha="gpucheck")
    so = ort.SessionOptions()
    with tempfile.TemporaryDirectory() as tmp:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "p")
        sess = ort.InferenceSession(str(model), so, providers=spec.providers, provider_options=spec.provider_options)
        sess.run(None, {"image": x})
        counts = node_placement(sess.end_profiling())
    gpu = sum(v for k, v in counts.items() if k in GPU_PROVIDERS)
    return {"active": sess.get_providers(), "nodes": counts, "all_on_gpu": bool(counts) and gpu == sum(counts.values())}


def match_keypoints(a, b) -> tuple[int, int]:
    """(joints present in both, of which within 1 px) after pairing people by nearest mean position."""
    both = close = 0
    used: set[int] = set()
    for p in a.people:
        best, best_d = None, None
        for j, q in enumerate(b.people):
            if j in used:
                continue
            m = (p.keypoints[:, 2] > 0) & (q.keypoints[:, 2] > 0)
            if not m.any():
                continue
            d = float(np.abs(p.keypoints[m, :2] - q.keypoints[m, :2]).max())
            if best_d is None or d < best_d:
                best, best_d = j, d
        if best is None:
            continue
        used.add(best)
        q = b.people[best]
        m = (p.keypoints[:, 2] > 0) & (q.keypoints[:, 2] > 0)
        dist = np.linalg.norm(p.keypoints[m, :2] - q.keypoints[m, :2], axis=1)
        both += int(m.sum())
        close += int((dist <= 1.0).sum())
    return both, close


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50": float(np.median(a)), "p99": float(np.percentile(a, 99)), "n": len(ms)}


def timed_session(model: Path, word: str, size: str | None = None, **kw):
    from edgepose.runner import PoseEstimator

    t0 = time.perf_counter()
    est = PoseEstimator(model, device=word.replace("+int8", ""), size=size, **kw)
    return est, (time.perf_counter() - t0) * 1e3


def check(args) -> dict:
    from edgepose.evaluate import evaluate
    from edgepose.imageio import read_image

    data = Path(args.data)
    coco = data / "coco-val-mini"
    images = sorted((coco / "images").glob("*.jpg"))[: args.images]
    pics = [read_image(p)[0] for p in images]
    model = Path(args.model)
    int8 = model.with_name(model.stem + ".int8.onnx")
    res: dict = {"date": dt.date.today().isoformat(), "model": str(model), "errors": {}}
    res["machine"] = machine()
    res["auto"] = resolve("auto").providers
    cpu, _ = timed_session(model, "cpu")
    ref = [cpu.predict(p) for p in pics]
    x, _ = cpu.preprocess(pics[0])
    ref_maps = cpu.infer(x[None])
    res["configs"] = []
    for word in args.devices:
        entry: dict = {"device": word}
        res["configs"].append(entry)
        path = int8 if word.endswith("+int8") else model
        if word.endswith("+int8") and not int8.is_file():
            entry["skipped"] = f"no int8 variant at {int8} (make variants)"
            continue
        try:
            resolve(word.replace("+int8", ""))
        except ProviderUnavailable as e:
            entry["skipped"] = str(e).split(":")[0]
            continue
        try:
            with tempfile.TemporaryDirectory() as cache:
                os.environ["EDGEPOSE_CACHE"] = cache
                est, cold = timed_session(path, word, threads=args.threads)
                _, warm = timed_session(path, word, threads=args.threads)
                entry["session_ms"] = {"cold": cold, "warm": warm}
                if word.startswith("tensorrt"):
                    files = [str(p.relative_to(cache)) for p in Path(cache).rglob("*") if p.is_file()]
                    entry["trt_cache"] = {"files": len(files), "folders": sorted({Path(f).parts[1] for f in files
                                                                                   if len(Path(f).parts) > 1})}  # fmt: skip
            entry["placement"] = placement(path, word, x[None])
            hm, paf = est.infer(x[None])
            entry["max_diff"] = {"heatmaps": float(np.abs(hm - ref_maps[0]).max()),
                                 "pafs": float(np.abs(paf - ref_maps[1]).max())}  # fmt: skip
            both = close = 0
            for p, r in zip(pics, ref):
                b, c = match_keypoints(r, est.predict(p))
                both, close = both + b, close + c
            entry["keypoints_within_1px"] = close / both if both else None
            if not args.quick:
                rep = evaluate(est, coco / "person_keypoints.json", coco / "images", progress=False)
                entry["AP"] = rep["AP"]
                entry["decode_share"] = rep["timings_ms"]["decode"]["median"] / sum(
                    rep["timings_ms"][s]["median"] for s in ("preprocess", "inference", "decode"))
            entry["latency_ms"] = latency(path, word, args)
        except Exception as e:  # one configuration failing must not lose the others
            entry["error"] = f"{type(e).__name__}: {e}"
            res["errors"][word] = traceback.format_exc()
    if not args.quick:
        try:
            cpu_rep = evaluate(cpu, coco / "person_keypoints.json", coco / "images", progress=False)
            res["cpu_AP"] = cpu_rep["AP"]
        except Exception as e:  # noqa: BLE001
            res["errors"]["cpu_AP"] = str(e)
    res["run"] = end_to_end(args)
    return res


def latency(model: Path, word: str, args) -> dict:
    """Inference p50/p99 per batch size and size preset."""
    from edgepose.runner import PoseEstimator

    out = {}
    rng = np.random.default_rng(0)
    for size in args.sizes:
        est = PoseEstimator(model, device=word.replace("+int8", ""), size=size, threads=args.threads)
        w, h = est.budget
        img = rng.integers(0, 255, (h, w, 3), np.uint8)
        x, _ = est.preprocess(img)
        for n in args.batches:
            batch = np.repeat(x[None], n, axis=0)
            for _ in range(args.warmup):
                est.infer(batch)
            ms = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                est.infer(batch)
                ms.append((time.perf_counter() - t0) * 1e3)
            out[f"{size}/b{n}"] = percentiles(ms)
    return out


def end_to_end(args) -> dict:
    """``edgepose run`` on the video, offline and realtime, on the first GPU device checked."""
    video = Path(args.data) / "video" / "mmaction2__demo_skeleton.mp4"
    word = next((d for d in args.devices if not d.endswith("+int8")), "cpu")
    out = {}
    for mode in ("offline", "realtime"):
        with tempfile.TemporaryDirectory() as tmp:
            stats = Path(tmp) / "stats.json"
            cmd = [sys.executable, "-m", "edgepose", "run", str(video), "--model", args.model, "--device",
                   word.replace("+int8", ""), "--max-frames", str(args.frames), "--no-progress", "--stats-json", str(stats)]  # fmt: skip
            if mode == "realtime":
                cmd.append("--realtime")
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
            entry = {"device": word, "exit": p.returncode, "wall_s": time.perf_counter() - t0}
            if stats.is_file():
                entry["stats"] = json.loads(stats.read_text())
            else:
                entry["stderr"] = p.stderr[-2000:]
            out[mode] = entry
    return out


def machine() -> dict:
    info: dict = {"ort": ort.__version__, "providers": ort.get_available_providers()}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)  # fmt: skip
        info["gpu"] = q.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        info["gpu"] = None
    for mod in ("tensorrt",):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = None
    return info


def table(res: dict) -> str:
    """The README table: one row per device checked."""
    lines = [f"GPU check {res['date']}: {res['machine'].get('gpu') or 'no GPU'}, onnxruntime {res['machine']['ort']}, "
             f"TensorRT {res['machine'].get('tensorrt') or 'n/a'}; auto -> {res['auto'][0]}", "",
             "| device | all nodes on GPU | max map diff vs CPU | keypoints within 1 px | AP (CPU {}) | session cold / warm | "
             "default b1 p50 / p99 |".format(f"{res['cpu_AP']:.3f}" if "cpu_AP" in res else "-"),
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for c in res["configs"]:
        if "skipped" in c or "error" in c:
            lines.append(f"| {c['device']} | {c.get('skipped') or c.get('error')} | | | | | |")
            continue
        lat = c.get("latency_ms", {}).get("default/b1") or next(iter(c.get("latency_ms", {}).values()), None)
        diff = max(c["max_diff"].values())
        kp = c.get("keypoints_within_1px")
        ap = f"{c['AP']:.3f}" if "AP" in c else "-"
        s = c["session_ms"]
        kp_s = "-" if kp is None else f"{kp:.1%}"
        lat_s = "-" if lat is None else "{:.2f} / {:.2f} ms".format(lat["p50"], lat["p99"])
        lines.append(f"| {c['device']} | {c['placement']['all_on_gpu']} ({c['placement']['nodes']}) | {diff:.2e} | "
                     f"{kp_s} | {ap} | {s['cold']:.0f} / {s['warm']:.0f} ms | {lat_s} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "mobilenet_thin.onnx"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--devices", nargs="+", default=list(DEVICES), help="device words to check (default: %(default)s)")
    p.add_argument("--sizes", nargs="+", default=["small", "default", "large"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--images", type=int, default=8, help="pictures for the map and keypoint comparison")
    p.add_argument("--frames", type=int, default=200, help="video frames for the end-to-end runs")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="no AP, few repeats (a smoke run)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/gpu-check-<date>.json)")
    args = p.parse_args(argv)
    if not any(d.startswith("cpu") for d in args.devices) and not set(GPU_PROVIDERS) & set(ort.get_available_providers()):
        print(f"gpu_check: {install_hint()}", file=sys.stderr)
        return 2
    if args.quick:
        args.repeats, args.warmup, args.batches, args.sizes, args.frames = 3, 1, [1, 2], ["small"], 10
    if CPU not in ort.get_available_providers():  # pragma: no cover - every build has it
        print("gpu_check: no CPU provider to compare with", file=sys.stderr)
        return 2
    res = check(args)
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu-check-{res['date']}.json"
    write_json_atomic(out, res, indent=1, default=str)
    print(table(res))
    print(f"\nwrote {out}")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
