"""The choice rule, dominance and the Pareto front; pure functions over measured rows.

A row is a measured candidate: ``{"id", "fps", "latency_ms": {"p50", "p90"}, "cpu_ms", "peak_rss_mb",
"accuracy", ...}`` (``accuracy``: AP, or agreement with the reference; higher is better).

Rules:
    - a target FPS is met when ``fps`` (1000 / mean wall time per frame, workers overlapping) >= target;
      a latency budget when one frame's p90 latency (read to people) <= budget;
    - without ``max_ap_drop``: the most accurate row that meets the target; rows within
      :data:`ACC_TIE` of each other tie, and ties go to less CPU time per frame, then less memory;
    - with ``max_ap_drop`` D: the fastest row whose accuracy is within D of the best row's (and that
      meets the target, when one is given); rows within :data:`SPEED_TIE` of each other's FPS tie.

Example:
    >>> rows = [{"id": "a", "fps": 30, "latency_ms": {"p90": 40}, "cpu_ms": 60, "peak_rss_mb": 200, "accuracy": 0.30},
    ...         {"id": "b", "fps": 16, "latency_ms": {"p90": 70}, "cpu_ms": 120, "peak_rss_mb": 250, "accuracy": 0.35}]
    >>> choose(rows, target_fps=15)["id"], choose(rows, target_fps=20)["id"], choose(rows, max_ap_drop=0.1)["id"]
    ('b', 'a', 'a')
"""

from __future__ import annotations

__all__ = ["ACC_TIE", "SPEED_TIE", "meets", "choose", "closest", "pareto", "dominated"]

#: accuracies closer than this are a tie (COCO AP on a few dozen images moves by more than this for real changes)
ACC_TIE = 0.002
#: FPS within this fraction of each other are a tie (measurement noise on a small shared CPU)
SPEED_TIE = 0.03


def meets(row: dict, target_fps: float | None = None, budget_ms: float | None = None, slack: float = 1.0) -> bool:
    """Whether ``row`` reaches the target FPS (``fps >= slack * target``) or the latency budget."""
    if row.get("fps") is None:
        return False
    if target_fps is not None and row["fps"] < slack * target_fps:
        return False
    if budget_ms is not None and row["latency_ms"]["p90"] > budget_ms / slack:
        return False
    return True


def _cheaper(row: dict) -> tuple:
    return (row.get("cpu_ms") or 0.0, row.get("peak_rss_mb") or 0.0, -(row.get("fps") or 0.0))


def choose(rows: list[dict], target_fps: float | None = None, budget_ms: float | None = None,
           max_ap_drop: float | None = None) -> dict | None:  # fmt: skip
    """The chosen row, or None when no row qualifies (see the module's rules)."""
    rows = [r for r in rows if r.get("fps") is not None and r.get("accuracy") is not None]
    if not rows:
        return None
    ok = [r for r in rows if meets(r, target_fps, budget_ms)]
    if max_ap_drop is not None:
        best = max(r["accuracy"] for r in rows)
        ok = [r for r in ok if r["accuracy"] >= best - max_ap_drop - 1e-12]
        if not ok:
            return None
        top = max(r["fps"] for r in ok)
        tied = [r for r in ok if r["fps"] >= (1 - SPEED_TIE) * top]
        return min(tied, key=lambda r: (_cheaper(r)[:2], -r["accuracy"]))
    if not ok:
        return None
    top = max(r["accuracy"] for r in ok)
    tied = [r for r in ok if r["accuracy"] >= top - ACC_TIE]
    return min(tied, key=_cheaper)


def closest(rows: list[dict], target_fps: float | None = None, budget_ms: float | None = None, n: int = 3) -> list[dict]:
    """The ``n`` rows nearest to the target: the fastest (FPS target) or the lowest p90 latency."""
    rows = [r for r in rows if r.get("fps") is not None]
    if budget_ms is not None and target_fps is None:
        return sorted(rows, key=lambda r: r["latency_ms"]["p90"])[:n]
    return sorted(rows, key=lambda r: -r["fps"])[:n]


def pareto(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on both accuracy and FPS (ties kept), fastest first."""
    rows = [r for r in rows if r.get("fps") is not None and r.get("accuracy") is not None]
    front = [r for r in rows
             if not any(o["accuracy"] >= r["accuracy"] and o["fps"] >= r["fps"]
                        and (o["accuracy"] > r["accuracy"] or o["fps"] > r["fps"]) for o in rows)]  # fmt: skip
    return sorted(front, key=lambda r: -r["fps"])


def dominated(cand: dict, measured: list[dict], target_fps: float | None = None, budget_ms: float | None = None,
              max_ap_drop: float | None = None, best_accuracy: float | None = None) -> str | None:  # fmt: skip
    """Why an unmeasured candidate cannot be chosen given what is measured already (None: it can).

    ``cand`` has ``accuracy`` (known before its speed), ``cost`` (network pixels per frame) and
    ``same`` (a key: provider/variant/threads/workers). Rules: with a target, a costlier size of a
    ``same`` row that already missed the target will miss it too; without ``max_ap_drop``, a row that
    meets the target and is more accurate already beats it; with ``max_ap_drop``, a candidate below
    the best accuracy minus the drop can never be chosen.
    """
    acc = cand.get("accuracy")
    if max_ap_drop is not None and best_accuracy is not None and acc is not None and acc < best_accuracy - max_ap_drop:
        return f"accuracy {acc:.3f} is more than {max_ap_drop:g} below the best ({best_accuracy:.3f})"
    if target_fps is None and budget_ms is None:
        return None
    for r in measured:
        if r.get("fps") is None:
            continue
        if r.get("same") == cand.get("same") and r.get("cost", 0) <= cand.get("cost", 0) and not meets(r, target_fps, budget_ms, 0.9):
            return f"{r['id']} (smaller input, same settings) already misses the target"
        if max_ap_drop is None and acc is not None and r.get("accuracy") is not None and meets(r, target_fps, budget_ms) \
                and r["accuracy"] > acc + ACC_TIE:
            return f"{r['id']} meets the target and is more accurate ({r['accuracy']:.3f} > {acc:.3f})"
    return None
