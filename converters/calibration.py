"""Calibration sets for int8 quantization: real frames, pre-processed exactly as the runtime does.

A calibration set is built from one or more sources (an image, a folder of images, a video; anything
:func:`edgepose.sources.iter_frames` reads). Frames are picked evenly over all sources, run through
:meth:`edgepose.runner.PoseEstimator.preprocess` (the runtime's own letterboxing, channel order, mean
and scale), and kept as float32 network inputs. When the sources hold fewer frames than asked, the
set is either refused (:class:`CalibrationError`) or topped up with mirrored / zoomed copies of the
real frames (``augment``), never with synthetic data. The float graph's range equalization that
precedes calibration is :mod:`converters.equalize`.

Example:
    >>> est = PoseEstimator("models/mobilenet_thin.onnx", device="cpu")  # doctest: +SKIP
    >>> calib = collect_frames(["../shared/data/images", "../shared/data/video/demo.mp4"], 100,
    ...                        est.preprocess, augment=("flip",))  # doctest: +SKIP
    >>> len(calib), calib.sha256[:12]  # doctest: +SKIP
    (100, '3f9c0a…')
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.common import ExportError
from converters.equalize import channel_stats, equalization_sites, equalize_ranges, fold_depthwise_1x1

log = logging.getLogger(__name__)

__all__ = [
    "AUGMENTATIONS", "CalibrationError", "CalibrationSet", "FrameReader", "collect_frames", "fixed_letterbox",
    # range equalization, kept importable from here (it lives in converters.equalize)
    "channel_stats", "equalization_sites", "equalize_ranges", "fold_depthwise_1x1",
]  # fmt: skip

#: augmentation name -> what it does to a BGR frame (applied before pre-processing)
AUGMENTATIONS: dict[str, str] = {
    "flip": "horizontal mirror",
    "zoom": "centre crop of 70% of the width and height (people appear larger)",
}

Preprocess = Callable[[np.ndarray], tuple[np.ndarray, object]]


class CalibrationError(ExportError):
    """The calibration sources cannot give the frames asked for; the message says what to change."""


@dataclass
class CalibrationSet:
    """Pre-processed calibration inputs and where they came from.

    Attributes:
        inputs: network inputs, each float32 (3, H, W) as :meth:`PoseEstimator.preprocess` makes them.
        names: one label per input: ``source#index`` plus ``+flip`` / ``+zoom`` for augmented copies.
        sources: the sources as given, with how many readable frames each held.
        real: how many inputs are unaugmented frames.
        sha256: hash of the inputs (shapes and bytes, in order): identifies the set in model metadata.
        valid: per input, the ``(w, h)`` of the image inside the padded input (the letterbox's
            ``resized``), when the pre-processing reports it.
    """

    inputs: list[np.ndarray]
    names: list[str]
    sources: dict[str, int] = field(default_factory=dict)
    real: int = 0
    sha256: str = ""
    valid: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)

    def shapes(self) -> list[tuple[int, int]]:
        """Distinct ``(w, h)`` input sizes in the set."""
        return sorted({(x.shape[2], x.shape[1]) for x in self.inputs})


def _hash_inputs(inputs: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    for x in inputs:
        h.update(np.asarray(x.shape, np.int64).tobytes())
        h.update(np.ascontiguousarray(x, np.float32).tobytes())
    return h.hexdigest()


def _augment(img: np.ndarray, how: str) -> np.ndarray:
    if how == "flip":
        return np.ascontiguousarray(img[:, ::-1])
    if how == "zoom":
        h, w = img.shape[:2]
        ch, cw = max(1, round(h * 0.7)), max(1, round(w * 0.7))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(img[y0 : y0 + ch, x0 : x0 + cw])
    raise CalibrationError(f"unknown augmentation {how!r}; choose from {', '.join(AUGMENTATIONS)}")


def _valid_size(x: np.ndarray, box) -> tuple[int, int]:
    resized = getattr(box, "resized", None)
    return (int(resized[0]), int(resized[1])) if resized is not None else (x.shape[2], x.shape[1])


def _plan(sources: Sequence[str | Path]) -> list[int | None]:
    """Frames each source is expected to hold (None: unknown up front)."""
    from edgepose.sources import SourceError, frame_count

    plan = []
    for s in sources:
        try:
            plan.append(frame_count(s))
        except SourceError as e:
            raise CalibrationError(f"calibration source {s}: {e}") from e
    return plan


def collect_frames(
    sources: Sequence[str | Path],
    count: int,
    preprocess: Preprocess,
    *,
    augment: Sequence[str] = (),
    progress: bool = True,
    allow_fewer: bool = False,
) -> CalibrationSet:
    """Read ``count`` calibration inputs from ``sources``, picked evenly over all of them.

    Args:
        sources: images, folders of images or videos (several allowed).
        count: how many inputs the set must hold.
        preprocess: BGR uint8 frame -> ``(input (3, H, W) float32, letterbox)``; pass the runtime's
            :meth:`PoseEstimator.preprocess` so that calibration sees what inference will see.
        augment: names from :data:`AUGMENTATIONS` used, in order, to top up a set whose sources hold
            fewer than ``count`` readable frames (each real frame gives one copy per augmentation).
        progress: show a tqdm bar.
        allow_fewer: return what the sources hold instead of failing when it is less than ``count``.

    Raises:
        CalibrationError: no sources, a source that does not exist or holds no readable frame, an
            unknown augmentation, or fewer frames than ``count`` even after augmentation.
    """
    from tqdm import tqdm

    from edgepose.sources import SourceError, iter_frames

    if count < 1:
        raise CalibrationError(f"the calibration set needs at least 1 frame, not {count}")
    if not sources:
        raise CalibrationError("no calibration source given: pass --calib with images, folders or videos of people")
    for a in augment:
        if a not in AUGMENTATIONS:
            raise CalibrationError(f"unknown augmentation {a!r}; choose from {', '.join(AUGMENTATIONS)}")
    plan = _plan(sources)
    known = sum(n or 0 for n in plan)
    # Global indices to keep when the sources hold more than needed; else keep everything.
    keep: set[int] | None = None
    if known > count and all(n is not None for n in plan):
        keep = set(np.linspace(0, known - 1, count).round().astype(int).tolist())
    # Real frames are pre-processed as they are read; the BGR frames are kept only when they may be
    # needed for augmented copies (a 1080p frame is 6 MB, its network input 2 MB).
    keep_raw = bool(augment)
    inputs: list[np.ndarray] = []
    valid: list[tuple[int, int]] = []
    names: list[str] = []
    raw: list[np.ndarray] = []
    readable: dict[str, int] = {}
    offset = 0
    bar = tqdm(total=min(count, known) if known else None, desc="calibration frames", unit="frame",
               disable=not progress)  # fmt: skip
    try:
        for src, expected in zip(sources, plan, strict=True):
            label = Path(str(src)).name or str(src)
            good = 0
            errors: list[str] = []
            try:
                for frame in iter_frames(src):
                    if frame.image is None:
                        errors.append(frame.error or f"frame {frame.index} unreadable")
                        continue
                    good += 1
                    g = offset + frame.index
                    if (keep is None and len(inputs) < count) or (keep is not None and g in keep):
                        x, box = preprocess(frame.image)
                        inputs.append(np.array(x, np.float32, copy=True))
                        valid.append(_valid_size(x, box))
                        names.append(f"{label}#{frame.index}")
                        if keep_raw:
                            raw.append(frame.image)
                        bar.update(1)
            except SourceError as e:
                raise CalibrationError(f"calibration source {src}: {e}") from e
            if good == 0:
                why = f" ({errors[0]}{' …' if len(errors) > 1 else ''})" if errors else ""
                raise CalibrationError(f"calibration source {src} holds no readable frame{why}")
            if errors:
                log.warning("%s: skipped %d unreadable file(s)/frame(s), e.g. %s", src, len(errors), errors[0])
            readable[str(src)] = good
            offset += expected if expected is not None else good
    finally:
        bar.close()
    real = len(inputs)
    if real < count and not allow_fewer:
        available = real * len(augment)
        if real + available < count:
            listing = ", ".join(f"{s} ({n})" for s, n in readable.items())
            hint = "add sources (--calib takes several folders, images and videos)"
            if len(augment) < len(AUGMENTATIONS):
                hint += ", top the set up with mirrored/zoomed copies (--augment flip zoom)"
            got = f"{real} readable frames" + (f" (+{available} augmented copies)" if available else "")
            raise CalibrationError(
                f"asked for {count} calibration frames but the sources hold only {got}: {listing}; "
                f"{hint}, or ask for fewer (--calib-frames)"
            )
        todo = [(a, i) for a in augment for i in range(real)][: count - real]
        for a, i in tqdm(todo, desc="augmented copies", unit="frame", disable=not progress):
            x, box = preprocess(_augment(raw[i], a))
            inputs.append(np.array(x, np.float32, copy=True))
            valid.append(_valid_size(x, box))
            names.append(f"{names[i]}+{a}")
        log.info("calibration: %d real frames + %d augmented copies (%s)", real, count - real, "+".join(augment))
    return CalibrationSet(inputs=inputs, names=names, sources=readable, real=real, sha256=_hash_inputs(inputs),
                          valid=valid)  # fmt: skip


def fixed_letterbox(size: tuple[int, int], stride: int):
    """A ``letterbox(w, h)`` replacement that fits every frame into exactly ``size = (W, H)``.

    The frame keeps its aspect ratio, is scaled to fit inside ``W x H`` and padded right/bottom,
    as a model with a fixed input shape needs. ``W`` and ``H`` must be multiples of ``stride``.
    """
    from edgepose.runner import Letterbox

    fw, fh = size
    if fw % stride or fh % stride:
        raise CalibrationError(f"fixed shape {fw}x{fh} must be a multiple of the model's stride {stride}")

    def letterbox(w: int, h: int) -> Letterbox:
        s = min(fw / w, fh / h)
        nw, nh = max(1, min(fw, round(w * s))), max(1, min(fh, round(h * s)))
        return Letterbox((w, h), (nw, nh), (fw, fh))

    return letterbox


class FrameReader:
    """An ONNX Runtime ``CalibrationDataReader`` over a :class:`CalibrationSet` (batch 1).

    ``CalibrationDataReader`` recognises any class with ``get_next`` as a subclass, so this module
    needs no onnxruntime import. ``set_range`` lets the calibrator collect statistics in slices
    (``CalibStridedMinMax``), which keeps the histogram calibrators' memory bounded.
    """

    def __init__(self, calib: CalibrationSet, input_name: str = "image", progress: bool = True) -> None:
        from tqdm import tqdm

        self.calib = calib
        self.input_name = input_name
        self._start, self._end = 0, len(calib)
        self._i = 0
        self._bar = tqdm(total=len(calib), desc="calibrating", unit="frame", disable=not progress)

    def __len__(self) -> int:
        return len(self.calib)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self.calib))
        self._i = self._start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= self._end:
            return None
        x = self.calib.inputs[self._i][None]
        self._i += 1
        self._bar.update(1)
        return {self.input_name: x}

    def rewind(self) -> None:
        self._i = self._start

    def close(self) -> None:
        self._bar.close()

    def __iter__(self):
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item
