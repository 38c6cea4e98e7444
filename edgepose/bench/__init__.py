"""The measuring core a device needs: ``edgepose bench`` from a pip-installed edgepose.

Every configuration (execution provider x model variant x threads x input size) runs in its own
worker process (``python -m edgepose.bench.worker``), so each has its own peak RSS and no runtime's
thread pool disturbs another's; the parent drives the workers in lock step, one frame each in turn
(:mod:`edgepose.bench.lockstep`), so that a noisy machine slows every configuration alike instead of
whichever happened to run during the noise.

Needs only the ``cpu`` (or ``gpu`` / ``openvino``) extra. Optional: matplotlib (``bench`` extra) for
the PNG plots, pycocotools (``eval`` extra) for ``--accuracy``, psutil for the physical core count.

The peers' baselines (TensorFlow, OpenCV dnn, the learnopencv recipe), the decoder comparison and
the session-option study need the repository's ``benchmarks/`` folder; the suite runs them when
that folder is importable (:data:`edgepose.bench.suite.PLUGIN`) and says it skipped them otherwise.

Modules:
    machine   what the numbers were measured on (CPU, cores, versions, providers, checkout)
    stats     percentiles and summaries
    engines   what a worker runs: edgepose's whole pipeline on real frames (read, pre-process,
              inference, decode) and its accuracy
    worker    the worker process: one engine, driven over a pipe
    lockstep  the parent side: start workers, interleave them, collect samples
    suite     the matrix: providers x variants x threads x sizes (+ the optional plug-in)
    schema    the results JSON's schema (checked before writing)
    report    markdown tables and matplotlib plots
    variants  ``edgepose report-variants``: a model's fp16/int8 variants against fp32 (accuracy,
              agreement, size, interleaved CPU time), measured in this process

Every measured report lives here; ``edgepose.commands`` holds only the command lines that call it.
"""
