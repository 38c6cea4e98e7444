"""Stage 5: assemble chosen limb connections into people (OpenPose's "subset" algorithm).

Tensor contract (n peaks, k chosen connections, P parts, M people):

=================  =============================================  =================================
function           input                                          output
=================  =============================================  =================================
``group_people``   :class:`Peaks` (n,), :class:`Connections` (k,)  :class:`People`: parts (M, P), ...
=================  =============================================  =================================

Connections are visited limb by limb in layout order (best first within a limb). With ``A`` and
``B`` the people (if any) already holding the connection's two peaks:

- neither held: a new person with the two parts;
- one held: the other peak joins that person if its part's slot is still empty (never overwritten);
- both held by the same person: nothing (redundant limbs such as ear-shoulder add nothing);
- held by two people: merged only when they have no part in common, else nothing.

So people never share a peak. A person's OpenPose score (``total``) is the sum of its peak scores
and connection scores; people with fewer than ``min_parts`` parts or ``total / parts`` below
``min_mean_score`` are dropped; the rest are ranked by ``person_score`` and the best
``max_people`` kept. With ``min_parts == 1`` peaks that joined no one become one-part people.

Example:
    >>> import numpy as np
    >>> from edgepose.decode.structs import Connections, Peaks
    >>> peaks = Peaks.from_lists([[(0, 0, 0.9)], [(0, 5, 0.8)], [(0, 9, 0.7)]])
    >>> conns = Connections(np.array([0, 1], np.int32), np.array([0, 1], np.int32),
    ...                     np.array([1, 2], np.int32), np.array([0.6, 0.5], np.float32))
    >>> people = group_people(peaks, conns, limbs=[(0, 1), (1, 2)], min_parts=3)
    >>> people.parts.tolist(), round(float(people.total[0]), 3)
    ([[0, 1, 2]], 3.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgepose.decode.config import PERSON_SCORE_MODES
from edgepose.decode.structs import Connections, Peaks, People

if TYPE_CHECKING:
    from edgepose.layouts import Layout

__all__ = ["group_people", "person_scores"]


def group_people(
    peaks: Peaks,
    conns: Connections,
    layout: Layout | None = None,
    *,
    limbs: Sequence[Sequence[int]] | None = None,
    min_parts: int = 3,
    min_mean_score: float = 0.2,
    max_people: int = 64,
    person_score: str = "total",
) -> People:
    """People from chosen connections (see the module docstring for the rules).

    Args:
        peaks: (n,) the frame's peaks.
        conns: (k,) chosen connections, by limb in layout order (as the assign stage returns them).
        layout: a :class:`edgepose.layouts.Layout`, or give ``limbs``.
        limbs: (L, 2) part pairs per limb.
        min_parts: drop people with fewer parts.
        min_mean_score: drop people with ``total / parts`` below this.
        max_people: keep at most this many (the best ranked).
        person_score: ranking score, one of :data:`edgepose.decode.config.PERSON_SCORE_MODES`.

    Returns:
        :class:`People`, best ranked first (ties keep creation order).
    """
    if layout is not None:
        limbs = layout.limbs
    if limbs is None:
        raise ValueError("group_people needs a layout or limbs")
    if person_score not in PERSON_SCORE_MODES:
        raise ValueError(f"person_score must be one of {PERSON_SCORE_MODES}, got {person_score!r}")
    num_parts = peaks.num_parts
    part_a = [int(x[0]) for x in limbs]
    part_b = [int(x[1]) for x in limbs]
    pscore = peaks.score.tolist()

    owner = [-1] * len(peaks)  # person index holding each peak
    parts: list[list[int]] = []  # per person: peak index per part, -1 if none
    kp_sum: list[float] = []  # sum of peak scores
    conn_sum: list[float] = []  # sum of connection scores
    count: list[int] = []
    alive: list[bool] = []

    for k, a, b, s in zip(conns.limb.tolist(), conns.a.tolist(), conns.b.tolist(), conns.score.tolist(), strict=True):
        oa = owner[a]
        ob = owner[b]
        if oa < 0 and ob < 0:
            row = [-1] * num_parts
            row[part_a[k]] = a
            row[part_b[k]] = b
            owner[a] = owner[b] = len(parts)
            parts.append(row)
            kp_sum.append(pscore[a] + pscore[b])
            conn_sum.append(s)
            count.append(2)
            alive.append(True)
        elif ob < 0:
            row = parts[oa]
            pb = part_b[k]
            if row[pb] < 0:
                row[pb] = b
                owner[b] = oa
                kp_sum[oa] += pscore[b]
                conn_sum[oa] += s
                count[oa] += 1
        elif oa < 0:
            row = parts[ob]
            pa = part_a[k]
            if row[pa] < 0:
                row[pa] = a
                owner[a] = ob
                kp_sum[ob] += pscore[a]
                conn_sum[ob] += s
                count[ob] += 1
        elif oa != ob:
            ra, rb = parts[oa], parts[ob]
            if all(x < 0 or y < 0 for x, y in zip(ra, rb, strict=True)):
                for i, y in enumerate(rb):
                    if y >= 0:
                        ra[i] = y
                        owner[y] = oa
                kp_sum[oa] += kp_sum[ob]
                conn_sum[oa] += conn_sum[ob] + s
                count[oa] += count[ob]
                alive[ob] = False

    if min_parts <= 1:  # lone peaks are people too
        for i, o in enumerate(owner):
            if o < 0:
                row = [-1] * num_parts
                row[int(peaks.part[i])] = i
                parts.append(row)
                kp_sum.append(pscore[i])
                conn_sum.append(0.0)
                count.append(1)
                alive.append(True)

    if not parts:
        return _no_people(num_parts)
    cnt = np.asarray(count, np.float64)
    kps = np.asarray(kp_sum, np.float64)
    total = kps + np.asarray(conn_sum, np.float64)
    keep = np.asarray(alive) & (cnt >= min_parts) & (total >= min_mean_score * cnt)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return _no_people(num_parts)
    rank = person_scores(person_score, total[idx], kps[idx], cnt[idx], num_parts)
    idx = idx[np.argsort(-rank, kind="stable")[:max_people]]
    rank = person_scores(person_score, total[idx], kps[idx], cnt[idx], num_parts)
    return People(
        parts=np.asarray(parts, np.int32)[idx],
        score=rank.astype(np.float32),
        total=total[idx].astype(np.float32),
        count=cnt[idx].astype(np.int32),
    )


def person_scores(mode: str, total: np.ndarray, kp_sum: np.ndarray, count: np.ndarray, num_parts: int) -> np.ndarray:
    """Ranking scores (M,) from OpenPose totals, peak-score sums and part counts (M,) each.

    Example:
        >>> person_scores("keypoint_coverage", np.array([3.0]), np.array([1.8]), np.array([2.0]), 18)
        array([0.1])
    """
    if mode == "total":
        return total
    if mode == "mean":
        return total / count
    if mode == "keypoint_mean":
        return kp_sum / count
    if mode == "keypoint_coverage":
        return kp_sum / num_parts
    raise ValueError(f"person_score must be one of {PERSON_SCORE_MODES}, got {mode!r}")


def _no_people(num_parts: int) -> People:
    return People(
        parts=np.zeros((0, num_parts), np.int32),
        score=np.zeros(0, np.float32),
        total=np.zeros(0, np.float32),
        count=np.zeros(0, np.int32),
    )
