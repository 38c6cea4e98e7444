"""``edgepose eval``: AP, AP50, AR and stage timings of a model on a COCO keypoint set."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgepose.commands import add_model_args, estimator_from_args


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--annotations", required=True, type=Path, help="COCO person_keypoints JSON")
    p.add_argument("--images", required=True, type=Path, help="folder with the images it names")
    add_model_args(p)
    p.add_argument("--json-out", type=Path, help="write AP, AP50, AR and timings_ms here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgepose.evaluate import evaluate
    from edgepose.fileio import write_json_atomic

    if not args.annotations.is_file():
        raise FileNotFoundError(f"no annotation file {args.annotations}")
    if not args.images.is_dir():
        raise FileNotFoundError(f"no image folder {args.images}")
    est = estimator_from_args(args)
    rep = evaluate(est, args.annotations, args.images, progress=not args.no_progress)
    rep.update(model=str(args.model), variant=est.meta.variant, providers=est.providers,
               input_budget=f"{est.budget[0]}x{est.budget[1]}", threads=est.threads)  # fmt: skip
    print(f"AP {rep['AP']:.3f}  AP50 {rep['AP50']:.3f}  AP75 {rep['AP75']:.3f}  AR {rep['AR']:.3f}  "
          f"({rep['images']} images, {rep['detections']} detections, {len(rep['failed'])} failed)")  # fmt: skip
    for stage, t in rep["timings_ms"].items():
        print(f"  {stage:<11} median {t['median']:7.2f} ms   p90 {t['p90']:7.2f} ms")
    if args.json_out:
        write_json_atomic(args.json_out, rep)
        print(f"wrote {args.json_out}")
    return 0
