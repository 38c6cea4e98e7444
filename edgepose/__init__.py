"""edgepose: multi-person 2D pose estimation with Part Affinity Fields on ONNX Runtime.

Example:
    >>> import cv2
    >>> from edgepose import PoseEstimator
    >>> est = PoseEstimator("models/mobilenet_thin.onnx")  # doctest: +SKIP
    >>> for person in est.predict(cv2.imread("people.jpg")).people:  # doctest: +SKIP
    ...     print(person.score, person.keypoints.shape)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["PoseEstimator", "FrameResult", "Person", "DecoderConfig", "get_layout", "__version__"]


def __getattr__(name: str):
    # Lazy: `import edgepose` (layouts, results) works without onnxruntime; the estimator needs it.
    if name == "PoseEstimator":
        from edgepose.runner import PoseEstimator

        return PoseEstimator
    if name in ("FrameResult", "Person"):
        from edgepose import results

        return getattr(results, name)
    if name == "DecoderConfig":
        from edgepose.decode import DecoderConfig

        return DecoderConfig
    if name == "get_layout":
        from edgepose.layouts import get_layout

        return get_layout
    raise AttributeError(f"module 'edgepose' has no attribute {name!r}")
