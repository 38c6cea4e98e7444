"""Export tooling: OpenPose-style networks to self-describing ONNX models.

Workstation side; needs the ``convert`` extra (onnx, onnxsim, tf2onnx, tensorflow-cpu). The
runtime (:mod:`edgepose`) never imports this package.
"""

__version__ = "0.1.0"
