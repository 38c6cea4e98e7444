"""edgepose's benchmark suite (``make bench`` / ``edgepose bench``).

Every configuration runs in its own worker process (:mod:`benchmarks.worker`), so each has its own
peak RSS and no runtime's thread pool disturbs another's; the parent drives the workers in lock
step, one frame each in turn (:mod:`benchmarks.lockstep`), so that a noisy machine slows every
configuration alike instead of whichever happened to run during the noise.

Modules:
    machine        what the numbers were measured on (CPU, cores, versions, providers)
    stats          percentiles and summaries
    engines        what a worker runs: raw runtimes (ORT, TensorFlow, OpenCV dnn) and whole pipelines
    learnopencv    learnopencv's multi-person OpenPose post-processing, re-implemented (a baseline)
    worker         the worker process: one engine, driven over a pipe
    lockstep       the parent side: start workers, interleave them, collect samples
    session_study  which ONNX Runtime session options make the CPU provider fast, and by how much
    suite          the matrix: providers x variants x threads x sizes, baselines, accuracy
    report         markdown tables and matplotlib plots
    schema         the results JSON's schema (checked by tests and before writing)
"""
