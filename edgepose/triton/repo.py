"""``edgepose triton export``: an edgepose model -> a Triton model repository.

Models written (``P`` is the prefix, ``edgepose`` by default):

=====================  ============  =====================================================================
model                  backend       what it does
=====================  ============  =====================================================================
``P_net``              onnxruntime   the network with its input normalisation folded in: ``frame`` UINT8
                                     (N, H, W, 3) BGR -> ``heatmaps``, ``pafs``; dynamic H/W and batch,
                                     optional TensorRT (fp16, engine cache)
``P_decode``           python        maps + ``letterbox`` -> ``keypoints``, ``scores`` (``edgepose.decode``)
``P_imdecode``         python        ``image_bytes`` (JPEG/PNG) -> ``frame``, ``letterbox``, ``image_size``
``P``                  ensemble      raw wire format: ``frame`` + ``letterbox`` -> people
``P_bytes``            ensemble      bytes wire format: ``image_bytes`` -> people
``P_pipeline``         python        both wire formats in one self-contained model (ONNX Runtime inside)
=====================  ============  =====================================================================

Every ``config.pbtxt`` is built from data, parsed with Triton's own schema (``model_config_pb2``
from ``tritonclient``) and checked for consistency (ensemble steps against the configs they name)
before anything is written. The model's metadata is in its ONNX file and in each config's
``parameters`` (``edgepose_meta``); the repository holds no path of the exporting machine.

Example:
    >>> export_repository("models/mobilenet_thin.onnx", "triton_repo")  # doctest: +SKIP
    ['edgepose', 'edgepose_bytes', 'edgepose_decode', 'edgepose_imdecode', 'edgepose_net', 'edgepose_pipeline']
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgepose.meta import HEATMAPS, INPUT, PAFS, MetadataError, ModelMeta
from edgepose.triton.wire import FRAME, IMAGE_BYTES, IMAGE_SIZE, KEYPOINTS, LETTERBOX, MAX_PIXELS, SCORES

log = logging.getLogger(__name__)

__all__ = ["ExportOptions", "ExportError", "export_repository", "model_names", "parse_config", "render_config",
           "META_KEY"]  # fmt: skip

#: the config ``parameters`` key holding the model's edgepose metadata (JSON of its metadata_props)
META_KEY = "edgepose_meta"
#: the file that marks a folder as a repository `edgepose triton export` wrote (what ``--force`` may replace)
MARKER = ".edgepose-repository"


class ExportError(ValueError):
    """The repository cannot be written; the message says why."""


@dataclass
class ExportOptions:
    """How the repository's models are served.

    Attributes:
        prefix: model-name prefix.
        max_batch_size: largest batch a model instance takes.
        queue_delay_us: dynamic batching's maximum queue delay (microseconds). 0 (Triton's own
            default): no waiting for a batch to fill; the requests that queued while an instance was
            busy still go through together. A delay only pays when a model is faster than the gaps
            between requests (a GPU with many cameras); on this project's CPU server a lone request
            waited the whole delay (1.1 ms of the server hop with 1000 us).
        instances: model instances (of the network and of the pipeline).
        kind: ``cpu`` or ``gpu`` instances for the network (the Python models run on the CPU).
        gpus: GPU ids for ``gpu`` instances (default: all).
        tensorrt: add ONNX Runtime's TensorRT accelerator to the network (GPU only).
        trt_fp16: TensorRT in fp16.
        trt_cache: TensorRT engine-cache folder on the server (a server path, not this machine's); empty
            (the default): no engine cache. Name a folder only the server's user can write: an engine
            planted in a shared folder such as /tmp would run as the network.
        threads: ONNX Runtime intra-op threads of each pipeline instance (0: the server's cores
            divided by the instances).
        size: pixel budget ``(w, h)`` the bytes wire format letterboxes to (default: the model's preferred size).
        python_env: ``EXECUTION_ENV_PATH`` for the Python models (a packed environment on the server);
            None: the stub's own Python (the first ``python3`` on the server's PATH).
        max_pixels: the Python models refuse a picture sent as bytes whose header says more pixels
            (before decoding it).
    """

    prefix: str = "edgepose"
    max_batch_size: int = 8
    queue_delay_us: int = 0
    instances: int = 1
    kind: str = "cpu"
    gpus: list[int] = field(default_factory=list)
    tensorrt: bool = False
    trt_fp16: bool = True
    trt_cache: str = ""
    threads: int = 0
    size: tuple[int, int] | None = None
    python_env: str | None = None
    max_pixels: int = MAX_PIXELS

    def check(self) -> None:
        if not self.prefix.replace("_", "").replace("-", "").isalnum():
            raise ExportError(f"prefix must be letters, digits, '_' or '-', not {self.prefix!r}")
        if self.max_batch_size < 1 or self.instances < 1 or self.queue_delay_us < 0 or self.threads < 0:
            raise ExportError("max batch size and instances must be at least 1, queue delay and threads at least 0")
        if self.max_pixels < 1:
            raise ExportError(f"max pixels must be at least 1, not {self.max_pixels}")
        if self.kind not in ("cpu", "gpu"):
            raise ExportError(f"instance kind must be cpu or gpu, not {self.kind!r}")
        if self.tensorrt and self.kind != "gpu":
            raise ExportError("the TensorRT accelerator needs GPU instances (--kind gpu)")


def model_names(prefix: str = "edgepose") -> dict[str, str]:
    """Role -> model name."""
    return {
        "ensemble": prefix, "ensemble_bytes": f"{prefix}_bytes", "pipeline": f"{prefix}_pipeline",
        "net": f"{prefix}_net", "decode": f"{prefix}_decode", "imdecode": f"{prefix}_imdecode",
    }  # fmt: skip


# -- reading the model --------------------------------------------------------------------------
def _load(model: Path):
    try:
        import onnx
    except ImportError as e:
        raise ImportError("exporting a Triton repository needs onnx: pip install 'edgepose[triton]'") from e
    if not model.is_file():
        raise FileNotFoundError(f"no model at {model}")
    try:
        m = onnx.load(str(model))
    except Exception as e:  # onnx raises DecodeError and friends
        raise ExportError(f"{model}: not an ONNX model ({e})") from e
    props = {p.key: p.value for p in m.metadata_props}
    try:
        meta = ModelMeta.from_props(props, str(model))
    except MetadataError as e:
        raise ExportError(str(e)) from e
    names = [i.name for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    outs = [o.name for o in m.graph.output]
    if names != [INPUT] or HEATMAPS not in outs or PAFS not in outs:
        raise ExportError(f"{model}: expected input {INPUT!r} and outputs {HEATMAPS!r}, {PAFS!r}; got {names} -> {outs}")
    return m, props, meta


def fold_preprocessing(m, meta: ModelMeta):
    """The network with its input normalisation in the graph: ``frame`` UINT8 (N, H, W, 3) BGR in.

    ``Cast`` -> (``Gather`` BGR->RGB) -> ``Transpose`` to NCHW -> (``Sub`` mean) -> (``Mul`` scale),
    feeding what was the ``image`` input: the same float32 operations as the local pre-processing.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto.FromString(m.SerializeToString())
    g = m.graph
    old = next(i for i in g.input if i.name == INPUT)
    elem = old.type.tensor_type.elem_type
    pre, nodes, inits = "edgepose_pre_", [], []
    cur = pre + "cast"
    nodes.append(helper.make_node("Cast", [FRAME], [cur], to=TensorProto.FLOAT))
    if meta.channel_order == "RGB":
        inits.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), pre + "rgb_idx"))
        nodes.append(helper.make_node("Gather", [cur, pre + "rgb_idx"], [pre + "rgb"], axis=3))
        cur = pre + "rgb"
    nodes.append(helper.make_node("Transpose", [cur], [pre + "nchw"], perm=[0, 3, 1, 2]))
    cur = pre + "nchw"
    if meta.mean:
        inits.append(numpy_helper.from_array(np.array(meta.mean, np.float32), pre + "mean"))
        nodes.append(helper.make_node("Sub", [cur, pre + "mean"], [pre + "centred"]))
        cur = pre + "centred"
    if meta.scale != 1.0:
        inits.append(numpy_helper.from_array(np.array(meta.scale, np.float32), pre + "scale"))
        nodes.append(helper.make_node("Mul", [cur, pre + "scale"], [pre + "scaled"]))
        cur = pre + "scaled"
    if elem != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [cur], [pre + "typed"], to=elem))
        cur = pre + "typed"
    nodes[-1].output[0] = INPUT  # the last step writes the old input's name
    new_in = helper.make_tensor_value_info(FRAME, TensorProto.UINT8, ["batch", "height", "width", 3])
    g.input.remove(old)
    g.input.insert(0, new_in)
    g.initializer.extend(inits)
    for n in reversed(nodes):
        g.node.insert(0, n)
    onnx.checker.check_model(m)
    return m


# -- configs --------------------------------------------------------------------------------------
def _tensor(name: str, dtype: str, dims: list[int], optional: bool = False) -> dict:
    t = {"name": name, "data_type": f"TYPE_{dtype}", "dims": dims}
    if optional:
        t["optional"] = True
    return t


def _params(meta_props: dict[str, str], **more: str) -> dict:
    p = {META_KEY: {"string_value": json.dumps(meta_props, sort_keys=True)}}
    p.update({k: {"string_value": str(v)} for k, v in more.items()})
    return p


def _configs(meta: ModelMeta, props: dict[str, str], opt: ExportOptions) -> dict[str, dict]:
    """Every model's config as a dict in the layout of Triton's ``ModelConfig`` message."""
    n = model_names(opt.prefix)
    lay = meta.layout
    hm_c, paf_c, k = lay.heatmap_channel_count, lay.paf_channel_count, lay.num_parts
    budget = opt.size or meta.input_size
    batching = {"dynamic_batching": {"max_queue_delay_microseconds": int(opt.queue_delay_us)}}
    py_params = {"EXECUTION_ENV_PATH": opt.python_env} if opt.python_env else {}
    py_params["max_pixels"] = str(int(opt.max_pixels))
    people = [_tensor(KEYPOINTS, "FP32", [-1, k, 3]), _tensor(SCORES, "FP32", [-1])]
    frame_in = [_tensor(FRAME, "UINT8", [-1, -1, 3]), _tensor(LETTERBOX, "INT32", [4])]
    maps = [_tensor(HEATMAPS, "FP32", [hm_c, -1, -1]), _tensor(PAFS, "FP32", [paf_c, -1, -1])]
    mb = int(opt.max_batch_size)
    net_group = {"kind": "KIND_GPU" if opt.kind == "gpu" else "KIND_CPU", "count": int(opt.instances)}
    if opt.kind == "gpu" and opt.gpus:
        net_group["gpus"] = list(opt.gpus)
    net = {
        "name": n["net"], "backend": "onnxruntime", "max_batch_size": mb,
        "input": [_tensor(FRAME, "UINT8", [-1, -1, 3])], "output": maps,
        **batching, "instance_group": [net_group], "parameters": _params(props),
    }  # fmt: skip
    if opt.tensorrt:
        trt = {"precision_mode": "FP16" if opt.trt_fp16 else "FP32"}
        if opt.trt_cache:
            trt.update(trt_engine_cache_enable="1", trt_engine_cache_path=opt.trt_cache)
        net["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
            {"name": "tensorrt", "parameters": trt}]}}  # fmt: skip
    cpu = {"kind": "KIND_CPU", "count": int(opt.instances)}
    decode = {
        "name": n["decode"], "backend": "python", "max_batch_size": mb,
        "input": maps + [_tensor(LETTERBOX, "INT32", [4])], "output": people,
        **batching, "instance_group": [{"kind": "KIND_CPU", "count": 1}], "parameters": _params(props, **py_params),
    }  # fmt: skip
    imdecode = {
        "name": n["imdecode"], "backend": "python", "max_batch_size": mb,
        "input": [_tensor(IMAGE_BYTES, "STRING", [1])],
        "output": [_tensor(FRAME, "UINT8", [-1, -1, 3]), _tensor(LETTERBOX, "INT32", [4]), _tensor(IMAGE_SIZE, "INT32", [2])],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "parameters": _params(props, input_size=f"{budget[0]}x{budget[1]}", **py_params),
    }  # fmt: skip
    pipeline = {
        "name": n["pipeline"], "backend": "python", "max_batch_size": mb,
        "input": [_tensor(FRAME, "UINT8", [-1, -1, 3], True), _tensor(LETTERBOX, "INT32", [4], True),
                  _tensor(IMAGE_BYTES, "STRING", [1], True)],
        "output": people + [_tensor(IMAGE_SIZE, "INT32", [2])],
        **batching, "instance_group": [cpu],
        "parameters": _params(props, input_size=f"{budget[0]}x{budget[1]}", threads=str(opt.threads), **py_params),
    }  # fmt: skip

    def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict:
        return {"model_name": model, "model_version": -1, "input_map": inputs, "output_map": outputs}

    to_people = step(n["decode"], {HEATMAPS: "_hm", PAFS: "_paf", LETTERBOX: "_box"}, {KEYPOINTS: KEYPOINTS, SCORES: SCORES})
    ensemble = {
        "name": n["ensemble"], "platform": "ensemble", "max_batch_size": mb, "input": frame_in, "output": people,
        "ensemble_scheduling": {"step": [
            step(n["net"], {FRAME: FRAME}, {HEATMAPS: "_hm", PAFS: "_paf"}),
            {**to_people, "input_map": {**to_people["input_map"], LETTERBOX: LETTERBOX}},
        ]},
        "parameters": _params(props),
    }  # fmt: skip
    ensemble_bytes = {
        "name": n["ensemble_bytes"], "platform": "ensemble", "max_batch_size": mb,
        "input": [_tensor(IMAGE_BYTES, "STRING", [1])], "output": people + [_tensor(IMAGE_SIZE, "INT32", [2])],
        "ensemble_scheduling": {"step": [
            step(n["imdecode"], {IMAGE_BYTES: IMAGE_BYTES}, {FRAME: "_frame", LETTERBOX: "_box", IMAGE_SIZE: IMAGE_SIZE}),
            step(n["net"], {FRAME: "_frame"}, {HEATMAPS: "_hm", PAFS: "_paf"}),
            to_people,
        ]},
        "parameters": _params(props, input_size=f"{budget[0]}x{budget[1]}"),
    }  # fmt: skip
    return {c["name"]: c for c in (net, decode, imdecode, ensemble, ensemble_bytes, pipeline)}


def _schema():
    try:
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise ImportError("validating Triton configs needs tritonclient: pip install 'edgepose[triton]'") from e
    return model_config_pb2, json_format, text_format


def render_config(cfg: dict) -> str:
    """A config dict -> ``config.pbtxt`` text, through Triton's ``ModelConfig`` message (unknown
    fields or wrong types raise :class:`ExportError`)."""
    pb2, json_format, text_format = _schema()
    try:
        msg = json_format.ParseDict(cfg, pb2.ModelConfig())
    except json_format.ParseError as e:
        raise ExportError(f"config of {cfg.get('name')!r} does not fit Triton's schema: {e}") from e
    text = text_format.MessageToString(msg)
    parse_config(text)  # what we write must parse back
    return text


def parse_config(text: str):
    """``config.pbtxt`` text -> ``ModelConfig`` message (raises :class:`ExportError` when it does not parse)."""
    pb2, _, text_format = _schema()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as e:
        raise ExportError(f"config.pbtxt does not parse with Triton's schema: {e}") from e


def _check_ensembles(configs: dict[str, dict]) -> None:
    """Each ensemble step names a model of the repository and only tensors that model has."""
    for cfg in configs.values():
        if cfg.get("platform") != "ensemble":
            continue
        have = {t["name"] for t in cfg["input"]}
        for st in cfg["ensemble_scheduling"]["step"]:
            sub = configs.get(st["model_name"])
            if sub is None:
                raise ExportError(f"ensemble {cfg['name']} names a missing model {st['model_name']!r}")
            ins, outs = {t["name"] for t in sub["input"]}, {t["name"] for t in sub["output"]}
            if set(st["input_map"]) - ins or set(st["output_map"]) - outs:
                raise ExportError(f"ensemble {cfg['name']}: step {sub['name']} maps tensors it does not have")
            missing = set(st["input_map"].values()) - have
            if missing:
                raise ExportError(f"ensemble {cfg['name']}: step {sub['name']} reads {sorted(missing)} before they exist")
            have |= set(st["output_map"].values())
        if {t["name"] for t in cfg["output"]} - have:
            raise ExportError(f"ensemble {cfg['name']}: outputs are not produced by any step")


_MODEL_PY = '''"""edgepose {role} model for Triton's Python backend, written by `edgepose triton export`.

The server's Python environment needs edgepose, onnxruntime, numpy and opencv-python(-headless)
(see docs/triton.md, "Python environment").
"""

from edgepose.triton.backend import {cls} as TritonPythonModel  # noqa: F401
'''


def _not_a_repository(repo: Path) -> str | None:
    """Why ``repo`` is not a repository edgepose wrote (None when it is, or is empty).

    One is: a folder holding :data:`MARKER`, or (written before the marker) one whose every entry is a
    model folder with a ``config.pbtxt`` carrying edgepose's metadata parameter.
    """
    if (repo / MARKER).is_file() and not (repo / MARKER).is_symlink():
        return None
    for entry in sorted(repo.iterdir()):
        cfg = entry / "config.pbtxt"
        if entry.is_symlink() or not entry.is_dir() or not cfg.is_file():
            return f"holds {entry.name!r}, which is not an edgepose model folder"
        try:
            if META_KEY not in parse_config(cfg.read_text(errors="replace")).parameters:
                return f"holds {entry.name!r}, whose config.pbtxt edgepose did not write"
        except (ExportError, OSError):
            return f"holds {entry.name!r}, whose config.pbtxt is not Triton's"
    return None


def export_repository(model: str | Path, repo: str | Path, options: ExportOptions | None = None, *,
                      force: bool = False) -> list[str]:  # fmt: skip
    """Write the Triton model repository for ``model`` into ``repo``.

    Args:
        model: an edgepose ONNX model (any variant and layout).
        repo: the repository folder; it must not exist unless ``force``.
        options: serving options (:class:`ExportOptions`).
        force: replace an existing folder (only once the new repository is complete) that is a
            repository edgepose wrote (it holds :data:`MARKER`, or only model folders whose configs
            carry edgepose's metadata); any other folder is refused and nothing is deleted.

    Returns:
        the model names written.

    Raises:
        ExportError: the folder exists, the model has no edgepose metadata, or a config is invalid.
    """
    opt = options or ExportOptions()
    opt.check()
    model, repo = Path(model), Path(repo)
    if repo.exists() and not force:
        raise ExportError(f"{repo} already exists; pass --force to replace it")
    if repo.is_symlink() or (repo.exists() and not repo.is_dir()):
        raise ExportError(f"{repo} exists and is not a folder; nothing was replaced")
    if repo.exists():
        why = _not_a_repository(repo)
        if why:
            raise ExportError(f"--force replaces only a repository edgepose wrote; {repo} {why}: nothing was deleted")
    m, props, meta = _load(model)
    props = {k: v for k, v in props.items()}
    props.setdefault("source_file", model.name)  # a name, not the exporting machine's path
    configs = _configs(meta, props, opt)
    texts = {name: render_config(cfg) for name, cfg in configs.items()}
    _check_ensembles(configs)
    folded = fold_preprocessing(m, meta).SerializeToString()
    original = model.read_bytes()
    n = model_names(opt.prefix)
    files: dict[str, dict[str, bytes | str]] = {name: {"config.pbtxt": texts[name]} for name in configs}
    files[n["net"]]["1/model.onnx"] = folded
    files[n["pipeline"]]["1/model.onnx"] = original
    for role, cls in (("decode", "DecodeModel"), ("imdecode", "ImageDecodeModel"), ("pipeline", "PipelineModel")):
        files[n[role]]["1/model.py"] = _MODEL_PY.format(role=role, cls=cls)
    for role in ("ensemble", "ensemble_bytes"):
        files[n[role]]["1/.keep"] = ""  # an ensemble needs an (empty) version folder
    marker = "written by `edgepose triton export`; `--force` replaces only a folder holding this file\n"
    repo.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", dir=repo.parent))
    try:
        for name, entries in files.items():
            for rel, data in entries.items():
                p = tmp / name / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
        (tmp / MARKER).write_text(marker)
        tmp.chmod(0o755)
        if repo.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{repo.name}.old.", dir=repo.parent))  # a fresh name: no one else's
            repo.rename(old / "repository")
            tmp.rename(repo)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(repo)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d models to %s", len(files), repo)
    return sorted(files)
