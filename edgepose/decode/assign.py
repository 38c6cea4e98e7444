"""Stage 4: per limb, choose which candidate connections to keep (each peak used once per limb).

Tensor contract (c candidates in, k <= c chosen out):

=====================  ============================  ==========================================
function               input                         output
=====================  ============================  ==========================================
``assign_greedy``      :class:`Connections` (c,)     :class:`Connections` (k,), by limb, best first
``assign_hungarian``   :class:`Connections` (c,)     :class:`Connections` (k,), by limb, best first
``assign_connections`` the same, ``method`` name     the same
=====================  ============================  ==========================================

Greedy is OpenPose's: within a limb, take connections in descending score while neither end is
taken. It is computed for all limbs at once in a few vectorized rounds: a connection that is the
best remaining one of both its ends is exactly one greedy would take, so each round takes all of
those and drops the connections that lost an end (ties are broken by input order).
Hungarian maximises the sum of scores per limb (``scipy.optimize.linear_sum_assignment``).

Example:
    >>> import numpy as np
    >>> c = Connections(limb=np.array([0, 0, 0], np.int32), a=np.array([0, 0, 1], np.int32),
    ...                 b=np.array([2, 3, 2], np.int32), score=np.array([0.9, 0.8, 0.7], np.float32))
    >>> assign_greedy(c).a.tolist(), assign_hungarian(c).a.tolist()
    ([0], [0, 1])
"""

from __future__ import annotations

import numpy as np

from edgepose.decode.structs import Connections

__all__ = ["assign_connections", "assign_greedy", "assign_hungarian"]


def assign_connections(cands: Connections, method: str = "greedy") -> Connections:
    """Dispatch to :func:`assign_greedy` or :func:`assign_hungarian`.

    Raises:
        ValueError: unknown ``method``.
    """
    if method == "greedy":
        return assign_greedy(cands)
    if method == "hungarian":
        return assign_hungarian(cands)
    raise ValueError(f"unknown matching method {method!r}; use 'greedy' or 'hungarian'")


def _sorted(cands: Connections) -> Connections:
    """By limb, then best score first (stable); a no-op copy-free path when already so."""
    limb, score = cands.limb, cands.score
    if limb.size < 2:
        return cands
    dl = np.diff(limb)
    if (dl >= 0).all() and ((dl > 0) | (np.diff(score) <= 0)).all():
        return cands
    return cands.take(np.lexsort((-score, limb)))


def _end_keys(limb: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ids for the (limb, peak) pairs: one id per end of a limb."""
    key = limb.astype(np.int64) * (int(ends.max()) + 1) + ends
    uniq, inv = np.unique(key, return_inverse=True)
    return inv.reshape(-1), int(uniq.size)


def assign_greedy(cands: Connections) -> Connections:
    """OpenPose's greedy matching, per limb, for all limbs at once.

    Args:
        cands: (c,) candidate connections (any order; ``a``/``b`` index the frame's peaks).

    Returns:
        The chosen connections: no peak appears twice as the same end of the same limb; by limb,
        best first.
    """
    cands = _sorted(cands)
    n = len(cands)
    if n == 0:
        return cands
    ka, na = _end_keys(cands.limb, cands.a)
    kb, nb = _end_keys(cands.limb, cands.b)
    # rank: 0 = best over all limbs (limbs never compete: their keys are disjoint)
    rank = np.empty(n, np.int64)
    rank[np.argsort(-cands.score, kind="stable")] = np.arange(n)
    best_a = np.empty(na, np.int64)
    best_b = np.empty(nb, np.int64)
    used_a = np.zeros(na, bool)
    used_b = np.zeros(nb, bool)
    chosen = np.zeros(n, bool)
    active = np.arange(n)
    while active.size:
        ra, rb, r = ka[active], kb[active], rank[active]
        best_a.fill(n)
        best_b.fill(n)
        np.minimum.at(best_a, ra, r)
        np.minimum.at(best_b, rb, r)
        win = active[(best_a[ra] == r) & (best_b[rb] == r)]
        chosen[win] = True
        used_a[ka[win]] = True
        used_b[kb[win]] = True
        active = active[~(used_a[ra] | used_b[rb])]
    return cands.take(np.flatnonzero(chosen))


def assign_hungarian(cands: Connections) -> Connections:
    """Maximum-total-score matching per limb (``scipy.optimize.linear_sum_assignment``).

    Args:
        cands: (c,) candidate connections with scores > 0 (others are ignored).

    Returns:
        The chosen connections, by limb, best first.

    Raises:
        ImportError: scipy is not installed (``pip install scipy``, or the ``eval`` extra).
    """
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as e:  # pragma: no cover - scipy is in the dev and eval extras
        raise ImportError(
            "matching='hungarian' needs scipy: pip install scipy (or edgepose[eval]); or use matching='greedy'"
        ) from e
    cands = _sorted(cands)
    keep_pos = np.flatnonzero(cands.score > 0)
    if keep_pos.size == 0:
        return Connections.empty()
    limb = cands.limb[keep_pos]
    bounds = np.flatnonzero(np.diff(limb)) + 1
    chosen = []
    for sel in np.split(keep_pos, bounds):
        ua, ia = np.unique(cands.a[sel], return_inverse=True)
        ub, ib = np.unique(cands.b[sel], return_inverse=True)
        weight = np.zeros((ua.size, ub.size), np.float64)
        which = np.full((ua.size, ub.size), -1, np.int64)
        weight[ia, ib] = cands.score[sel]
        which[ia, ib] = sel
        rows, cols = linear_sum_assignment(weight, maximize=True)
        got = which[rows, cols]
        chosen.append(got[got >= 0])
    idx = np.sort(np.concatenate(chosen))
    return cands.take(idx)
