"""edgepose's studies and the peers' baselines: what needs a checkout or heavy dependencies.

The measuring core (``edgepose bench``: workers in lock step, machine info, stats, schema, report)
is the package :mod:`edgepose.bench`, which works from a pip-installed wheel. Run from a checkout,
it finds :mod:`benchmarks.baselines` and adds the baselines, the decoder comparison and the
session-option study to the same run.

Modules:
    baselines         the suite's plug-in: baseline configurations, decoder comparison, session study
    engines           what those workers run: TensorFlow, OpenCV dnn, baseline pipelines, the
                      decoder comparison, ONNX Runtime session-option recipes
    learnopencv       learnopencv's multi-person OpenPose post-processing, re-implemented (a baseline)
    session_study     which ONNX Runtime session options make the CPU provider fast, and by how much
    decoder_accuracy  the decoder's AP, time per frame and memory against the image size
    stream_bench      streaming throughput against the model alone, and memory over a long loop
"""
