"""Multi-scale and flip inference: OpenPose's accuracy modes on any edgepose model.

The network runs on the same frame at several scales of the pixel budget (and, with ``flip``, on
the mirrored frame at each scale; a frame and its mirror have the same shape and run as one batch
of two). Every run's maps are brought onto the map grid of the largest scale
(:class:`edgepose.decode.merge.MapAverager`: the network's resolution, never the image's),
averaged, and decoded once. Mirroring back uses the layout's left/right pairs, so COCO-18, MPI-15
and BODY_25 models work alike.

Example:
    >>> from edgepose import PoseEstimator
    >>> est = PoseEstimator("models/mobilenet_thin.onnx", size="accurate")  # doctest: +SKIP
    >>> est = PoseEstimator("models/mobilenet_thin.onnx", size="large", scales=(1, 0.75), flip=True)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edgepose.decode.merge import MapAverager, flip_channels
from edgepose.geometry import Letterbox, fit_size
from edgepose.layouts import Layout

__all__ = ["ScalePlan", "parse_scales", "ACCURATE", "MAX_PIXELS", "MultiScaleState", "multi_scale_maps", "scaled_input"]

#: the largest network input one run may have (w * h pixels); beyond this a scale set is refused
#: before anything runs (16 megapixels of float32 input is 192 MB, its maps several GB)
MAX_PIXELS = 4096 * 4096
#: smallest side a scaled budget may have, in pixels (two map cells at stride 8)
MIN_SIDE = 16

#: the ``accurate`` size preset: a pixel budget, scales and flip, chosen by
#: ``benchmarks/multiscale_study.py`` (docs/accuracy.md): on coco-val-mini AP 0.446 at 2.32x the
#: ``large`` preset's time per frame, the most accurate combination measured and on the Pareto front
ACCURATE: dict = {"budget": (656, 560), "scales": (1.2, 0.8, 0.5), "flip": False}


def parse_scales(text: str | Sequence[float] | None) -> tuple[float, ...]:
    """``"1,0.75,0.5"`` or a sequence of numbers -> a tuple of positive scales, largest first, no repeats.

    Raises:
        ValueError: empty, not numbers, or a scale that is not positive.

    Example:
        >>> parse_scales("0.5, 1, 0.75")
        (1.0, 0.75, 0.5)
    """
    if text is None:
        return (1.0,)
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        scales = [float(s) for s in items if str(s).strip()]
    except ValueError:
        raise ValueError(f"scales must be numbers separated by commas, not {text!r}") from None
    if not scales:
        raise ValueError("give at least one scale (e.g. 1,0.75,0.5)")
    bad = [s for s in scales if not (s > 0 and math.isfinite(s))]
    if bad:
        raise ValueError(f"scales must be positive numbers, got {bad}")
    return tuple(sorted(set(scales), reverse=True))


@dataclass(frozen=True)
class ScalePlan:
    """The budgets of a multi-scale run.

    Attributes:
        scales: the scales, largest first.
        flip: also run the mirrored frame at every scale.
        budgets: ``(w, h)`` pixel budget per scale (the estimator's budget times the scale).
    """

    scales: tuple[float, ...]
    flip: bool
    budgets: tuple[tuple[int, int], ...]

    @classmethod
    def make(cls, budget: tuple[int, int], scales: Sequence[float], flip: bool, layout: Layout) -> ScalePlan:
        """Check a scale set against a budget and a layout.

        Raises:
            ValueError: a scale whose budget rounds below 16 pixels a side, a budget over
                :data:`MAX_PIXELS`, or ``flip`` on a layout without left/right pairs.
        """
        scales = parse_scales(scales)
        budgets = []
        for s in scales:
            w, h = round(budget[0] * s), round(budget[1] * s)
            if min(w, h) < MIN_SIDE:
                raise ValueError(f"scale {s:g} of the {budget[0]}x{budget[1]} budget is {w}x{h} pixels: "
                                 f"too small (at least {MIN_SIDE} a side); drop it or raise the budget")  # fmt: skip
            if w * h > MAX_PIXELS:
                raise ValueError(f"scale {s:g} of the {budget[0]}x{budget[1]} budget is {w}x{h} pixels, over the "
                                 f"{MAX_PIXELS // 1_000_000} megapixel limit of one run; use smaller scales")  # fmt: skip
            budgets.append((w, h))
        if flip:
            flip_channels(layout)  # raises for a layout without left/right pairs
        return cls(scales, bool(flip), tuple(budgets))

    @property
    def runs(self) -> int:
        """Network runs per frame."""
        return len(self.scales) * (2 if self.flip else 1)

    @property
    def single(self) -> bool:
        """One run at the budget itself: the ordinary path."""
        return self.scales == (1.0,) and not self.flip


def scaled_input(x: np.ndarray, box: Letterbox, budget: tuple[int, int], stride: int, pad_value: float,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:  # fmt: skip
    """The network input of a smaller scale, made from the largest scale's input ``x``.

    Resizing commutes with the affine input normalisation, so shrinking the already normalised
    picture (area filter, per channel) gives the same input as pre-processing the frame at the
    smaller budget, without touching the full-size frame again.

    Args:
        x: (3, ph, pw) float32 input of the largest scale, placed as ``box`` says.
        box: its letterbox.
        budget: ``(w, h)`` pixel budget of the smaller scale.
        stride: network stride.
        pad_value: the normalised value of padding pixels.
        out: a buffer to reuse when its shape fits.

    Returns:
        ``(input (3, ph', pw'), letterbox)``.
    """
    w, h = box.src
    nw, nh, pw, ph = fit_size(w, h, budget, stride)
    if out is None or out.shape != (3, ph, pw):
        out = np.empty((3, ph, pw), np.float32)
    out.fill(pad_value)
    sw, sh = box.resized
    for c in range(3):
        out[c, :nh, :nw] = cv2.resize(x[c, :sh, :sw], (nw, nh), interpolation=cv2.INTER_AREA)
    return out, Letterbox((w, h), (nw, nh), (pw, ph))


class MultiScaleState:
    """One thread's reusable buffers for :func:`multi_scale_maps` (inputs per scale, accumulators)."""

    def __init__(self) -> None:
        self.inputs: dict[int, np.ndarray] = {}
        self.pair: dict[int, np.ndarray] = {}
        self.acc: tuple[np.ndarray, np.ndarray] | None = None


def multi_scale_maps(infer, layout: Layout, x: np.ndarray, box: Letterbox, plan: ScalePlan, stride: int,
                     pad_value: float, state: MultiScaleState | None = None):  # fmt: skip
    """Run the network at every scale of ``plan`` and average the maps on the largest scale's grid.

    Args:
        infer: ``(N, 3, H, W) float32 -> (heatmaps, pafs)`` (the estimator's ``infer``).
        layout: the model's layout (for flips).
        x: (3, ph, pw) float32 input at the largest scale (``plan.budgets[0]``), placed as ``box`` says.
        box: its :class:`~edgepose.runner.Letterbox`.
        plan: the scales and flip.
        stride: network stride.
        pad_value: normalised padding value (for the smaller scales' inputs).
        state: this thread's buffers, reused across frames (a new one when None).

    Returns:
        ``(heatmaps (P+1, H, W), pafs (2L, H, W))``: the averaged maps on ``box``'s map grid; decode
        them with ``box``.
    """
    state = state or MultiScaleState()
    acc = MapAverager(layout, box.resized, box.src, stride, buffers=state.acc)
    state.acc = (acc.hm, acc.paf)
    for i, budget in enumerate(plan.budgets):
        if i == 0:
            xi, bi = x, box
        else:
            xi, bi = scaled_input(x, box, budget, stride, pad_value, state.inputs.get(i))
            state.inputs[i] = xi
        if plan.flip:
            nw, nh = bi.resized
            pair = state.pair.get(i)
            if pair is None or pair.shape[1:] != xi.shape:
                pair = state.pair[i] = np.empty((2, *xi.shape), np.float32)
            pair[0] = xi
            pair[1] = xi
            pair[1, :, :nh, :nw] = xi[:, :nh, nw - 1 :: -1]
            hm, paf = infer(pair)
            acc.add(hm[0], paf[0], bi.resized)
            acc.add(hm[1], paf[1], bi.resized, flipped=True)
        else:
            hm, paf = infer(xi[None])
            acc.add(hm[0], paf[0], bi.resized)
    return acc.result()
