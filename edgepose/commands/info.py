"""``edgepose info MODEL``: metadata, inputs/outputs and the providers this machine has."""

from __future__ import annotations

import argparse
import json


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default="models/mobilenet_thin.onnx", help="ONNX model (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgepose._ort import ort
    from edgepose.meta import ModelMeta

    path = Path(args.model)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}; build the default one with `make model`")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        from edgepose.imageio import one_line

        raise ValueError(f"{path}: not an ONNX model ONNX Runtime can load ({one_line(e)[:300]})") from None
    props = dict(sess.get_modelmeta().custom_metadata_map)
    meta = ModelMeta.from_props(props, str(path))
    info = {
        "model": str(path),
        "size_bytes": path.stat().st_size,
        "layout": meta.layout.id,
        "parts": meta.layout.num_parts,
        "limbs": meta.layout.num_limbs,
        "stride": meta.stride,
        "input": {"channel_order": meta.channel_order, "scale": meta.scale, "mean": meta.mean,
                  "preferred_size": f"{meta.input_size[0]}x{meta.input_size[1]}"},  # fmt: skip
        "variant": meta.variant,
        "inputs": [{"name": i.name, "shape": i.shape, "type": i.type} for i in sess.get_inputs()],
        "outputs": [{"name": o.name, "shape": o.shape, "type": o.type} for o in sess.get_outputs()],
        "metadata": props,
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model       {path} ({info['size_bytes'] / 1e6:.2f} MB), variant {meta.variant}")
    print(f"layout      {meta.layout.id}: {meta.layout.num_parts} parts, {meta.layout.num_limbs} limbs, stride {meta.stride}")
    print(f"input       {meta.channel_order}, (pixel - {meta.mean:g}) * {meta.scale:g}, preferred {info['input']['preferred_size']}")
    for i in info["inputs"]:
        print(f"  in  {i['name']:<10} {i['shape']} {i['type']}")
    for o in info["outputs"]:
        print(f"  out {o['name']:<10} {o['shape']} {o['type']}")
    print("metadata:")
    for k, v in props.items():
        print(f"  {k:<22} {v if len(v) <= 100 else v[:97] + '...'}")
    print(f"onnxruntime {ort.__version__}; providers here: {', '.join(info['available_providers'])}")
    return 0
