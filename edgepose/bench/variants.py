"""Accuracy, size and CPU speed of a model's variants against its fp32 model, measured in one run.

For each variant (fp16, int8, ...) next to the fp32 model:

* output error: max and mean |variant - fp32| of heatmaps and PAFs over real images, on the map
  cells that cover the image (not the letterbox padding, which the decoder never reads);
* AP / AP50 / AR on a COCO keypoint set (pycocotools), every variant through the same runtime
  and decoder;
* keypoint agreement: people are matched between fp32 and the variant per image (Hungarian on the
  mean distance of shared keypoints) and the share of fp32's keypoints that the variant puts within
  2 px is counted (unmatched people count as misses);
* file size;
* CPU inference time, interleaved: every round runs each model once on the same input (the order
  rotates), inputs are real images fitted into the same pixel budget (432x368 by default), all
  sessions have the same options and thread count, and ORT's idle thread spinning is off so that
  one session's pool cannot steal the cores of the next;
* optionally where the time goes: ORT's profiler summed by operator type.

Example:
    >>> rep = variant_report("models/mobilenet_thin.onnx", ["models/mobilenet_thin.int8.onnx"],
    ...                      annotations="person_keypoints.json", images="images/")  # doctest: +SKIP
    >>> print(to_markdown(rep))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgepose._ort import ort
from edgepose.meta import HEATMAPS, INPUT, PAFS

log = logging.getLogger(__name__)

__all__ = ["variant_report", "to_markdown", "output_errors", "keypoint_agreement", "time_interleaved",
           "profile_ops", "match_people"]  # fmt: skip


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # pragma: no cover - not Unix
        return None


def _session(path: str | Path, threads: int, profile_prefix: str | None = None, device: str = "cpu"):
    from edgepose.providers import resolve
    from edgepose.session import session_options

    # Several sessions take turns in this process: a finished session's spinning pool would
    # steal the cores of the next one and bias the comparison.
    so = session_options(threads, spinning=False)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    spec = resolve(device, model_sha=Path(path).name, threads=threads)
    return ort.InferenceSession(str(path), so, providers=spec.providers, provider_options=spec.provider_options)


# -- outputs ----------------------------------------------------------------------------------------
def output_errors(ref_sess, sess, inputs: Sequence[tuple[np.ndarray, tuple[int, int]]], stride: int) -> dict:
    """Max / mean |sess - ref_sess| of heatmaps and PAFs over ``inputs`` = [(x (3,H,W), (valid_w, valid_h))]."""
    out = {"heatmaps_max": 0.0, "heatmaps_mean": 0.0, "pafs_max": 0.0, "pafs_mean": 0.0}
    for x, (vw, vh) in inputs:
        a = ref_sess.run([HEATMAPS, PAFS], {INPUT: x[None]})
        b = sess.run([HEATMAPS, PAFS], {INPUT: x[None]})
        sh, sw = -(-vh // stride), -(-vw // stride)
        for name, ma, mb in zip((HEATMAPS, PAFS), a, b, strict=True):
            d = np.abs(ma[..., :sh, :sw].astype(np.float64) - mb[..., :sh, :sw])
            out[f"{name}_max"] = max(out[f"{name}_max"], float(d.max()))
            out[f"{name}_mean"] += float(d.mean()) / max(1, len(inputs))
    return out


# -- keypoints --------------------------------------------------------------------------------------
def match_people(ref: list, other: list) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of ``ref[i]`` and ``other[j]`` (lists of :class:`Person`) minimising the mean
    distance over keypoints both see; people sharing no keypoint are not paired."""
    if not ref or not other:
        return []
    cost = np.full((len(ref), len(other)), 1e9)
    for i, p in enumerate(ref):
        for j, q in enumerate(other):
            both = (p.keypoints[:, 2] > 0) & (q.keypoints[:, 2] > 0)
            if both.any():
                cost[i, j] = float(np.linalg.norm(p.keypoints[both, :2] - q.keypoints[both, :2], axis=1).mean())
    try:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        pairs = list(zip(rows.tolist(), cols.tolist(), strict=True))
    except ImportError:  # greedy fallback
        pairs, used_i, used_j = [], set(), set()
        for flat in np.argsort(cost, axis=None):
            i, j = divmod(int(flat), cost.shape[1])
            if i not in used_i and j not in used_j:
                pairs.append((i, j))
                used_i.add(i)
                used_j.add(j)
    return [(i, j) for i, j in pairs if cost[i, j] < 1e9]


def keypoint_agreement(ref_results: list, results: list, px: float = 2.0) -> dict:
    """Share of the reference's visible keypoints that ``results`` reproduces within ``px`` pixels.

    Args:
        ref_results, results: :class:`FrameResult` lists for the same frames.
    """
    total = hit = 0
    people_ref = people = 0
    for a, b in zip(ref_results, results, strict=True):
        people_ref += len(a.people)
        people += len(b.people)
        total += sum(int((p.keypoints[:, 2] > 0).sum()) for p in a.people)
        for i, j in match_people(a.people, b.people):
            p, q = a.people[i].keypoints, b.people[j].keypoints
            both = (p[:, 2] > 0) & (q[:, 2] > 0)
            d = np.linalg.norm(p[:, :2] - q[:, :2], axis=1)
            hit += int((both & (d <= px)).sum())
    return {"within_px": px, "share": hit / total if total else 1.0, "keypoints": total,
            "people_fp32": people_ref, "people": people}  # fmt: skip


# -- timing -----------------------------------------------------------------------------------------
def time_interleaved(sessions: dict, inputs: Sequence[np.ndarray], rounds: int = 30, warmup: int = 3,
                     progress: bool = True) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    """Wall and process-CPU milliseconds per run for each session, taking turns on the same input every round.

    Returns:
        ``{name: {"wall": [...], "cpu": [...]}}``. CPU time (all threads of this process) hardly
        changes when other programs preempt the run; wall time does, so both are kept.
    """
    from tqdm import tqdm

    names = list(sessions)
    for x in inputs[:warmup] or inputs[:1]:
        for n in names:
            sessions[n].run(None, {INPUT: x[None]})
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for r in tqdm(range(rounds), desc="timing", unit="round", disable=not progress):
        x = inputs[r % len(inputs)][None]
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            c0, t0 = time.process_time(), time.perf_counter()
            sessions[n].run(None, {INPUT: x})
            t1, c1 = time.perf_counter(), time.process_time()
            times[n]["wall"].append((t1 - t0) * 1e3)
            times[n]["cpu"].append((c1 - c0) * 1e3)
    return times


def profile_ops(path: str | Path, inputs: Sequence[np.ndarray], threads: int, runs: int = 10,
                device: str = "cpu") -> dict:
    """Time per operator type (ms per run and share) from ORT's profiler (a provider that runs
    the whole graph itself, like OpenVINO, shows as one node)."""
    with tempfile.TemporaryDirectory(prefix="edgepose-prof-") as tmp:
        sess = _session(path, threads, profile_prefix=os.path.join(tmp, "p"), device=device)
        for i in range(runs):
            sess.run(None, {INPUT: inputs[i % len(inputs)][None]})
        prof = sess.end_profiling()
        events = json.loads(Path(prof).read_text())
    by_op: dict[str, float] = {}
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + ev.get("dur", 0) / 1e3
    total = sum(by_op.values()) or 1.0
    return {op: {"ms_per_run": ms / runs, "share": ms / total}
            for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])}  # fmt: skip


# -- the report -------------------------------------------------------------------------------------
def _props(path: Path) -> dict[str, str]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(sess.get_modelmeta().custom_metadata_map)


def variant_report(
    model: str | Path,
    variants: Sequence[str | Path],
    *,
    annotations: str | Path,
    images: str | Path,
    threads: int = 2,
    size: tuple[int, int] = (432, 368),
    rounds: int = 40,
    timing_images: int = 8,
    profile: bool = False,
    progress: bool = True,
    device: str = "cpu",
) -> dict:
    """Measure ``variants`` against the fp32 ``model`` (see the module docstring).

    Args:
        model: the fp32 model.
        variants: the variant models.
        annotations, images: a COCO keypoint file and its images (AP, errors, keypoint agreement).
        threads: intra-op threads of every session (evaluation and timing).
        size: the pixel budget every frame is fitted into (the same for all models).
        rounds: timing rounds (each runs every model once).
        timing_images: how many of the images feed the timing rounds.
        profile: add ORT's time per operator type for every model.
        device: the execution provider of every session (``cpu``, ``openvino`` ...; see
            :mod:`edgepose.providers`); errors, AP and timing all use it.

    Returns:
        a JSON-able dict: ``settings`` and one entry per model under ``models`` (fp32 first).
    """
    from tqdm import tqdm

    from edgepose.evaluate import coco_ap
    from edgepose.imageio import ImageError, read_image
    from edgepose.results import coco_results
    from edgepose.runner import PoseEstimator

    model = Path(model)
    paths = [model] + [Path(v) for v in variants]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"no model at {p}" + ("; build it with `make variants`" if p != model else ""))
    with open(annotations) as f:
        gt = json.load(f)
    imgs = gt.get("images", [])
    if not imgs:
        raise ValueError(f"{annotations} lists no images")
    frames = []
    for im in imgs:
        try:
            frames.append((im["id"], read_image(Path(images) / im["file_name"])[0]))
        except ImageError as e:
            log.warning("skipping %s", e)
    if not frames:
        raise FileNotFoundError(f"none of the images of {annotations} can be read from {images}")
    ests = [PoseEstimator(p, device=device, threads=threads, size=size) for p in paths]
    base = ests[0]
    inputs = []
    for _, img in frames:
        x, box = base.preprocess(img)
        inputs.append((x.copy(), box.resized))
    rows = []
    results: list[list] = []
    for p, est in zip(paths, ests, strict=True):
        dets, res = [], []
        for image_id, img in tqdm(frames, desc=f"eval {p.name}", unit="img", disable=not progress):
            r = est.predict(img)
            res.append(r)
            dets.extend(coco_results(r, image_id))
        scores = coco_ap(gt, dets, [i for i, _ in frames])
        results.append(res)
        props = _props(p)
        row = {
            "name": p.name, "path": str(p), "variant": est.meta.variant, "size_bytes": p.stat().st_size,
            "AP": scores["AP"], "AP50": scores["AP50"], "AR": scores["AR"], "detections": len(dets),
            "metadata": {k: v for k, v in props.items() if k.startswith(("calibration", "quant", "equalization",
                                                                         "float_nodes", "fixed_input", "fp16"))},
        }  # fmt: skip
        rows.append(row)
    ref_sess = _session(model, threads, device=device)
    for row, p, res in zip(rows, paths, results, strict=True):
        row["errors"] = output_errors(ref_sess, _session(p, threads, device=device), inputs, base.meta.stride)
        row["keypoints"] = keypoint_agreement(results[0], res)
        row["AP_delta"] = row["AP"] - rows[0]["AP"]
    sessions = {row["name"]: _session(p, threads, device=device) for row, p in zip(rows, paths, strict=True)}
    active = sorted({sess.get_providers()[0] for sess in sessions.values()})
    tin = [x for x, _ in inputs[: max(1, timing_images)]]
    load_before = _loadavg()
    times = time_interleaved(sessions, tin, rounds=rounds, progress=progress)
    load_after = _loadavg()
    ref_t = np.asarray(times[rows[0]["name"]]["wall"])
    ref_c = np.asarray(times[rows[0]["name"]]["cpu"])
    for row in rows:
        t = np.asarray(times[row["name"]]["wall"])
        c = np.asarray(times[row["name"]]["cpu"])
        row["time_ms"] = {"median": float(np.median(t)), "p10": float(np.percentile(t, 10)),
                          "p90": float(np.percentile(t, 90)), "cpu_median": float(np.median(c)),
                          "runs": len(t)}  # fmt: skip
        row["speedup"] = float(np.median(ref_t) / np.median(t))
        row["speedup_paired"] = float(np.median(ref_t / t))  # per round, same input
        row["speedup_cpu"] = float(np.median(ref_c) / np.median(c))
    if profile:
        for row, p in zip(rows, paths, strict=True):
            row["profile"] = profile_ops(p, tin, threads, device=device)
    shapes = sorted({(x.shape[2], x.shape[1]) for x in tin})
    settings = {
        "cpu": _cpu_name(), "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "onnxruntime": ort.__version__, "threads": threads, "input_budget": f"{size[0]}x{size[1]}",
        "device": device, "providers": active,
        "timing_input_shapes": [f"{w}x{h}" for w, h in shapes], "rounds": rounds, "spinning": "off",
        "annotations": str(annotations), "images": len(frames), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_1min_before_after_timing": [load_before, load_after],
    }  # fmt: skip
    return {"settings": settings, "models": rows}


def _short(value: str) -> str:
    """A metadata value for the table: long JSON lists become their length (the JSON report has them whole)."""
    if value.startswith("[") and len(value) > 80:
        try:
            return f"{len(json.loads(value))} entries"
        except ValueError:
            pass
    return value if len(value) <= 100 else value[:97] + "..."


def to_markdown(rep: dict) -> str:
    """The report as a Markdown table with its settings."""
    s = rep["settings"]
    lines = [
        "# Variant report",
        "",
        f"{s['cpu']}, {s['threads']} threads ({s['cores_available']} cores available), onnxruntime {s['onnxruntime']}, "
        f"{', '.join(s.get('providers', ['CPUExecutionProvider']))}; input budget {s['input_budget']}; {s['images']} annotated images; "
        f"timing: {s['rounds']} interleaved rounds on {', '.join(s['timing_input_shapes'])} inputs, thread spinning off, "
        f"1-min load average {s['loadavg_1min_before_after_timing'][0]} before / {s['loadavg_1min_before_after_timing'][1]} after; "
        f"{s['date']}.",
        "",
        "| model | variant | size MB | AP | ΔAP | AP50 | heatmaps max / mean err | PAFs max / mean err "
        "| keypoints within 2 px | median ms | speed-up | CPU ms | speed-up (CPU time) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rep["models"]:
        e, k, t = r["errors"], r["keypoints"], r["time_ms"]
        lines.append(
            f"| {r['name']} | {r['variant']} | {r['size_bytes'] / 1e6:.2f} | {r['AP']:.3f} | {r['AP_delta']:+.3f} "
            f"| {r['AP50']:.3f} | {e['heatmaps_max']:.3f} / {e['heatmaps_mean']:.4f} "
            f"| {e['pafs_max']:.3f} / {e['pafs_mean']:.4f} | {100 * k['share']:.1f} % "
            f"| {t['median']:.1f} | {r['speedup']:.2f}x | {t['cpu_median']:.1f} | {r['speedup_cpu']:.2f}x |"
        )
    lines.append("")
    lines.append("Keypoints within 2 px: share of the fp32 model's keypoints that the variant reproduces "
                 "within 2 px after matching people; speed-up: fp32's median wall time / the variant's; "
                 "CPU ms: process CPU time per run (all threads), which other programs' load barely changes.")  # fmt: skip
    for r in rep["models"]:
        if r.get("metadata"):
            lines.append("")
            lines.append(
                f"**{r['name']}**: " + "; ".join(f"{k} = {_short(v)}" for k, v in sorted(r["metadata"].items()))
            )
    if any("profile" in r for r in rep["models"]):
        lines += ["", "## Time per operator type (ORT profiler)", ""]
        for r in rep["models"]:
            top = list(r.get("profile", {}).items())[:8]
            if top:
                lines.append(f"- {r['name']}: " + ", ".join(
                    f"{op} {v['ms_per_run']:.1f} ms ({100 * v['share']:.0f} %)" for op, v in top))  # fmt: skip
    return "\n".join(lines) + "\n"
