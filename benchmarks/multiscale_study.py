"""Multi-scale and flip inference on coco-val-mini: AP, AP50, AR and time per frame per combination.

Every combination of pixel budget x scale set x flip runs the whole image set once (AP is
deterministic) and is timed per frame (pre-processing + inference + decoding, median and p90 over
the images) in the same process, rounds interleaved so that a busy moment slows all alike; the
single-scale presets are in the same run, so ratios are measured, not copied. The Pareto front
(no other combination both more accurate and faster) is marked.

Usage:
    .venv/bin/python benchmarks/multiscale_study.py                       # the full study (a few minutes)
    .venv/bin/python benchmarks/multiscale_study.py --budgets large --scale-sets 1 1,0.75 --flip both
    make study-multiscale                                                   # the combinations in docs/accuracy.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepose.evaluate import coco_ap  # noqa: E402
from edgepose.fileio import write_json_atomic  # noqa: E402
from edgepose.imageio import read_image  # noqa: E402
from edgepose.results import coco_results  # noqa: E402
from edgepose.runner import PoseEstimator  # noqa: E402


def label(budget: str, scales: str, flip: bool) -> str:
    return f"{budget} x[{scales}]{' +flip' if flip else ''}"


def pareto(rows: list[dict]) -> None:
    """Mark rows that no other row beats on both AP and time."""
    for r in rows:
        r["pareto"] = not any(o["AP"] >= r["AP"] and o["ms_p50"] <= r["ms_p50"] and
                              (o["AP"] > r["AP"] or o["ms_p50"] < r["ms_p50"]) for o in rows)  # fmt: skip


def machine() -> dict:
    from edgepose.bench.machine import machine_info

    return machine_info()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "mobilenet_thin.onnx"))
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budgets", nargs="+", default=["default", "large", "800x688"])
    p.add_argument("--scale-sets", nargs="+", default=["1", "1,0.75", "1,0.75,0.5", "1,0.5", "1,0.75,0.5,0.25"])
    p.add_argument("--flip", choices=["no", "yes", "both"], default="both")
    p.add_argument("--combos", nargs="+", metavar="BUDGET:SCALES:FLIP",
                   help="exact combinations instead of the product, e.g. large:1.2,0.8,0.5:0 large:1,0.5:1")
    p.add_argument("--rounds", type=int, default=2, help="timed passes over the images per combination")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/multiscale-<date>-<host>.json)")
    args = p.parse_args(argv)

    coco = args.data / "coco-val-mini"
    gt = json.loads((coco / "person_keypoints.json").read_text())
    images = [(im["id"], read_image(coco / "images" / im["file_name"])[0]) for im in gt["images"]]
    flips = {"no": [False], "yes": [True], "both": [False, True]}[args.flip]
    combos = [(b, s, f) for b in args.budgets for s in args.scale_sets for f in flips]
    if args.combos:
        combos = [(b, s, f in ("1", "yes", "flip")) for b, s, f in (c.split(":") for c in args.combos)]
    ests = {}
    for b, s, f in combos:
        ests[(b, s, f)] = PoseEstimator(args.model, device="cpu", threads=args.threads, size=b,
                                        scales=[float(v) for v in s.split(",")], flip=f)  # fmt: skip
    rows = {c: {"budget": c[0], "scales": c[1], "flip": c[2], "times": []} for c in combos}
    # accuracy: one pass each (also the warm-up)
    for c in combos:
        dets = []
        for img_id, img in images:
            dets.extend(coco_results(ests[c].predict(img), img_id))
        rows[c].update(coco_ap(gt, dets, [i for i, _ in images]))
        print(f"{label(*c):<32} AP {rows[c]['AP']:.3f}", flush=True)
    # time: rounds interleaved over the combinations, image by image
    for _ in range(args.rounds):
        for _, img in images:
            for c in combos:
                t0 = time.perf_counter()
                ests[c].predict(img)
                rows[c]["times"].append((time.perf_counter() - t0) * 1e3)
    out_rows = []
    for c in combos:
        r = rows[c]
        t = np.array(r.pop("times"))
        out_rows.append({"label": label(*c), "budget": r["budget"], "scales": r["scales"], "flip": r["flip"],
                         "runs": ests[c].plan.runs, "AP": r["AP"], "AP50": r["AP50"], "AR": r["AR"],
                         "ms_p50": float(np.median(t)), "ms_p90": float(np.percentile(t, 90))})  # fmt: skip
    pareto(out_rows)
    ref = next((r for r in out_rows if r["budget"] == "large" and r["scales"] == "1" and not r["flip"]), None)
    for r in out_rows:
        r["x_large"] = r["ms_p50"] / ref["ms_p50"] if ref else None
    res = {"date": dt.date.today().isoformat(), "machine": machine(), "threads": args.threads, "model": args.model,
           "images": len(images), "rounds": args.rounds, "rows": out_rows}  # fmt: skip
    host = res["machine"].get("host", "host")
    path = args.out or ROOT / "benchmarks" / "results" / f"multiscale-{res['date']}-{host}.json"
    write_json_atomic(path, res, indent=1)
    print()
    print("| budget | scales | flip | runs | AP | AP50 | AR | ms/frame p50 | x large | Pareto |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in sorted(out_rows, key=lambda r: r["ms_p50"]):
        xl = f"{r['x_large']:.2f}x" if r["x_large"] else ""
        print(f"| {r['budget']} | {r['scales']} | {'yes' if r['flip'] else 'no'} | {r['runs']} | {r['AP']:.3f} | "
              f"{r['AP50']:.3f} | {r['AR']:.3f} | {r['ms_p50']:.1f} | {xl} | {'*' if r['pareto'] else ''} |")  # fmt: skip
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
