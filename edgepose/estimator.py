"""What the stream and ``edgepose run`` need from an estimator: the :class:`Estimator` protocol.

The local ONNX Runtime :class:`edgepose.runner.PoseEstimator` is one implementation; a remote
one (a Triton client) is another, plugged into the same :class:`edgepose.stream.Stream` and sinks.
The protocol lists exactly the members the stream and ``edgepose run`` use today; it is a type
(structural: nothing has to inherit from it), not a base class.

Per frame the stream calls ``preprocess`` (or ``letterbox`` first, to shrink a large frame
itself), then ``infer`` on a batch of one, then ``decode_maps``; ``layout`` goes into every
result and into tracking. The stream looks ``letterbox``, ``threads``, ``providers`` and the
``workspace`` keyword up defensively: an object without them still streams, only without
prescaling, the CPU thread policy or decoding in the inference workers (the tests' fakes rely on
this). One optional member is not in the protocol: an estimator whose other side decodes (the
Triton client) has ``infer_people(x, box) -> (people, warnings)``, x one network input
(3, ph, pw); the stream then calls it instead of ``infer`` + ``decode_maps``.

Example:
    >>> def count_people(est: Estimator, image: np.ndarray) -> int:  # doctest: +SKIP
    ...     x, box = est.preprocess(image)
    ...     hm, paf = est.infer(x[None])
    ...     return len(est.decode_maps(hm[0], paf[0], box)[0])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from edgepose.decode import Workspace
    from edgepose.geometry import Letterbox
    from edgepose.layouts import Layout
    from edgepose.results import Person

__all__ = ["Estimator"]


@runtime_checkable
class Estimator(Protocol):
    """Frames in, maps out, people out, with the pre-processing's geometry in between.

    Attributes:
        layout: the model's keypoint layout (names, limbs, PAF channels); every
            :class:`~edgepose.results.FrameResult` and the tracker carry it.
        threads: CPU intra-op threads of one inference (the stream's thread policy: with
            ``threads x workers`` >= the cores, OpenCV and FFmpeg get one thread each).
        providers: ONNX Runtime execution providers in use, the one that runs first
            (``CPUExecutionProvider`` as the first turns the thread policy on); ``edgepose run`` prints them.
        model_path: the model; ``edgepose run`` prints its ``name``.
        budget: the pixel budget ``(w, h)`` frames are fitted into; ``edgepose run`` prints it.
    """

    layout: Layout
    threads: int
    providers: list[str]
    model_path: Path
    budget: tuple[int, int]

    def letterbox(self, w: int, h: int) -> Letterbox:
        """Where a ``w x h`` frame goes in the network input: resized size and stride-padded size.

        The stream uses it to halve a large frame before :meth:`preprocess`, which must then place
        the smaller frame at the same ``resized`` / ``padded`` sizes.
        """
        ...

    def preprocess(self, image: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
        """BGR uint8 (H, W, 3) -> network input (3, ph, pw) float32 and its :class:`~edgepose.runner.Letterbox`
        (``src`` = (W, H), the original frame's size, whatever was passed in).

        ``out``: a (3, ph, pw) float32 buffer to fill and return (a new one when None or the wrong shape);
        each inference worker passes its own.
        """
        ...

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, ph, pw) float32 -> ``heatmaps`` (N, parts+1, ph/s, pw/s) and ``pafs`` (N, 2*limbs, ph/s, pw/s),
        float32, s the model's stride. Called from several worker threads at once."""
        ...

    def decode_maps(
        self, hm: np.ndarray, paf: np.ndarray, box: Letterbox, *, workspace: Workspace | None = None
    ) -> tuple[list[Person], list[str]]:
        """One frame's maps, ``hm`` (parts+1, h, w) and ``paf`` (2*limbs, h, w) -> people with keypoints
        in original-image pixels, and warnings.

        ``workspace``: the decoder's scratch buffers; threads decoding at once pass one each (the stream
        decodes in its inference workers only when this keyword exists, else in its ordered stage).
        """
        ...
