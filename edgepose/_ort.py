"""The one place onnxruntime is imported, with a clear error when no build is installed."""

try:
    import onnxruntime
except ImportError as e:  # pragma: no cover - exercised only without onnxruntime
    raise ImportError(
        "edgepose needs an onnxruntime build and none is installed: "
        "pip install 'edgepose[cpu]' (or 'edgepose[gpu]' for CUDA/TensorRT, 'edgepose[openvino]'); "
        "install only one of them"
    ) from e

ort = onnxruntime
__all__ = ["ort"]
