"""``edgepose tune``: measure this device on your frames and write the profile to run with.

Candidates: every execution provider of this onnxruntime build x every variant beside ``--model``
(fp32, fp16, int8) x input sizes (presets, budgets between them, ``accurate``) x threads x workers.
Speed is measured end to end on ``--frames`` (read, pre-process, inference, decode), accuracy is AP
with ``--annotations``/``--images``, else agreement with the most accurate candidate. The profile
(``--out``), a markdown table and a Pareto plot beside it; use it with ``edgepose run --profile``,
``edgepose eval --profile`` or ``PoseEstimator.from_profile``. See docs/tune.md.

Examples:
    edgepose tune --frames clip.mp4 --target-fps 15 --out profile.json
    edgepose tune --frames 0 --budget-ms 80 --out profile.json            # a camera
    edgepose tune --frames clip.mp4 --max-ap-drop 0.02 --annotations person_keypoints.json --images val/ --out p.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgepose.commands import DEFAULT_MODEL


def _pairs(text: str) -> tuple[int, int]:
    try:
        t, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected THREADSxWORKERS such as 2x1, not {text!r}") from None
    if t < 1 or w < 1:
        raise argparse.ArgumentTypeError("threads and workers must be at least 1")
    return t, w


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", help="model; .fp16/.int8 variants beside it are candidates too (default "
                   f"{DEFAULT_MODEL}); repeat to compare models (then needs --annotations: chosen by AP)")
    p.add_argument("--frames", help="your frames: a video file, a folder of pictures, a camera index or a stream URL")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-fps", type=float, metavar="F", help="frames per second to reach")
    g.add_argument("--budget-ms", type=float, metavar="T", help="or a latency budget: one frame's p90, read to people")
    p.add_argument("--max-ap-drop", type=float, metavar="D", help="choose the fastest configuration within D of the "
                   "best accuracy (with a target: among those that reach it)")  # fmt: skip
    p.add_argument("--annotations", help="COCO person_keypoints JSON: accuracy is AP on it (needs --images)")
    p.add_argument("--images", help="the folder with the pictures the annotations name")
    p.add_argument("--quick", action="store_true", help="CPU, all cores, three sizes, few frames (about a minute)")
    p.add_argument("--time-limit", type=float, metavar="S", help="seconds for the whole run (default 480, quick 100); "
                   "candidates that cannot be chosen any more are skipped all along")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="the profile JSON; the table (.md) and plot (.png) go beside it")
    c = p.add_argument_group("restricting the candidates")
    c.add_argument("--providers", nargs="+", metavar="DEVICE", help="cpu, cuda, tensorrt, openvino (default: all available)")
    c.add_argument("--variants", nargs="+", choices=["fp32", "fp16", "int8"], help="default: every variant present")
    c.add_argument("--sizes", nargs="+", metavar="SIZE", help="presets or WxH (default: small, two budgets between the "
                   "presets, default, large, accurate)")  # fmt: skip
    c.add_argument("--threads-workers", nargs="+", type=_pairs, metavar="TxW",
                   help="threads x workers pairs (default: all cores x 1, 1 x 1, half the cores x 2)")  # fmt: skip
    c.add_argument("--repeats", type=int, help="measured steps per candidate (default 16; quick 6)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check_out(out: Path) -> None:
    """Fail before measuring when the profile cannot be written."""
    import os

    if out.exists() and out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'profile.json'}")
    folder = out.parent if str(out.parent) else Path(".")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the profile to {out}: {probe} is not a writable folder")


def run(args: argparse.Namespace) -> int:
    from edgepose.fileio import write_text_atomic
    from edgepose.tune import Options, tune_models
    from edgepose.tune.profile import make_profile, write_profile
    from edgepose.tune.report import markdown, target_text, write_plot

    _check_out(args.out)
    models = args.model or [DEFAULT_MODEL]
    opts = Options(model=models[0], frames=args.frames, target_fps=args.target_fps, budget_ms=args.budget_ms,
                   max_ap_drop=args.max_ap_drop, annotations=args.annotations, images=args.images, quick=args.quick,
                   time_limit=args.time_limit, providers=args.providers, variants=args.variants, sizes=args.sizes,
                   pairs=args.threads_workers, repeats=args.repeats)  # fmt: skip
    result = tune_models(opts, models, progress=not args.no_progress)
    variants = sorted({r["variant"] for r in result["rows"]})
    if variants == ["fp32"] and any(s["what"].startswith("variant") for s in result["skipped"]):
        print(f"note: only the fp32 model is beside {models[0]} (no .fp16/.int8 variants): tuned sizes, threads and "
              "workers of it alone; `make variants` builds the others")  # fmt: skip
    table = markdown(result)
    md = write_text_atomic(args.out.with_suffix(".md"), table)
    print(table)
    print(f"wrote {md}")
    try:
        print(f"wrote {write_plot(result, args.out.with_suffix('.png'))}")
    except ImportError:
        print("plot skipped: matplotlib is missing (pip install 'edgepose[bench]')")
    c = result["choice"]
    if c is None:
        near = "; ".join(f"{r['id']} ({r['fps']:.1f} fps, p90 {r['latency_ms']['p90']:.0f} ms, "
                         f"{result['accuracy_method']['metric']} {r['accuracy']:.3f})" for r in result["closest"])  # fmt: skip
        hint = "lower the target" + (", or build the fp16/int8 variants (`make variants`)"
                                     if any(s["what"].startswith("variant") for s in result["skipped"]) else "")
        print(f"error: no configuration reaches {target_text(result['settings'])} on this machine; closest: "
              f"{near or 'none measured'}. No profile written: {hint}", file=sys.stderr)  # fmt: skip
        return 1
    path = write_profile(args.out, make_profile(result, args.out))
    print(f"chosen: {c['id']}: {c['fps']:.1f} fps, latency p50 {c['latency_ms']['p50']:.1f} ms / p90 "
          f"{c['latency_ms']['p90']:.1f} ms, {result['accuracy_method']['metric']} {c['accuracy']:.3f}")  # fmt: skip
    print(f"wrote {path}; use it with `edgepose run SOURCE --profile {path}`")
    return 0
