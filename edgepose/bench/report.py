"""Benchmark results -> markdown tables (stdout, README) and PNG plots (matplotlib, Agg).

The tables need nothing beyond the standard library; the plots need matplotlib (the ``bench``
extra) and raise an ImportError naming it when it is missing. PNGs are written atomically.

Example:
    >>> print(markdown(result))  # doctest: +SKIP
    >>> plot_stages(result, "benchmarks/results/2026-11-24-vm-stages.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["markdown", "machine_line", "readme_table", "format_study", "plot_stages", "plot_pareto", "write_plots"]


def _f(v, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _x(v) -> str:
    return "-" if not v else f"{v:.2f}x"


def _budget(c: dict) -> str:
    b = c.get("input_budget")
    return f"{c['size']} ({b[0]}x{b[1]})" if b else c["size"]


def machine_line(r: dict) -> str:
    """One line: date, CPU, cores, memory, ORT version, providers."""
    m = r["machine"]
    flags = ", ".join(m["cpu"].get("flags", [])[:6])
    return (f"{r['started'][:10]} on {m['host']}: {m['cpu']['model']} ({m['cores']['physical']} physical / "
            f"{m['cores']['logical']} logical cores; {flags}), {m.get('memory_gb')} GB, Python {m.get('python')}, "
            f"onnxruntime {m['onnxruntime']} ({', '.join(m['providers'])}), "
            f"TensorFlow {m.get('versions', {}).get('tensorflow') or 'not installed'}, "
            f"OpenCV {m.get('versions', {}).get('opencv')}")  # fmt: skip


def _config_table(configs: list[dict]) -> list[str]:
    lines = [
        "| configuration | input | threads | read | pre-process | inference p50 / p90 / p99 | decode | total p50 / p90 / p99 | FPS | peak RSS MB | AP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in configs:
        if "stages_ms" not in c:
            lines.append(f"| {c['label']} | {c['size']} | {c['threads']} | failed: {c.get('error', '?')} | | | | | | | |")
            continue
        s = c["stages_ms"]
        acc = c.get("accuracy") or {}
        ap = _f(acc.get("AP"), 3) if "AP" in acc else ("failed" if "error" in acc else "-")
        lines.append(
            f"| {c['label']} | {_budget(c)} | {c['threads']} | {_f(s['read']['p50'])} | {_f(s['preprocess']['p50'])} | "
            f"{_f(s['inference']['p50'])} / {_f(s['inference']['p90'])} / {_f(s['inference']['p99'])} | "
            f"{_f(s['decode']['p50'])} | {_f(s['total']['p50'])} / {_f(s['total']['p90'])} / {_f(s['total']['p99'])} | "
            f"{_f(c.get('fps'))} | {_f(c.get('peak_rss_mb'), 0)} | {ap} |"
        )  # fmt: skip
    return lines


def _ratio_table(ratios: list[dict]) -> list[str]:
    lines = [
        "| threads | input | baseline | baseline inference p50 ms | edgepose inference p50 ms | inference speed-up | end-to-end speed-up | FPS ratio |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for x in ratios:
        b = x.get("input_budget")
        size = f"{x['size']} ({b[0]}x{b[1]})" if b else x["size"]
        lines.append(f"| {x['threads']} | {size} | {x['label'].removeprefix('baseline: ')} | "
                     f"{_f(x['baseline_inference_p50'])} | {_f(x['edgepose_inference_p50'])} | {_x(x['inference'])} | "
                     f"{_x(x['end_to_end'])} | {_x(x['fps'])} |")  # fmt: skip
    return lines


def _decoder_table(d: dict) -> list[str]:
    if not d or "error" in d:
        return [f"Decoder comparison failed: {d.get('error')}"] if d else []
    acc = d.get("accuracy") or {}
    lines = [
        f"Decoders on the same network outputs ({d['images']} coco-val-mini images, input {d['size']}, "
        f"{d['threads']} threads for the network; decoding is single-threaded numpy / OpenCV):",
        "",
        "| decoder | decode p50 ms | p90 ms | p99 ms | AP | AP50 | AR |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k, label in (("edgepose", "edgepose (map resolution, sub-pixel)"),
                     ("learnopencv", "baseline: learnopencv recipe (maps resized to the image)")):  # fmt: skip
        t = d["decode_ms"][k]
        a = acc.get(k) or {}
        lines.append(f"| {label} | {_f(t['p50'], 2)} | {_f(t['p90'], 2)} | {_f(t['p99'], 2)} | {_f(a.get('AP'), 3)} | "
                     f"{_f(a.get('AP50'), 3)} | {_f(a.get('AR'), 3)} |")  # fmt: skip
    lines += ["", f"edgepose's decoder is {_x(d.get('speedup_p50'))} faster than the recipe (p50)."]
    return lines


def markdown(r: dict) -> str:
    """The whole result as markdown."""
    lines = [f"## edgepose bench ({r['mode']})", "", machine_line(r), ""]
    bg = r.get("background") or {}
    lines.append(f"Model {r['settings']['model']} (sha256 {r['settings']['model_sha256'][:12]}), frames from "
                 f"{Path(r['settings']['source']).name}, {r['settings']['warmup']} warm-up + {r['settings']['repeats']} "
                 f"measured frames per configuration, interleaved. Times in ms. Other programs disturbed "
                 f"{bg.get('disturbed_turns', 0)} of {bg.get('turns', 0)} turns.")  # fmt: skip
    lines.append("")
    lines += _config_table(r["configs"])
    if r.get("ratios"):
        lines += ["", "Speed-ups of edgepose (CPU, fp32) over the baselines (baseline time / edgepose time; above 1 = edgepose faster):", ""]
        lines += _ratio_table(r["ratios"])
    if r.get("decoders"):
        lines += [""] + _decoder_table(r["decoders"])
    if r.get("session_study"):
        st = r["session_study"]
        if st.get("from_file"):
            when = (st.get("machine") or {}).get("date", "an earlier run")
            lines += ["", f"(The study below was run separately, {when}, and read from {st['from_file']}.)"]
        lines += ["", format_study(st)]
    if r.get("skipped"):
        lines += ["", "Not measured: " + "; ".join(f"{s['what']} ({s['why']})" for s in r["skipped"])]
    return "\n".join(lines)


def readme_table(r: dict, threads: int | None = None) -> str:
    """The short table for the README: the default size, edgepose vs each baseline, with the machine."""
    threads = threads or max(r["settings"]["threads"])
    rows = [c for c in r["configs"] if c["threads"] == threads and c["size"] == "default" and "stages_ms" in c]
    lines = [machine_line(r), "",
             f"| pipeline (input default, {threads} threads) | inference p50 ms | end-to-end p50 ms | FPS | peak RSS MB | vs edgepose (end to end) |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    me = next((c for c in rows if c["role"] == "edgepose" and c.get("device") == "cpu" and c.get("variant") == "fp32"), None)
    for c in rows:
        rel = (c["stages_ms"]["total"]["p50"] / me["stages_ms"]["total"]["p50"]) if me else None
        lines.append(f"| {c['label']} | {_f(c['stages_ms']['inference']['p50'])} | {_f(c['stages_ms']['total']['p50'])} | "
                     f"{_f(c.get('fps'))} | {_f(c.get('peak_rss_mb'), 0)} | {_x(rel) if c is not me else '1.00x'} |")  # fmt: skip
    return "\n".join(lines)


# -- the session-option study (run by the checkout's benchmarks/session_study.py) ---------------------
def _study_table(entries: dict) -> list[str]:
    lines = ["| candidate | inference p50 ms | p90 ms | min ms | speed-up vs ORT defaults | create ms | spin CPU ms/run | "
             "other programs (cores) | what |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for name, e in entries.items():
        if "error" in e:
            lines.append(f"| {name} | failed | | | | | | | {e['error']} |")
            continue
        i = e["inference"]
        lines.append(f"| {name} | {i['p50']:.1f} | {i['p90']:.1f} | {i['min']:.1f} | {_x(e.get('vs_ort_defaults'))} | "
                     f"{_f(e.get('create_ms'), 0)} | {_f(e.get('spin_cpu_ms'), 0)} | {e.get('background_cores', 0):.2f} | "
                     f"{e['what']} |")  # fmt: skip
    return lines


def _bg(b: dict | None) -> str:
    if not b:
        return ""
    return f" Other programs disturbed {b['disturbed_turns']} of {b['turns']} turns."


def format_study(study: dict) -> str:
    """A session-option study (``result["session_study"]``) as markdown tables."""
    st = study.get("settings", {})
    size = st.get("size", ["?", "?"])
    lines = [f"Session-option study: {size[0]}x{size[1]}, {st.get('threads')} threads, {st.get('repeats')} interleaved "
             f"repeats; speed-up = ORT defaults' p50 / this p50.{_bg(st.get('background'))}", ""]  # fmt: skip
    lines += _study_table(study.get("inference", {}))
    if study.get("contended"):
        lines += ["", f"With one core busy: {st.get('contended', '')}.{_bg(st.get('contended_background'))}", ""]
        lines += _study_table(study["contended"])
    if study.get("pipeline"):
        lines += ["", st.get("pipeline", "") + "." + _bg(st.get("pipeline_background")), "",
                  "| candidate | between p50 ms | inference p50 ms | total p50 ms | speed-up vs ORT defaults | spin CPU ms/frame |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, e in study["pipeline"].items():
            if "error" in e:
                lines.append(f"| {name} | failed | | | | |")
                continue
            lines.append(f"| {name} | {e['between']['p50']:.1f} | {e['inference']['p50']:.1f} | {e['total']['p50']:.1f} | "
                         f"{_x(e.get('vs_ort_defaults'))} | {_f(e.get('spin_cpu_ms'), 0)} |")  # fmt: skip
    return "\n".join(lines)


# -- plots ---------------------------------------------------------------------------------------------
def _save(fig, path: str | Path) -> Path:
    """Save a figure atomically (the temporary name keeps ``.png``: matplotlib picks the format by it)."""
    from edgepose.fileio import atomic_path

    plt = _plt()
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"matplotlib cannot be imported ({e}); pip install 'edgepose[bench]'") from e
    return plt


def plot_stages(r: dict, path: str | Path) -> Path:
    """Horizontal stacked bars: p50 ms of each stage per configuration."""
    plt = _plt()
    rows = [c for c in r["configs"] if "stages_ms" in c]
    stages = ("read", "preprocess", "inference", "decode")
    colors = {"read": "#9e9e9e", "preprocess": "#64b5f6", "inference": "#1565c0", "decode": "#ef6c00"}
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(rows) + 1.6))
    labels = [f"{c['label']} | {c['threads']}t {_budget(c)}" for c in rows]
    y = list(range(len(rows)))[::-1]
    left = [0.0] * len(rows)
    for st in stages:
        vals = [c["stages_ms"][st]["p50"] for c in rows]
        ax.barh(y, vals, left=left, color=colors[st], label=st, height=0.7)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    for yi, c, lft in zip(y, rows, left, strict=True):
        ax.text(lft + 1, yi, f"{c['stages_ms']['total']['p50']:.0f} ms", va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    for tick, c in zip(ax.get_yticklabels(), rows, strict=True):
        if c["role"] == "baseline":
            tick.set_color("#b71c1c")
    ax.set_xlabel("median ms per frame, by stage (baselines in red)")
    ax.set_title(f"edgepose bench {r['started'][:10]}: {r['machine']['cpu']['model']}, ORT {r['machine']['onnxruntime']}",
                 fontsize=9)  # fmt: skip
    ax.set_xlim(0, max(left) * 1.12 if left else 1)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return _save(fig, path)


def plot_pareto(r: dict, path: str | Path) -> Path | None:
    """AP against end-to-end p50 latency; the Pareto front (faster and better) joined by a line."""
    pts = [c for c in r["configs"] if "stages_ms" in c and "AP" in (c.get("accuracy") or {})]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for c in pts:
        x, yv = c["stages_ms"]["total"]["p50"], c["accuracy"]["AP"]
        base = c["role"] == "baseline"
        ax.scatter([x], [yv], marker="s" if base else "o", color="#b71c1c" if base else "#1565c0", zorder=3)
        name = c["label"].removeprefix("edgepose ").removeprefix("baseline: ")
        ax.annotate(f"{name.split(':')[0]} {c['size']}", (x, yv), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front, best = [], -1.0
    for c in sorted(pts, key=lambda c: c["stages_ms"]["total"]["p50"]):
        if c["accuracy"]["AP"] > best:
            front.append(c)
            best = c["accuracy"]["AP"]
    ax.plot([c["stages_ms"]["total"]["p50"] for c in front], [c["accuracy"]["AP"] for c in front], "--", color="#555",
            zorder=2, label="Pareto front")  # fmt: skip
    ax.set_xlabel("end-to-end median ms per frame (read + pre-process + inference + decode)")
    ax.set_ylabel("AP on coco-val-mini")
    ax.set_title(f"AP vs latency ({r['started'][:10]}, {r['machine']['cpu']['model']}); squares: baselines", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(r: dict, json_path: str | Path) -> list[Path]:
    """The plots beside the JSON: ``<name>-stages.png`` and, with accuracy, ``<name>-pareto.png``."""
    json_path = Path(json_path)
    stem = json_path.with_suffix("")
    out = [plot_stages(r, f"{stem}-stages.png")]
    p = plot_pareto(r, f"{stem}-pareto.png")
    if p:
        out.append(p)
    return out
