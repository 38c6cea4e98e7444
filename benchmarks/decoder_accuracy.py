"""Issue 3's figures: AP on coco-val-mini, decoder time per frame, decoder memory vs image size.

Run: ``.venv/bin/python benchmarks/decoder_accuracy.py [--model M] [--data ../shared/data] [--repeats 5]``
Writes ``benchmarks/results/decoder-<date>-<host>.json`` and prints a markdown summary.

- AP/AP50/AR: ``edgepose.evaluate.evaluate`` with the default model and settings (input budget
  432x368, greedy matching), as ``edgepose eval`` does.
- decode time: ``PoseEstimator.decode_maps`` (peaks, refinement, PAF scoring, assignment, grouping
  and the mapping back to image pixels) on the network outputs of every image, ``repeats`` times
  each, median and p90 over all calls (the network runs once per image, outside the timing).
- memory: the decoder's workspace size and the peak of Python/numpy allocations (tracemalloc)
  during one decode, for the same picture scaled to 640x480 ... 8000x6000: the decoder sees maps
  of the input budget's size only, so its memory does not grow with the image.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import socket
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepose.bench.machine import cpu_model, usable_cores  # noqa: E402
from edgepose.evaluate import evaluate  # noqa: E402
from edgepose.fileio import write_json_atomic  # noqa: E402
from edgepose.imageio import read_image  # noqa: E402
from edgepose.runner import PoseEstimator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "mobilenet_thin.onnx"))
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    coco = args.data / "coco-val-mini"
    est = PoseEstimator(args.model, device="cpu", threads=args.threads)

    rep = evaluate(est, coco / "person_keypoints.json", coco / "images", progress=False)

    gt = json.loads((coco / "person_keypoints.json").read_text())
    times = []
    for im in gt["images"]:
        img, _ = read_image(coco / "images" / im["file_name"])
        x, box = est.preprocess(img)
        hm, paf = est.infer(x[None])
        est.decode_maps(hm[0], paf[0], box)  # warm the workspace for this map size
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            est.decode_maps(hm[0], paf[0], box)
            times.append((time.perf_counter() - t0) * 1e3)

    photo, _ = read_image(args.data / "images" / "tfpose__apink2.jpg")
    memory = []
    for w, h in ((640, 480), (1920, 1080), (4000, 3000), (8000, 6000)):
        img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_LINEAR)
        x, box = est.preprocess(img)
        hm, paf = est.infer(x[None])
        est.decode_maps(hm[0], paf[0], box)
        tracemalloc.start()
        people, _ = est.decode_maps(hm[0], paf[0], box)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        memory.append({"image": f"{w}x{h}", "maps": f"{hm.shape[3]}x{hm.shape[2]}", "people": len(people),
                       "decode_peak_alloc_bytes": peak, "workspace_bytes": int(est._workspace.nbytes)})  # fmt: skip

    out = {
        "date": dt.date.today().isoformat(),
        "host": socket.gethostname(),
        "machine": {"cpu": cpu_model(), "cores": usable_cores(), "python": platform.python_version()},
        "model": str(args.model),
        "threads": args.threads,
        "input_budget": f"{est.budget[0]}x{est.budget[1]}",
        "decoder": est.decoder.to_dict(),
        "AP": rep["AP"], "AP50": rep["AP50"], "AR": rep["AR"],
        "stage_timings_ms": rep["timings_ms"],
        "decode_ms": {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)),
                      "max": float(np.max(times)), "calls": len(times)},
        "memory": memory,
    }  # fmt: skip
    path = args.out or ROOT / "benchmarks" / "results" / f"decoder-{out['date']}-{out['host']}.json"
    write_json_atomic(path, out, indent=2)
    print(f"| AP | AP50 | AR | decode median | decode p90 | (coco-val-mini, {out['input_budget']}, {args.threads} threads) |")
    print("|---|---|---|---|---|---|")
    print(f"| {out['AP']:.3f} | {out['AP50']:.3f} | {out['AR']:.3f} | {out['decode_ms']['median']:.2f} ms | "
          f"{out['decode_ms']['p90']:.2f} ms | |")  # fmt: skip
    print("\n| image | maps | decode peak allocations | workspace |\n|---|---|---|---|")
    for m in memory:
        print(f"| {m['image']} | {m['maps']} | {m['decode_peak_alloc_bytes'] / 1024:.0f} KiB | {m['workspace_bytes'] / 1024:.0f} KiB |")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
