"""Tiny ONNX graphs built with onnx.helper for testing the runtime's checks (not a real network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_model(path: Path, heat: int = 19, paf: int = 38, nan: bool = False, metadata: bool = True,
               layout: str = "coco18") -> Path:  # fmt: skip
    """image (N,3,H,W) -> AveragePool/8 -> two 1x1 convs: ``heatmaps`` (N,heat,..) and ``pafs`` (N,paf,..)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from converters.metadata import set_metadata
    from edgepose.layouts import get_layout
    from edgepose.meta import ModelMeta

    rng = np.random.default_rng(0)
    w_h = numpy_helper.from_array((rng.standard_normal((heat, 3, 1, 1)) * 0.01).astype(np.float32), "w_h")
    w_p = numpy_helper.from_array((rng.standard_normal((paf, 3, 1, 1)) * 0.01).astype(np.float32), "w_p")
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Conv", ["pooled", "w_h"], ["h0"]),
        helper.make_node("Conv", ["pooled", "w_p"], ["pafs"]),
    ]
    inits = [w_h, w_p]
    if nan:
        inits.append(numpy_helper.from_array(np.array([np.nan], np.float32), "nan"))
        nodes.append(helper.make_node("Mul", ["h0", "nan"], ["heatmaps"]))
    else:
        nodes.append(helper.make_node("Identity", ["h0"], ["heatmaps"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["n", heat, "oh", "ow"]),
         helper.make_tensor_value_info("pafs", TensorProto.FLOAT, ["n", paf, "oh", "ow"])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        set_metadata(model, ModelMeta(layout=get_layout(layout)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
