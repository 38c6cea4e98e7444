"""Issue 7's figures: streaming throughput against the model alone, and memory over a long loop.

Throughput (default): the real video (1920x1080, 72 frames) through ``PoseEstimator.stream`` in
offline mode (every frame: read, pre-process, inference, decode, tracking), against the model
alone (``est.infer`` on that video's pre-processed frame, the same input size, the same threads),
in alternating rounds so that a busy machine slows both alike; the figure is the median over rounds
of each round's ratio ``stream fps / model-only fps``. Throughput is counted in steady state (after
``--warmup`` frames), and the whole-run figure is given too.

A configuration is ``t<ORT intra-op threads>w<inference workers>`` with an optional ``-spin`` or
``-nospin`` (the session rebuilt with intra-op spinning forced on or off; by default
``edgepose.session`` decides). ``t2w1`` is the default API on a 2-core machine (one 2-thread
session); ``t1w2`` (two 1-thread inferences at once) is what ``edgepose run`` picks for offline video.

The machine may be shared: each round records the CPU other programs used meanwhile (the
machine's busy time from ``/proc/stat`` minus this process's), a round they disturbed (``--disturbed`` cores) is measured again
(``--retries``), and ``--wait-quiet S`` waits for them to go quiet before each round.

Before and after (``--compare REF``): this tree's stream against another tree's, in one run. REF is
a git ref (checked out into a temporary worktree, removed afterwards) or the folder of another
checkout. Each tree runs in its own worker process (its ``edgepose`` first on ``sys.path``; the
worker reports which one it imported), with the same model, video, venv and configuration; each
round starts fresh workers (a short warm-up run each, then the measured run), alternating which tree
goes first; a round disturbed by other programs is measured again, and the figure is the median over
rounds of ``this tree's steady-state fps / REF's``.

Memory (``--loop N``): the video looped for N frames through the stream (offline, tracking on,
a JSON-lines sink to a temporary file); resident memory (psutil) is sampled after warm-up and then
every ``--every`` frames; the figure is the growth from the first sample to the last.

Usage:
    .venv/bin/python benchmarks/stream_bench.py --rounds 7
    .venv/bin/python benchmarks/stream_bench.py --configs t2w1,t1w2,t2w1-nospin --rounds 9
    .venv/bin/python benchmarks/stream_bench.py --rounds 7 --passes 3   # 216-frame runs
    .venv/bin/python benchmarks/stream_bench.py --loop 10000
    .venv/bin/python benchmarks/stream_bench.py --compare stream-before-stages --rounds 9 --passes 3

Writes ``benchmarks/results/stream-<mode>-<date>-<host>.json`` (or ``--out``) and prints markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# --compare's workers: the tree whose edgepose is measured (default: this one)
TREE = Path(os.environ.get("EDGEPOSE_BENCH_TREE", ROOT)).resolve()
sys.path.insert(0, str(TREE))

from edgepose.bench.machine import cpu_model, usable_cores  # noqa: E402
from edgepose.fileio import write_json_atomic  # noqa: E402
from edgepose.runner import PoseEstimator  # noqa: E402
from edgepose.sinks import JsonLinesSink  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "video" / "mmaction2__demo_skeleton.mp4"


def parse_config(text: str) -> dict:
    m = re.fullmatch(r"t(\d+)w(\d+)(-spin|-nospin)?", text)
    if not m:
        raise SystemExit(f"bad configuration {text!r}: expected t<threads>w<workers>[-spin|-nospin], e.g. t2w1")
    spin = {None: None, "-spin": True, "-nospin": False}[m.group(3)]
    return {"name": text, "threads": int(m.group(1)), "workers": int(m.group(2)), "spin": spin}


def make_estimator(model: Path, cfg: dict, size: str | None) -> PoseEstimator:
    est = PoseEstimator(model, device="cpu", threads=cfg["threads"], size=size)
    if cfg["spin"] is not None:  # an experiment: edgepose.session decides spinning otherwise
        from edgepose._ort import ort
        from edgepose.session import session_options

        so = session_options(cfg["threads"], spinning=cfg["spin"])
        est.session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return est


# -- other programs' CPU use (this machine is shared) --------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _busy_s() -> float:
    """CPU seconds the whole machine has spent busy (``/proc/stat``; exited processes included)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / _TICK  # all but idle and iowait (guest time is inside user)


def _mine_s() -> float:
    t = os.times()
    return t.user + t.system


class Others:
    """CPU cores other programs used while a measurement ran: the machine's busy time minus ours."""

    def __enter__(self) -> Others:
        self.busy, self.mine, self.t = _busy_s(), _mine_s(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t
        self.cores = max(0.0, (_busy_s() - self.busy) - (_mine_s() - self.mine)) / wall


def wait_quiet(max_wait: float, threshold: float = 0.1) -> float:
    """Wait (up to ``max_wait`` s) until other programs use less than ``threshold`` cores; return their use."""
    deadline = time.monotonic() + max_wait
    while True:
        with Others() as o:
            time.sleep(0.5)
        if o.cores < threshold or time.monotonic() > deadline:
            return o.cores


def first_frame(video: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    ok, img = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"cannot read {video}")
    return img


def model_only(est: PoseEstimator, x: np.ndarray, workers: int, n: int, warmup: int) -> dict:
    """Inference alone on a fixed input, ``workers`` threads at once; steady-state frames per second."""
    stamps: list[float] = []
    lock = threading.Lock()
    count = iter(range(n + warmup))

    def work():
        xi = x.copy()[None]
        while True:
            with lock:
                if next(count, None) is None:
                    return
            est.infer(xi)
            with lock:
                stamps.append(time.perf_counter())

    c0, t0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    stamps.sort()
    steady = (len(stamps) - 1 - warmup) / (stamps[-1] - stamps[warmup])
    return {"fps": steady, "fps_whole": len(stamps) / wall, "cpu_ms_per_frame": cpu / len(stamps) * 1e3}


def end_to_end(est: PoseEstimator, video: Path, workers: int, warmup: int, max_frames: int | None,
               loop: bool = False) -> dict:
    """The stream over the video (offline, tracking on; ``loop``: played again until ``max_frames``);
    steady-state frames per second."""
    c0, t0 = time.process_time(), time.perf_counter()
    s = est.stream(video, workers=workers, max_frames=max_frames, loop=loop)
    stamps = [time.perf_counter() for _ in s]
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    st = s.stats
    assert st.accounted and st.processed == len(stamps), st.to_dict()
    steady = (len(stamps) - 1 - warmup) / (stamps[-1] - stamps[warmup])
    return {"fps": steady, "fps_whole": len(stamps) / wall, "cpu_ms_per_frame": cpu / len(stamps) * 1e3,
            "frames": len(stamps), "stage_ms": st.stage_ms, "threads": st.threads}  # fmt: skip


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def throughput(args) -> dict:
    configs = [parse_config(c) for c in args.configs.split(",")]
    img = first_frame(args.video)
    ests = {c["name"]: make_estimator(args.model, c, args.size) for c in configs}
    x, box = next(iter(ests.values())).preprocess(img)
    info = {"input": list(box.padded), "resized": list(box.resized), "source": list(box.src)}
    for est in ests.values():  # warm every session up
        for _ in range(3):
            est.infer(x[None])
    rows: dict[str, dict] = {c["name"]: {"model": [], "stream": [], "ratio": [], "model_cpu": [], "stream_cpu": [],
                                         "stream_whole": [], "stage_ms": None, "threads": None} for c in configs}  # fmt: skip
    loads = []
    disturbed = {c["name"]: 0 for c in configs}
    for r in range(args.rounds):
        order = configs[r % len(configs):] + configs[: r % len(configs)]
        for c in order:
            est = ests[c["name"]]
            for attempt in range(args.retries + 1):
                if args.wait_quiet:
                    wait_quiet(args.wait_quiet)
                loads.append(os.getloadavg()[0])
                pair, others = {}, []
                steps = ["model", "stream"] if r % 2 == 0 else ["stream", "model"]
                for what in steps:
                    with Others() as o:
                        if what == "model":
                            pair[what] = model_only(est, x, c["workers"], args.frames, args.warmup)
                        else:
                            pair[what] = end_to_end(est, args.video, c["workers"], args.warmup, args.frames,
                                                    loop=args.passes > 1)  # fmt: skip
                    others.append(o.cores)
                if max(others) <= args.disturbed:
                    break
                disturbed[c["name"]] += 1
                print(f"round {r + 1} {c['name']}: other programs used {max(others):.2f} cores"
                      f"{', measuring again' if attempt < args.retries else ', kept'}", file=sys.stderr)  # fmt: skip
            row = rows[c["name"]]
            row.setdefault("others_cores", []).append(max(others))
            row["model"].append(pair["model"]["fps"])
            row["stream"].append(pair["stream"]["fps"])
            row["stream_whole"].append(pair["stream"]["fps_whole"])
            row["ratio"].append(pair["stream"]["fps"] / pair["model"]["fps"])
            row["model_cpu"].append(pair["model"]["cpu_ms_per_frame"])
            row["stream_cpu"].append(pair["stream"]["cpu_ms_per_frame"])
            row["stage_ms"], row["threads"] = pair["stream"]["stage_ms"], pair["stream"]["threads"]
            print(f"round {r + 1}/{args.rounds} {c['name']:>12}: model {pair['model']['fps']:5.2f} fps, "
                  f"stream {pair['stream']['fps']:5.2f} fps, ratio {row['ratio'][-1]:.3f} "
                  f"(load {loads[-1]:.1f})", file=sys.stderr, flush=True)  # fmt: skip
    best_model = max(med(row["model"]) for row in rows.values())
    summary = {}
    for name, row in rows.items():
        summary[name] = {
            "model_fps": med(row["model"]), "stream_fps": med(row["stream"]),
            "stream_fps_whole_run": med(row["stream_whole"]),
            "ratio_median_of_rounds": med(row["ratio"]), "ratio_min": min(row["ratio"]), "ratio_max": max(row["ratio"]),
            "ratio_to_best_model_only": med(row["stream"]) / best_model,
            "model_cpu_ms_per_frame": med(row["model_cpu"]), "stream_cpu_ms_per_frame": med(row["stream_cpu"]),
            "stage_ms": row["stage_ms"], "threads": row["threads"], "rounds": row,
            "others_cores_median": med(row["others_cores"]), "disturbed_rounds_remeasured": disturbed[name],
        }  # fmt: skip
    return {"input": info, "configs": configs, "load_avg_1min": {"median": med(loads), "max": max(loads)},
            "summary": summary}  # fmt: skip


def _worker(args) -> None:
    """``--worker``: stream runs of this process's tree on request (one JSON line in, one out)."""
    import json

    import edgepose

    ests: dict[str, PoseEstimator] = {}
    for line in sys.stdin:
        req = json.loads(line)
        c = parse_config(req["config"])
        est = ests.get(c["name"]) or ests.setdefault(c["name"], make_estimator(args.model, c, args.size))
        with Others() as o:
            r = end_to_end(est, args.video, c["workers"], args.warmup, req.get("frames") or args.frames,
                           loop=args.passes > 1)  # fmt: skip
        sys.stdout.write(json.dumps({"fps": r["fps"], "fps_whole": r["fps_whole"], "cpu_ms_per_frame": r["cpu_ms_per_frame"],
                                     "others_cores": o.cores, "edgepose": edgepose.__file__}) + "\n")  # fmt: skip
        sys.stdout.flush()


def _tree(ref: str) -> tuple[Path, Callable[[], None]]:
    """The folder of ``ref`` (a folder, or a git ref checked out into a temporary worktree) and its clean-up."""
    import subprocess

    if Path(ref).is_dir():
        return Path(ref).resolve(), lambda: None
    tmp = Path(tempfile.mkdtemp(prefix="edgepose-before-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp), ref], check=True,
                   capture_output=True, text=True)  # fmt: skip

    def clean() -> None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp)], capture_output=True)
        shutil.rmtree(tmp.parent, ignore_errors=True)

    return tmp, clean


def compare(args) -> dict:
    """This tree's stream throughput against ``args.compare``'s, in alternating rounds (see the module doc)."""
    import json
    import signal
    import subprocess

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still removes its worktree
    ref_root, clean = _tree(args.compare)
    trees = {"this": ROOT, "ref": ref_root}
    argv = ["--worker", "--model", str(args.model), "--video", str(args.video), "--frames", str(args.frames),
            "--passes", str(args.passes), "--warmup", str(args.warmup)] + (["--size", args.size] if args.size else [])  # fmt: skip
    procs: dict[str, subprocess.Popen] = {}

    def start(k: str) -> None:
        procs[k] = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True,
                                    env={**os.environ, "EDGEPOSE_BENCH_TREE": str(trees[k])})  # fmt: skip

    def ask(k: str, config: str, frames: int | None = None) -> dict:
        procs[k].stdin.write(json.dumps({"config": config, "frames": frames}) + "\n")
        procs[k].stdin.flush()
        line = procs[k].stdout.readline()
        if not line:
            raise SystemExit(f"the {k} tree's worker ended (exit {procs[k].wait()})")
        return json.loads(line)

    def stop_all() -> None:
        for p in procs.values():
            p.stdin.close()
            p.wait(timeout=60)
        procs.clear()

    configs = args.configs.split(",")
    rows = {c: {"this": [], "ref": [], "ratio": [], "others_cores": []} for c in configs}
    imported: dict[str, str] = {}
    try:
        for r in range(args.rounds):
            for c in configs:
                order = ("this", "ref") if r % 2 == 0 else ("ref", "this")
                for attempt in range(args.retries + 1):
                    # fresh worker processes every time, started in the round's order: a process that happens
                    # to run slower (placement, memory) cannot bias every round (an A/A run of long-lived
                    # workers gave 0.956 with the same tree on both sides)
                    for k in order:
                        start(k)
                    for k in order:  # warm-up: a short run each, not counted
                        imported[k] = ask(k, c, frames=max(args.warmup + 10, 24))["edgepose"]
                    got = {k: ask(k, c) for k in order}
                    stop_all()
                    others = max(g["others_cores"] for g in got.values())
                    if others <= args.disturbed or attempt == args.retries:
                        break
                    print(f"round {r + 1} {c}: other programs used {others:.2f} cores, measuring again", file=sys.stderr)
                row = rows[c]
                row["this"].append(got["this"]["fps"])
                row["ref"].append(got["ref"]["fps"])
                row["ratio"].append(got["this"]["fps"] / got["ref"]["fps"])
                row["others_cores"].append(others)
                print(f"round {r + 1}/{args.rounds} {c:>6}: this {got['this']['fps']:5.2f} fps, {args.compare} "
                      f"{got['ref']['fps']:5.2f} fps, ratio {row['ratio'][-1]:.3f}", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        stop_all()
        clean()
    summary = {c: {"this_fps": med(row["this"]), "ref_fps": med(row["ref"]), "ratio_median_of_rounds": med(row["ratio"]),
                   "ratio_min": min(row["ratio"]), "ratio_max": max(row["ratio"]), "rounds": row}
               for c, row in rows.items()}  # fmt: skip
    return {"ref": args.compare, "trees": {k: str(v) for k, v in trees.items()}, "imported": imported,
            "summary": summary}  # fmt: skip


def loop_memory(args) -> dict:
    try:
        import psutil
    except ImportError as e:
        raise SystemExit("the memory mode needs psutil: pip install 'edgepose[bench]'") from e
    cfg = parse_config(args.configs.split(",")[0])
    est = make_estimator(args.model, cfg, args.size)
    proc = psutil.Process()
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sink = JsonLinesSink(Path(tmp) / "poses.jsonl")
        t0 = time.perf_counter()
        s = est.stream(args.video, loop=True, max_frames=args.loop, workers=cfg["workers"], sinks=[sink])
        n = 0
        for _ in s:
            n += 1
            if n >= args.warmup_frames and (n - args.warmup_frames) % args.every == 0 or n == args.loop:
                samples.append((n, proc.memory_info().rss / 2**20))
                print(f"frame {n}: rss {samples[-1][1]:.1f} MB", file=sys.stderr, flush=True)
        wall = time.perf_counter() - t0
    st = s.stats
    first, last = samples[0][1], samples[-1][1]
    return {"config": cfg, "frames": n, "loops": st.loops, "accounted": st.accounted, "dropped": st.dropped,
            "warmup_frames": args.warmup_frames, "rss_mb_after_warmup": first, "rss_mb_end": last,
            "rss_growth_mb": last - first, "rss_mb_max": max(v for _, v in samples), "samples": samples,
            "fps_whole_run": n / wall, "stage_ms": st.stage_ms, "threads": st.threads}  # fmt: skip


def machine() -> dict:
    import onnxruntime

    return {"host": socket.gethostname(), "cpu": cpu_model(), "usable_cores": usable_cores(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(), "numpy": np.__version__}  # fmt: skip


def markdown(res: dict) -> str:
    if res["mode"] == "compare":
        lines = [f"this tree against {res['result']['ref']}", "",
                 "| config | this tree fps | ref fps | this / ref (median of rounds, min-max) |", "|---|---|---|---|"]
        for name, s in res["result"]["summary"].items():
            lines.append(f"| {name} | {s['this_fps']:.2f} | {s['ref_fps']:.2f} | {s['ratio_median_of_rounds']:.3f} "
                         f"({s['ratio_min']:.3f}-{s['ratio_max']:.3f}) |")  # fmt: skip
        return "\n".join(lines)
    if res["mode"] == "loop":
        m = res["result"]
        return (f"| frames | loops | RSS after {m['warmup_frames']} frames | RSS at end | growth | max | fps |\n"
                f"|---|---|---|---|---|---|---|\n"
                f"| {m['frames']} | {m['loops']} | {m['rss_mb_after_warmup']:.1f} MB | {m['rss_mb_end']:.1f} MB | "
                f"{m['rss_growth_mb']:+.1f} MB | {m['rss_mb_max']:.1f} MB | {m['fps_whole_run']:.1f} |")  # fmt: skip
    inp = res["result"]["input"]
    lines = [f"input {inp['source'][0]}x{inp['source'][1]} -> network {inp['input'][0]}x{inp['input'][1]}; "
             f"load average (1 min) median {res['result']['load_avg_1min']['median']:.1f}",
             "", "| config | ORT threads x workers | model only fps | stream fps | stream / model (median of rounds, min-max) "
             "| stream / best model-only | CPU ms/frame model, stream | other programs (cores) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in res["result"]["summary"].items():
        t = s["threads"]
        lines.append(f"| {name} | {t['ort_intra_op']} x {t['inference_workers']} | {s['model_fps']:.2f} | "
                     f"{s['stream_fps']:.2f} | {s['ratio_median_of_rounds']:.3f} ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}) | "
                     f"{s['ratio_to_best_model_only']:.3f} | {s['model_cpu_ms_per_frame']:.0f}, {s['stream_cpu_ms_per_frame']:.0f} | "
                     f"{s['others_cores_median']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "mobilenet_thin.onnx")
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--size", default=None, help="input budget (default: the model's)")
    p.add_argument("--configs", default="t2w1,t1w2", help="comma-separated t<threads>w<workers>[-nospin] (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames", type=int, default=None, help="frames per stream run (default: the whole video)")
    p.add_argument("--passes", type=int, default=1,
                   help="play the video this many times in each stream run (and time as many model-only "
                        "frames): a longer steady state, as a camera pipeline has; default %(default)s")  # fmt: skip
    p.add_argument("--warmup", type=int, default=5, help="frames left out of steady-state throughput")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each round, wait up to S seconds for other programs to use < 0.1 cores")  # fmt: skip
    p.add_argument("--disturbed", type=float, default=0.25, metavar="CORES",
                   help="a round during which other programs used more cores than this is measured again")  # fmt: skip
    p.add_argument("--retries", type=int, default=2, help="times a disturbed round is measured again")
    p.add_argument("--loop", type=int, default=None, metavar="N", help="memory mode: loop the video for N frames")
    p.add_argument("--warmup-frames", type=int, default=300, help="memory mode: first RSS sample after this many frames")
    p.add_argument("--every", type=int, default=500, help="memory mode: RSS sample period in frames")
    p.add_argument("--compare", metavar="REF",
                   help="before/after: this tree against REF (a git ref or another checkout's folder), in one run")  # fmt: skip
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.frames is None:
        cap = cv2.VideoCapture(str(args.video))
        args.frames = (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 72) * max(1, args.passes)
        cap.release()
    if args.worker:
        _worker(args)
        return 0
    mode = "loop" if args.loop else "compare" if args.compare else "throughput"
    result = loop_memory(args) if args.loop else compare(args) if args.compare else throughput(args)
    res = {"mode": mode, "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
           "argv": sys.argv[1:], "video": str(args.video), "result": result}  # fmt: skip
    out = args.out or ROOT / "benchmarks" / "results" / f"stream-{mode}-{dt.date.today()}-{socket.gethostname()}.json"
    write_json_atomic(out, res, indent=1, default=float)
    print(markdown(res))
    print(f"\nwritten {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
