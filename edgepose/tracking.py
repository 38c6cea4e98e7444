"""Stable person ids across frames, and One-Euro smoothing of keypoints.

:class:`Tracker` matches each frame's people to the tracks of earlier frames by keypoint
similarity (COCO's object keypoint similarity, OKS, against each track's last pose moved by its
velocity) with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``). A track that
finds no match is kept for ``max_age`` frames, so a person hidden for a few frames gets the same
id back. With ``smoothing`` set, every track runs a :class:`OneEuroFilter` over its keypoints.

scipy is an optional dependency (extra ``track``); it is imported when a :class:`Tracker` is made.

Example:
    >>> import numpy as np
    >>> from edgepose.layouts import get_layout
    >>> from edgepose.results import Person
    >>> tr = Tracker(get_layout("coco18"))
    >>> kp = np.zeros((18, 3), np.float32); kp[:, :2] = np.random.rand(18, 2) * 100 + 200; kp[:, 2] = 1
    >>> [p.id for p in tr.update([Person(kp, 1.0)], timestamp=0.0)]
    [0]
    >>> [p.id for p in tr.update([Person(kp + [3, 1, 0], 1.0)], timestamp=0.04)]
    [0]
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from edgepose.layouts import Layout
from edgepose.results import Person

log = logging.getLogger(__name__)

__all__ = ["Tracker", "OneEuroFilter", "Smoothing", "oks", "keypoint_sigmas", "COCO17_SIGMAS"]

#: COCO's per-keypoint OKS sigmas in COCO-17 order (pycocotools' ``cocoeval.py``)
COCO17_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0
#: sigma for parts COCO-17 does not have (neck, chest, head top, feet): about a shoulder's
DEFAULT_SIGMA = 0.079


def keypoint_sigmas(layout: Layout) -> np.ndarray:
    """Per-part OKS sigmas (K,) for ``layout``: COCO's where the part maps to COCO-17, else a shoulder's."""
    sig = np.full(layout.num_parts, DEFAULT_SIGMA)
    if layout.to_coco17 is not None:
        for c, k in enumerate(layout.to_coco17):
            if k >= 0:
                sig[k] = COCO17_SIGMAS[c]
    return sig


def _import_scipy_lsa():
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as e:
        raise ImportError("tracking needs scipy: pip install 'edgepose[track]'") from e
    return linear_sum_assignment


def oks(a: np.ndarray, b: np.ndarray, sigmas: np.ndarray, area: np.ndarray | float) -> np.ndarray:
    """Object keypoint similarity between every pose of ``a`` and every pose of ``b``.

    Args:
        a: (N, K, 3) poses ``(x, y, score)``; score 0 marks a missing part.
        b: (M, K, 3) poses.
        sigmas: (K,) per-part sigmas (COCO's, see :func:`keypoint_sigmas`).
        area: the object scale ``s**2`` in pixels: a scalar, (M,) per pose of ``b``, or (N, M).

    Returns:
        (N, M) similarities in [0, 1]: the mean of ``exp(-d**2 / (2 s**2 (2 sigma)**2))`` over the
        parts present in both poses; 0 where the two share no part.

    Example:
        >>> p = np.array([[[10, 10, 1], [20, 20, 1]]], np.float32)
        >>> float(oks(p, p, np.array([0.1, 0.1]), 100.0)[0, 0])
        1.0
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    d2 = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(-1)  # (N, M, K)
    both = (a[:, None, :, 2] > 0) & (b[None, :, :, 2] > 0)
    area = np.asarray(area, np.float64)
    if area.ndim == 1:
        area = area[None, :]
    k2 = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    e = np.exp(-d2 / (2.0 * np.maximum(area, 1.0)[..., None] * k2))
    n = both.sum(-1)
    return np.where(n > 0, (e * both).sum(-1) / np.maximum(n, 1), 0.0)


@dataclass(frozen=True)
class Smoothing:
    """One-Euro filter settings (Casiez et al., CHI 2012).

    Attributes:
        min_cutoff: cut-off frequency (Hz) at rest: lower removes more jitter from still keypoints.
        beta: how fast the cut-off rises with speed (per pixel/second): higher lags less on fast moves.
        d_cutoff: cut-off (Hz) for the speed estimate.
    """

    min_cutoff: float = 1.0
    beta: float = 0.02
    d_cutoff: float = 1.0


class OneEuroFilter:
    """A One-Euro filter over (K, D) points, each with its own state; missing points reset theirs.

    Example:
        >>> f = OneEuroFilter(Smoothing(min_cutoff=1.0, beta=0.0))
        >>> x, present = np.array([[0.0, 0.0]]), np.array([True])
        >>> f(x, present, 0.0).round(2).tolist(), f(x + 10, present, 0.1).round(2).tolist()
        ([[0.0, 0.0]], [[3.86, 3.86]])
    """

    def __init__(self, config: Smoothing | None = None) -> None:
        self.config = config or Smoothing()
        self._x: np.ndarray | None = None  # filtered value (K, D)
        self._dx: np.ndarray | None = None  # filtered speed (K, D)
        self._seen: np.ndarray | None = None  # (K,) whether a point has state
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, valid: np.ndarray, t: float) -> np.ndarray:
        """Filter one sample.

        Args:
            x: (K, D) values (pixels).
            valid: (K,) which points are present; an absent point passes through and forgets its state.
            t: time of the sample in seconds (increasing).

        Returns:
            (K, D) filtered values (a new array).
        """
        x = np.asarray(x, np.float64)
        valid = np.asarray(valid, bool)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            self._seen, self._t = valid.copy(), t
            return x.copy()
        dt = t - self._t if self._t is not None else 0.0
        if not dt > 0:  # same or out-of-order timestamp: treat as one 30 fps frame
            dt = 1.0 / 30.0
        c = self.config
        fresh = valid & ~self._seen
        dx = (x - self._x) / dt
        a_d = self._alpha(c.d_cutoff, dt)
        dx_hat = a_d * dx + (1.0 - a_d) * self._dx
        speed = np.sqrt((dx_hat**2).sum(-1, keepdims=True))
        a = self._alpha(c.min_cutoff + c.beta * speed, dt)
        x_hat = a * x + (1.0 - a) * self._x
        out = np.where(valid[:, None] & ~fresh[:, None], x_hat, x)
        self._x = np.where(valid[:, None], out, self._x)
        self._dx = np.where((valid & ~fresh)[:, None], dx_hat, 0.0)
        self._seen = valid.copy()
        self._t = t
        return out


@dataclass
class _Track:
    id: int
    keypoints: np.ndarray  # (K, 3) last matched pose (after smoothing)
    center: np.ndarray  # (2,)
    area: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px per frame
    age: int = 0  # frames since last matched
    hits: int = 1
    filter: OneEuroFilter | None = None

    def predicted(self) -> np.ndarray:
        kp = self.keypoints.copy()
        if self.age:
            kp[:, :2] += self.velocity * self.age
        return kp


def _center_area(kp: np.ndarray) -> tuple[np.ndarray, float]:
    vis = kp[kp[:, 2] > 0, :2]
    if len(vis) == 0:
        return np.zeros(2), 1.0
    lo, hi = vis.min(0), vis.max(0)
    w, h = hi - lo
    return (lo + hi) / 2.0, float(max(w * h, 1.0))


class Tracker:
    """Give people stable ids across the frames of one source.

    Args:
        layout: the model's keypoint layout (for the OKS sigmas).
        max_age: frames a track survives without a match (its "memory"); after that its id is retired.
        min_similarity: the least OKS for a person to continue a track; below it a new id starts.
        min_area: floor for the OKS scale (pixels**2), so small or partial people are not matched too strictly.
        smoothing: One-Euro settings to smooth each track's keypoints, or None.

    Example:
        >>> tr = Tracker(layout, max_age=15, smoothing=Smoothing())  # doctest: +SKIP
        >>> for result in results:  # doctest: +SKIP
        ...     result.people = tr.update(result.people, result.timestamp)
    """

    def __init__(
        self,
        layout: Layout,
        *,
        max_age: int = 10,
        min_similarity: float = 0.15,
        min_area: float = 32.0 * 32.0,
        smoothing: Smoothing | None = None,
    ) -> None:
        if max_age < 0:
            raise ValueError("max_age must be >= 0")
        self._lsa = _import_scipy_lsa()
        self.layout = layout
        self.sigmas = keypoint_sigmas(layout)
        self.max_age = max_age
        self.min_similarity = min_similarity
        self.min_area = min_area
        self.smoothing = smoothing
        self.tracks: list[_Track] = []
        self._next_id = 0
        self._frames = 0

    def reset(self) -> None:
        """Forget every track (ids keep increasing)."""
        self.tracks.clear()

    @property
    def next_id(self) -> int:
        return self._next_id

    def update(self, people: list[Person], timestamp: float | None = None) -> list[Person]:
        """Assign ids to one frame's people (in place) and smooth their keypoints when enabled.

        Args:
            people: this frame's people; their ``keypoints`` are (K, 3) in image pixels.
            timestamp: the frame's time in seconds (for smoothing); None counts frames at 30 fps.

        Returns:
            ``people``, each with ``id`` set (and ``keypoints`` replaced by the smoothed ones).
        """
        t = float(timestamp) if timestamp is not None else self._frames / 30.0
        self._frames += 1
        for tr in self.tracks:
            tr.age += 1
        matches: dict[int, _Track] = {}
        if people and self.tracks:
            det = np.stack([p.keypoints for p in people]).astype(np.float64)
            pred = np.stack([tr.predicted() for tr in self.tracks])
            area = np.array([max(tr.area, self.min_area) for tr in self.tracks])
            sim = oks(det, pred, self.sigmas, area)
            rows, cols = self._lsa(-sim)
            for r, c in zip(rows, cols, strict=True):
                if sim[r, c] >= self.min_similarity:
                    matches[int(r)] = self.tracks[int(c)]
        for i, p in enumerate(people):
            tr = matches.get(i)
            if tr is None:
                center, area = _center_area(p.keypoints)
                tr = _Track(self._next_id, p.keypoints.copy(), center, area)
                if self.smoothing is not None:
                    tr.filter = OneEuroFilter(self.smoothing)
                self._next_id += 1
                self.tracks.append(tr)
                gap = 0
            else:
                gap = tr.age
                tr.age = 0
                tr.hits += 1
            if tr.filter is not None:
                kp = np.array(p.keypoints, np.float32, copy=True)
                vis = kp[:, 2] > 0
                kp[:, :2] = tr.filter(kp[:, :2], vis, t)
                kp[~vis, :2] = 0.0
                p.keypoints = kp
            center, area = _center_area(p.keypoints)
            if gap > 0:
                tr.velocity = 0.5 * tr.velocity + 0.5 * (center - tr.center) / gap
            tr.center, tr.area = center, area
            tr.keypoints = p.keypoints.copy()
            p.id = tr.id
        self.tracks = [tr for tr in self.tracks if tr.age <= self.max_age]
        return people
