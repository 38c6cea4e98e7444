"""What the decoder stages hand each other: peaks, limb connections and people.

Every array is one flat table (no per-part Python lists), so each stage works on all parts or all
limbs at once. ``n`` = peaks found in the frame, ``c`` = connections, ``M`` = people, ``P`` = parts.

Example:
    >>> p = Peaks.from_lists([[(3.0, 4.0, 0.9)], [], [(5.0, 6.0, 0.8), (1.0, 1.0, 0.5)]])
    >>> len(p), p.offsets.tolist(), p.part.tolist()
    (3, [0, 1, 1, 3], [0, 2, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Peaks", "Connections", "People"]


@dataclass(frozen=True)
class Peaks:
    """Part candidates, grouped by part (part 0's first), strongest first within a part.

    Attributes:
        part: (n,) int32 part index of each peak, non-decreasing.
        xy: (n, 2) float32 ``(x, y)`` in map coordinates (integers before refinement).
        score: (n,) float32 heatmap value at the peak (> 0).
        offsets: (P+1,) int64; part ``p``'s peaks are rows ``offsets[p]:offsets[p+1]``.
    """

    part: np.ndarray
    xy: np.ndarray
    score: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.part.shape[0])

    @property
    def num_parts(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def counts(self) -> np.ndarray:
        """(P,) number of peaks per part."""
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, per_part: Sequence[Sequence[tuple[float, float, float]]]) -> Peaks:
        """Build from one list of ``(x, y, score)`` per part (for tests and hand-made inputs)."""
        counts = np.array([len(x) for x in per_part], np.int64)
        rows = [r for x in per_part for r in x]
        arr = np.asarray(rows, np.float32).reshape(-1, 3)
        return cls(
            part=np.repeat(np.arange(len(per_part), dtype=np.int32), counts),
            xy=np.ascontiguousarray(arr[:, :2]),
            score=np.ascontiguousarray(arr[:, 2]),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        )

    @classmethod
    def empty(cls, num_parts: int) -> Peaks:
        return cls(
            part=np.zeros(0, np.int32),
            xy=np.zeros((0, 2), np.float32),
            score=np.zeros(0, np.float32),
            offsets=np.zeros(num_parts + 1, np.int64),
        )


@dataclass(frozen=True)
class Connections:
    """Limb connections (candidates or chosen ones), grouped by limb, best first within a limb.

    Attributes:
        limb: (c,) int32 limb index in the layout, non-decreasing.
        a: (c,) int32 peak index (into :class:`Peaks`) of the limb's first part.
        b: (c,) int32 peak index of the limb's second part.
        score: (c,) float32 PAF score with the distance prior (> 0 for candidates).
    """

    limb: np.ndarray
    a: np.ndarray
    b: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.limb.shape[0])

    def take(self, index: np.ndarray) -> Connections:
        """The connections at ``index`` (an int or bool array), in that order."""
        return Connections(self.limb[index], self.a[index], self.b[index], self.score[index])

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, int, int, float]]) -> Connections:
        """Build from ``(limb, a, b, score)`` rows (for tests and hand-made inputs), in that order.

        Example:
            >>> Connections.from_rows([(0, 0, 2, 0.9), (1, 2, 3, 0.5)]).b.tolist()
            [2, 3]
        """
        if len(rows) == 0:
            return cls.empty()
        limb, a, b, score = zip(*rows, strict=True)
        return cls(
            np.asarray(limb, np.int32), np.asarray(a, np.int32), np.asarray(b, np.int32), np.asarray(score, np.float32)
        )

    @classmethod
    def empty(cls) -> Connections:
        z = np.zeros(0, np.int32)
        return cls(z, z, z, np.zeros(0, np.float32))


@dataclass(frozen=True)
class People:
    """Assembled people, best first.

    Attributes:
        parts: (M, P) int32 peak index of each part, -1 where missing.
        score: (M,) float32 ranking score (see ``DecoderConfig.person_score``).
        total: (M,) float32 OpenPose's score: peak scores + connection scores.
        count: (M,) int32 number of parts found.
    """

    parts: np.ndarray
    score: np.ndarray
    total: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return int(self.parts.shape[0])

    def keypoints(self, peaks: Peaks) -> np.ndarray:
        """(M, P, 3) float32 ``(x, y, score)``; zeros where a part is missing."""
        m, p = self.parts.shape
        out = np.zeros((m, p, 3), np.float32)
        have = self.parts >= 0
        ids = self.parts[have]
        out[have, :2] = peaks.xy[ids]
        out[have, 2] = peaks.score[ids]
        return out
