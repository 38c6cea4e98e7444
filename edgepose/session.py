"""ONNX Runtime session options used by every edgepose session, in one place.

Example:
    >>> so = session_options(threads=2)
    >>> so.intra_op_num_threads
    2
"""

from __future__ import annotations

from edgepose._ort import ort

__all__ = ["session_options"]


def session_options(threads: int, log_severity: int = 3) -> ort.SessionOptions:
    """The session options edgepose runs with (see the README's benchmark notes for why).

    Args:
        threads: intra-op threads for the CPU provider.
        log_severity: ORT log level (3 = errors only).
    """
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = log_severity
    return so
