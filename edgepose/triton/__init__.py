"""Triton Inference Server: model-repository export, a client estimator, a development server.

The server tier is Triton's, not ours: :mod:`edgepose.triton.repo` writes a standard model
repository (``edgepose triton export``), :mod:`edgepose.triton.client` is an estimator that sends
frames to one or more servers and plugs into the same stream and sinks as the local one, and
:mod:`edgepose.triton.server` starts a real ``tritonserver`` on loopback for development and tests
(``edgepose triton serve``). docs/triton.md has the whole story, including the production path.

Example:
    >>> from edgepose.triton import RemoteEstimator  # doctest: +SKIP
    >>> est = RemoteEstimator("grpc://127.0.0.1:8001")  # doctest: +SKIP
    >>> est.predict(cv2.imread("people.jpg")).people  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["RemoteEstimator", "ServerError", "TritonServer", "export_repository", "ExportOptions"]


def __getattr__(name: str):
    # Lazy: the client needs tritonclient, the export needs onnx; neither is a core dependency.
    if name == "RemoteEstimator":
        from edgepose.triton.client import RemoteEstimator

        return RemoteEstimator
    if name in ("ServerError", "TritonServer"):
        from edgepose.triton import server

        return getattr(server, name)
    if name in ("export_repository", "ExportOptions"):
        from edgepose.triton import repo

        return getattr(repo, name)
    raise AttributeError(f"module 'edgepose.triton' has no attribute {name!r}")
