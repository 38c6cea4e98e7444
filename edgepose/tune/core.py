"""The whole tuning run: check the inputs, plan, measure accuracy and speed (time-boxed), choose, confirm.

Example:
    >>> from edgepose.tune.core import Options, tune
    >>> r = tune(Options(frames="clip.mp4", target_fps=15, quick=True))  # doctest: +SKIP
    >>> r["choice"]["id"], r["choice"]["fps"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgepose.bench.lockstep import Quiet, Worker, WorkerError, interleave
from edgepose.bench.machine import machine_info, usable_cores
from edgepose.bench.stats import summary
from edgepose.tune import choose as rule
from edgepose.tune.accuracy import agreement, check_annotations, people17
from edgepose.tune.plan import Candidate, plan, size_cost

log = logging.getLogger(__name__)

__all__ = ["Options", "TuneError", "tune", "tune_models", "read_frames"]

ENGINE_MODULE = "edgepose.tune.engines"


class TuneError(ValueError):
    """Tuning cannot start or cannot finish; the message says why."""


@dataclass
class Options:
    """What to tune.

    Attributes:
        model: the model; the variants beside it (``.fp16.onnx``, ``.int8.onnx``) are candidates too.
        frames: the user's frames: a video, a folder of pictures, a camera index or a stream URL.
        target_fps: frames per second to reach (throughput, workers overlapping).
        budget_ms: or a latency budget: one frame's p90 time from read to people.
        max_ap_drop: the fastest candidate within this accuracy of the best (instead of the most
            accurate one that reaches the target).
        annotations, images: a COCO keypoints file and its pictures: accuracy is AP on them; else
            agreement with the most accurate candidate on the first frames of ``frames``.
        quick: fewer candidates (CPU, all cores, three sizes), fewer frames.
        time_limit: seconds for the whole run (default 480; quick 100): once past it, candidates
            not yet measured are skipped; candidates that cannot be chosen any more (dominated) are
            skipped all along.
        providers, variants, sizes, pairs: restrict the candidates (``pairs``: (threads, workers)).
        repeats, warmup: measured / discarded steps per candidate (screening pass).
        confirm_repeats: steps per candidate when the chosen one and its runners-up are measured again.
        agreement_frames: frames compared without annotations.
        frame_limit: loop over the first frames of a video when timing.
    """

    model: str = "models/mobilenet_thin.onnx"
    frames: str | None = None
    target_fps: float | None = None
    budget_ms: float | None = None
    max_ap_drop: float | None = None
    annotations: str | None = None
    images: str | None = None
    quick: bool = False
    time_limit: float | None = None
    providers: list[str] | None = None
    variants: list[str] | None = None
    sizes: list[str] | None = None
    pairs: list[tuple[int, int]] | None = None
    repeats: int | None = None
    warmup: int | None = None
    confirm_repeats: int | None = None
    agreement_frames: int | None = None
    frame_limit: int = 60

    def resolved(self) -> Options:
        o = dataclasses.replace(self)
        o.time_limit = o.time_limit if o.time_limit is not None else (100.0 if o.quick else 480.0)
        o.repeats = o.repeats or (6 if o.quick else 16)
        o.warmup = o.warmup if o.warmup is not None else (1 if o.quick else 3)
        o.confirm_repeats = o.confirm_repeats if o.confirm_repeats is not None else (10 if o.quick else 30)
        o.agreement_frames = o.agreement_frames or (8 if o.quick else 24)
        return o

    def check(self) -> None:
        """Raises TuneError for options that cannot work together (before anything runs)."""
        if self.frames is None:
            raise TuneError("edgepose tune measures speed on your own frames: pass --frames with a video file, a folder "
                            "of pictures, a camera index (0) or a stream URL, like the ones `edgepose run` will get")  # fmt: skip
        if self.target_fps is not None and self.budget_ms is not None:
            raise TuneError("give either --target-fps or --budget-ms, not both")
        if self.target_fps is None and self.budget_ms is None and self.max_ap_drop is None:
            raise TuneError("say what to reach: --target-fps F, --budget-ms T, or --max-ap-drop D (the fastest "
                            "configuration within D of the best accuracy)")  # fmt: skip
        for name in ("target_fps", "budget_ms"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise TuneError(f"--{name.replace('_', '-')} must be positive")
        if self.max_ap_drop is not None and self.max_ap_drop < 0:
            raise TuneError("--max-ap-drop must be 0 or more")
        if (self.annotations is None) != (self.images is None):
            raise TuneError("--annotations and --images go together")


def read_frames(source: str, n: int) -> tuple[list, str]:
    """The first ``n`` readable frames of ``source`` and its kind.

    Raises:
        TuneError: the source cannot be opened or gives no readable frame.
    """
    from edgepose.sources import SourceError, classify, iter_frames

    try:
        kind = classify(source)
        frames = []
        for f in iter_frames(source):
            if f.image is not None:
                frames.append(f.image)
            if len(frames) >= n:
                break
    except SourceError as e:
        raise TuneError(f"cannot read frames from {source}: {e}") from None
    if not frames:
        raise TuneError(f"no frames readable from {source}: pass a video, a folder of pictures or a camera that "
                        "gives pictures")  # fmt: skip
    return frames, kind


def _snapshot(frames: list, folder: Path) -> str:
    """Write captured frames (camera, stream) as PNG files; timing then reads them back."""
    import cv2

    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / f"frame{i:04d}.png"), img)
    return str(folder)


def _preferred(model: str) -> tuple[int, int]:
    from edgepose.runner import ModelError, PoseEstimator

    try:
        return PoseEstimator(model, device="cpu", threads=1).meta.input_size
    except ModelError as e:
        raise TuneError(str(e)) from None


def _estimator(c: Candidate):
    from edgepose.runner import PoseEstimator

    return PoseEstimator(c.model, device=c.device, threads=usable_cores(), size=c.size)


def _accuracy(cands: list[Candidate], o: Options, frames: list, deadline: float, bar, skipped: list) -> tuple[dict, dict]:
    """Accuracy per accuracy key (device/variant/size): AP, or agreement with the reference.

    Returns:
        ``(key -> accuracy dict, method dict)``.
    """
    from edgepose.evaluate import evaluate

    keys: dict[str, Candidate] = {}
    for c in cands:
        keys.setdefault(c.accuracy_key, c)
    out: dict[str, dict] = {}
    if o.annotations:
        method = {"metric": "AP", "what": f"COCO keypoint AP on {o.annotations} ({Path(o.images)})"}
        for k, c in keys.items():
            if time.monotonic() > deadline:
                skipped.append({"what": f"accuracy of {k}", "why": "time limit reached"})
                continue
            bar.set_postfix_str(f"AP {k}")
            try:
                rep = evaluate(_estimator(c), o.annotations, o.images, progress=False)
            except Exception as e:  # noqa: BLE001 - a candidate that cannot run is skipped with the reason
                skipped.append({"what": k, "why": f"cannot run: {type(e).__name__}: {e}"})
                continue
            out[k] = {"value": rep["AP"], "AP": rep["AP"], "AP50": rep["AP50"], "AR": rep["AR"]}
            bar.update(1)
        return out, method
    # agreement: the reference is the most accurate candidate by construction (most pixels and runs, fp32)
    order = sorted(keys.values(), key=lambda c: (c.variant != "fp32", -size_cost(c.size, _PREF[0]), c.device != "cpu"))
    ref = order[0]
    method = {"metric": "agreement", "reference": ref.accuracy_key, "frames": len(frames),
              "what": f"no annotations: agreement with {ref.accuracy_key} (the most accurate candidate) on the first "
                      f"{len(frames)} frames: mean OKS of its people matched one to one (a missed person counts 0); "
                      "found/missed at OKS 0.5; extra = people the reference does not have"}  # fmt: skip
    people: dict[str, list] = {}
    for k, c in [(ref.accuracy_key, ref)] + [(k, c) for k, c in keys.items() if k != ref.accuracy_key]:
        if time.monotonic() > deadline and k != ref.accuracy_key:
            skipped.append({"what": f"accuracy of {k}", "why": "time limit reached"})
            continue
        bar.set_postfix_str(f"agreement {k}")
        try:
            est = _estimator(c)
            people[k] = [people17(est.predict(img)) for img in frames]
        except Exception as e:  # noqa: BLE001
            skipped.append({"what": k, "why": f"cannot run: {type(e).__name__}: {e}"})
            continue
        bar.update(1)
    if ref.accuracy_key not in people:
        raise TuneError(f"the reference configuration {ref.accuracy_key} cannot run here; see the log")
    for k, p in people.items():
        a = agreement(people[ref.accuracy_key], p)
        out[k] = {"value": a["oks"], **a}
    return out, method


_PREF: list[tuple[int, int]] = [(432, 368)]


def _row(c: Candidate, w: Worker, samples: list[dict], acc: dict | None, preferred) -> dict:
    row = {**c.to_dict(), "accuracy": acc["value"] if acc else None, "accuracy_detail": acc,
           "same": f"{c.device}/{c.variant}/t{c.threads}w{c.workers}", "cost": size_cost(c.size, preferred),
           "input_budget": w.info.get("input_budget"), "scales": w.info.get("scales"), "flip": w.info.get("flip"),
           "active_providers": w.info.get("providers")}  # fmt: skip
    if w.error or not samples:
        row["error"] = (w.error or "no samples").splitlines()[0]
        row["fps"] = None
        return row
    total = summary([s["total"] for s in samples])
    row.update(
        steps=len(samples), fps=1000.0 / total["mean"] if total["mean"] else None,
        total_ms={k: total[k] for k in ("p50", "p90", "mean")},
        latency_ms={k: summary([s["latency"] for s in samples])[k] for k in ("p50", "p90")},
        stages_ms={st: summary([s.get(st) for s in samples])["p50"] for st in ("read", "preprocess", "inference", "decode")},
        cpu_ms=summary([s["cpu"] for s in samples])["mean"],
        background_cores=summary([s.get("bg_cores", 0.0) for s in samples])["p50"],
    )  # fmt: skip
    try:
        row["peak_rss_mb"] = w.stats()["peak_rss_mb"]
    except WorkerError:
        row["peak_rss_mb"] = None
    return row


def _measure(cands: list[Candidate], o: Options, source: str, accs: dict, preferred, quiet: Quiet, bar,
             repeats: int, warmup: int) -> list[dict]:  # fmt: skip
    """Speed of ``cands`` in lock step, one worker process each."""
    workers = []
    for c in cands:
        spec = {"source": source, "frames": o.frame_limit, "model": c.model, "device": c.device, "threads": c.threads,
                "size": c.size, "workers": c.workers}  # fmt: skip
        w = Worker(c.id, "tune", spec, timeout=600, module=ENGINE_MODULE)
        try:
            w.start()
        except WorkerError as e:
            w.error = str(e)
            log.warning("%s", e)
            bar.update(repeats + warmup)
        workers.append(w)
    try:
        samples = interleave(workers, warmup=warmup, repeats=repeats, quiet=quiet, progress=lambda n: bar.update(n))
        return [_row(c, w, samples.get(c.id, []), accs.get(c.accuracy_key), preferred)
                for c, w in zip(cands, workers, strict=True)]  # fmt: skip
    finally:
        for w in workers:
            w.close()
        bar.update(warmup * len(cands))


def tune(opts: Options, progress: bool = True) -> dict:
    """Measure the candidates and choose one; see :class:`Options`.

    Returns:
        ``{"schema", "started", "finished", "machine", "settings", "accuracy_method", "skipped", "pruned",
        "rows", "choice" (a row or None), "closest", "confirmed"}``.

    Raises:
        TuneError, FileNotFoundError, ValueError: bad inputs (one clear message each).
    """
    from tqdm import tqdm

    o = opts.resolved()
    o.check()
    t0 = time.monotonic()
    deadline = t0 + o.time_limit
    started = dt.datetime.now(dt.timezone.utc).astimezone()
    if not Path(o.model).is_file():
        raise FileNotFoundError(f"no model at {o.model}; build it with `make model` or pass --model")
    if o.annotations:
        check_annotations(o.annotations, o.images)
    frames, kind = read_frames(o.frames, o.agreement_frames)
    preferred = _preferred(o.model)
    _PREF[0] = preferred
    sizes = o.sizes
    cands, skipped = plan(o.model, preferred=preferred, quick=o.quick, providers=o.providers, variants=o.variants,
                          sizes=sizes, pairs=o.pairs)  # fmt: skip
    if o.quick and not sizes:
        skipped.append({"what": "size accurate", "why": "not in --quick (several scales and flip: slow)"})
    tmp = None
    source = o.frames
    if kind in ("camera", "stream"):  # a live source: capture once, then time the same pictures
        tmp = tempfile.TemporaryDirectory(prefix="edgepose-tune-")
        more, _ = read_frames(o.frames, o.frame_limit)
        source = _snapshot(more, Path(tmp.name))
    quiet = Quiet(max_wait=0.0 if o.quick else 0.5, retries=0 if o.quick else 2)
    n_keys = len({c.accuracy_key for c in cands})
    bar = tqdm(total=n_keys + len(cands) * (o.repeats + o.warmup), desc="tune", unit="step", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    pruned: list[dict] = []
    rows: list[dict] = []
    try:
        accs, method = _accuracy(cands, o, frames, deadline, bar, skipped)
        best_acc = max((a["value"] for a in accs.values()), default=None)
        by_size: dict[str, list[Candidate]] = {}
        for c in cands:
            by_size.setdefault(c.size, []).append(c)
        for size, group in by_size.items():
            todo = []
            for c in group:
                if c.accuracy_key not in accs:
                    pruned.append({"id": c.id, "why": "its accuracy could not be measured"})
                    continue
                probe = {"accuracy": accs[c.accuracy_key]["value"], "cost": size_cost(c.size, preferred),
                         "same": f"{c.device}/{c.variant}/t{c.threads}w{c.workers}"}  # fmt: skip
                why = rule.dominated(probe, rows, o.target_fps, o.budget_ms, o.max_ap_drop, best_acc)
                if why is None and rows and time.monotonic() > deadline:
                    why = f"time limit ({o.time_limit:g} s) reached"
                if why:
                    pruned.append({"id": c.id, "why": why})
                    continue
                todo.append(c)
            bar.update((len(group) - len(todo)) * (o.repeats + o.warmup))
            if not todo:
                continue
            bar.set_postfix_str(f"speed {size} ({len(todo)} candidates)")
            rows += _measure(todo, o, source, accs, preferred, quiet, bar, o.repeats, o.warmup)
        choice = rule.choose(rows, o.target_fps, o.budget_ms, o.max_ap_drop)
        confirmed: list[str] = []
        if choice is not None and o.confirm_repeats:
            # measure the choice and its runners-up again, together and longer: the figures the profile keeps
            rest = [r for r in rows if r is not choice]
            short = [choice]
            for _ in range(2):
                nxt = rule.choose(rest, o.target_fps, o.budget_ms, o.max_ap_drop)
                if nxt is None:
                    break
                short.append(nxt)
                rest = [r for r in rest if r is not nxt]
            bar.total += len(short) * (o.confirm_repeats + o.warmup)
            bar.set_postfix_str("confirming the choice")
            by_id = {c.id: c for c in cands}
            again = _measure([by_id[r["id"]] for r in short], o, source, accs, preferred, quiet, bar,
                             o.confirm_repeats, o.warmup)  # fmt: skip
            for r, new in zip(short, again, strict=True):
                if new.get("fps") is not None:
                    new["screening"] = {k: r.get(k) for k in ("fps", "latency_ms", "cpu_ms")}
                    rows[rows.index(r)] = new
                    confirmed.append(new["id"])
            choice = rule.choose([r for r in rows if r["id"] in confirmed], o.target_fps, o.budget_ms, o.max_ap_drop) \
                or rule.choose(rows, o.target_fps, o.budget_ms, o.max_ap_drop)
    finally:
        bar.close()
        if tmp is not None:
            tmp.cleanup()
    finished = dt.datetime.now(dt.timezone.utc).astimezone()
    for r in rows:
        r["meets_target"] = rule.meets(r, o.target_fps, o.budget_ms) if r.get("fps") else False
        r["pareto"] = False
    for r in rule.pareto(rows):
        r["pareto"] = True
    return {
        "schema": "edgepose-tune/1",
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - t0, 1),
        "machine": machine_info(),
        "settings": {
            "model": o.model, "frames": o.frames, "frames_kind": kind, "target_fps": o.target_fps,
            "budget_ms": o.budget_ms, "max_ap_drop": o.max_ap_drop, "annotations": o.annotations, "images": o.images,
            "quick": o.quick, "time_limit_s": o.time_limit, "repeats": o.repeats, "warmup": o.warmup,
            "confirm_repeats": o.confirm_repeats, "preferred_size": list(preferred),
            "method": ("one worker process per candidate (python -m edgepose.bench.worker); candidates of one input size "
                       "run in lock step on the same frames, one step each in turn, order rotated; a step is one frame "
                       "(workers=1) or `workers` frames inferred at once; fps = 1000 / mean wall time per frame; "
                       "latency = one frame's time from read to people; cpu_ms = process CPU time per frame; the "
                       "choice and up to two runners-up are measured again together (confirm_repeats steps)"),
        },  # fmt: skip
        "accuracy_method": method,
        "skipped": skipped,
        "pruned": pruned,
        "rows": rows,
        "choice": choice,
        "confirmed": confirmed,
        "closest": [] if choice else rule.closest(rows, o.target_fps, o.budget_ms),
    }


def tune_models(opts: Options, models: list[str], progress: bool = True) -> dict:
    """Tune several models (each with the variants beside it) and choose among all of them.

    Each model is tuned as :func:`tune` does (its own preferred size, sizes and candidates); the choice
    is then made over every model's measured rows with the same rule. Accuracy must be comparable
    across models, so this needs ``annotations`` (AP): agreement is measured against each model's own
    most accurate candidate.

    Example:
        >>> tune_models(Options(frames="clip.mp4", target_fps=15, annotations="kp.json", images="img/"),
        ...             ["models/mobilenet_thin.onnx", "models/lwop.onnx"])  # doctest: +SKIP

    Raises:
        TuneError: several models without annotations.
    """
    models = list(dict.fromkeys(str(m) for m in models))
    if len(models) == 1:
        return tune(dataclasses.replace(opts, model=models[0]), progress)
    if not opts.annotations:
        raise TuneError("several models are compared by AP: give --annotations and --images (agreement is "
                        "measured against each model's own best candidate, so it cannot rank models)")
    reports = [tune(dataclasses.replace(opts, model=m), progress) for m in models]
    rows: list[dict] = []
    confirmed: list[str] = []
    per_model = []
    for m, rep in zip(models, reports, strict=True):
        tag = Path(m).name.removesuffix(".onnx")
        for r in rep["rows"]:
            r["id"] = f"{tag}:{r['id']}"
            r["same"] = f"{tag}:{r['same']}"
            rows.append(r)
        confirmed += [f"{tag}:{i}" for i in rep["confirmed"]]
        per_model.append({"model": m, "preferred_size": rep["settings"]["preferred_size"], "seconds": rep["seconds"],
                          "skipped": rep["skipped"], "pruned": rep["pruned"]})  # fmt: skip
    o = reports[0]["settings"]
    choice = rule.choose([r for r in rows if r["id"] in confirmed], o["target_fps"], o["budget_ms"], opts.max_ap_drop) \
        or rule.choose(rows, o["target_fps"], o["budget_ms"], opts.max_ap_drop)
    for r in rows:
        r["pareto"] = False
    for r in rule.pareto(rows):
        r["pareto"] = True
    out = dict(reports[0])
    out.update(
        started=reports[0]["started"], finished=reports[-1]["finished"], seconds=round(sum(r["seconds"] for r in reports), 1),
        settings={**o, "model": models[0], "models": models}, per_model=per_model,
        skipped=[s for r in reports for s in r["skipped"]], pruned=[p for r in reports for p in r["pruned"]],
        rows=rows, choice=choice, confirmed=confirmed,
        closest=[] if choice else rule.closest(rows, o["target_fps"], o["budget_ms"]),
    )  # fmt: skip
    return out
