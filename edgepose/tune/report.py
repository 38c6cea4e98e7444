"""The tuning report: a markdown table of every candidate and a Pareto plot (accuracy vs latency).

Example:
    >>> print(markdown(result))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["markdown", "write_plot", "target_text"]


def target_text(s: dict) -> str:
    parts = []
    if s.get("target_fps"):
        parts.append(f"{s['target_fps']:g} fps")
    if s.get("budget_ms"):
        parts.append(f"p90 latency <= {s['budget_ms']:g} ms")
    if s.get("max_ap_drop") is not None:
        parts.append(f"the fastest within {s['max_ap_drop']:g} of the best accuracy")
    return ", ".join(parts)


def _f(v, fmt: str = "{:.1f}") -> str:
    return "" if v is None else fmt.format(v)


def markdown(result: dict) -> str:
    """Every measured candidate (choice in bold, Pareto front marked), then what was skipped or pruned."""
    s, m = result["settings"], result["machine"]
    metric = result["accuracy_method"]["metric"]
    choice = (result.get("choice") or {}).get("id")
    lines = [f"# edgepose tune: {target_text(s)}", "",
             f"{m['cpu']['model']}, {m['cores']['usable']} cores, onnxruntime {m['onnxruntime']}, {result['started']}; "
             f"frames: {s['frames']}; {s['repeats']} steps per candidate after {s['warmup']} warm-up "
             f"({'quick' if s['quick'] else 'full'} mode, {result['seconds']:g} s).", "",
             f"Accuracy: {result['accuracy_method']['what']}.", "",
             f"| candidate | input | {metric} | FPS | latency p50 | p90 | CPU ms/frame | peak RSS MB | meets | Pareto |",
             "|---|---|---:|---:|---:|---:|---:|---:|:-:|:-:|"]  # fmt: skip
    rows = sorted(result["rows"], key=lambda r: -(r.get("fps") or 0))
    for r in rows:
        name = f"**{r['id']}** (chosen)" if r["id"] == choice else r["id"]
        if r.get("fps") is None:
            lines.append(f"| {name} | | | failed: {r.get('error')} | | | | | | |")
            continue
        budget = r.get("input_budget")
        inp = f"{budget[0]}x{budget[1]}" if budget else r["size"]
        if r.get("scales") and (len(r["scales"]) > 1 or r.get("flip")):
            inp += f" x{','.join(f'{x:g}' for x in r['scales'])}{' +flip' if r.get('flip') else ''}"
        lines.append(f"| {name} | {inp} | {_f(r.get('accuracy'), '{:.3f}')} | {_f(r['fps'])} | "
                     f"{_f(r['latency_ms']['p50'])} | {_f(r['latency_ms']['p90'])} | {_f(r.get('cpu_ms'))} | "
                     f"{_f(r.get('peak_rss_mb'), '{:.0f}')} | {'yes' if r.get('meets_target') else ''} | "
                     f"{'*' if r.get('pareto') else ''} |")  # fmt: skip
    if result.get("skipped"):
        lines += ["", "Skipped:", ""] + [f"- {x['what']}: {x['why']}" for x in result["skipped"]]
    if result.get("pruned"):
        lines += ["", "Not measured (could not be chosen, or out of time):", ""]
        lines += [f"- {x['id']}: {x['why']}" for x in result["pruned"]]
    return "\n".join(lines) + "\n"


def write_plot(result: dict, path: str | Path) -> Path:
    """Accuracy against p50 latency, the Pareto front joined, the choice marked.

    Raises:
        ImportError: matplotlib is missing (the ``bench`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"the Pareto plot needs matplotlib: pip install 'edgepose[bench]' ({e})") from e
    from edgepose.fileio import atomic_path

    rows = [r for r in result["rows"] if r.get("fps") is not None and r.get("accuracy") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r["latency_ms"]["p50"] for r in rows], [r["accuracy"] for r in rows], s=18, c="tab:gray", label="candidates")
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["latency_ms"]["p50"])
    if front:
        ax.plot([r["latency_ms"]["p50"] for r in front], [r["accuracy"] for r in front], "-o", c="tab:blue",
                ms=4, label="Pareto front")  # fmt: skip
        for r in front:
            ax.annotate(r["id"], (r["latency_ms"]["p50"], r["accuracy"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    c = result.get("choice")
    if c:
        ax.scatter([c["latency_ms"]["p50"]], [c["accuracy"]], s=140, marker="*", c="tab:red", zorder=5,
                   label=f"chosen: {c['id']}")  # fmt: skip
    s = result["settings"]
    if s.get("target_fps"):
        ax.axvline(1000.0 / s["target_fps"], ls="--", c="tab:red", lw=0.8, label=f"{s['target_fps']:g} fps (one worker)")
    if s.get("budget_ms"):
        ax.axvline(s["budget_ms"], ls="--", c="tab:red", lw=0.8, label=f"budget {s['budget_ms']:g} ms (p90)")
    ax.set_xlabel("latency p50 per frame (ms, read to people)")
    ax.set_ylabel(result["accuracy_method"]["metric"])
    ax.set_title(f"edgepose tune on {result['machine']['cpu']['model'][:48]}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
