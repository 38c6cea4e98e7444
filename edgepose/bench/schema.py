"""The results JSON's schema, as code: :func:`validate` lists every problem (empty list = valid).

Kept dependency-free (no jsonschema); tests and :func:`edgepose.bench.suite.write_json` use it.

Example:
    >>> validate({"schema": "edgepose-bench/1"})[:1]
    ['mode: missing']
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["validate", "SUMMARY_KEYS"]

SUMMARY_KEYS = ("n", "mean", "p50", "p90", "p99", "min")
_STAGES = ("read", "preprocess", "inference", "decode", "total")


def _num(v, *, none=False, lo=None, hi=None) -> bool:
    if v is None:
        return none
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
        return False
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def _summary(s, where: str, out: list[str]) -> None:
    if not isinstance(s, dict):
        out.append(f"{where}: not an object")
        return
    for k in SUMMARY_KEYS:
        if not _num(s.get(k), lo=0):
            out.append(f"{where}.{k}: {s.get(k)!r} is not a number >= 0")
    if all(_num(s.get(k), lo=0) for k in SUMMARY_KEYS) and s["n"] and not (s["min"] <= s["p50"] <= s["p90"] <= s["p99"] + 1e-9):
        out.append(f"{where}: percentiles out of order ({s})")


def _need(d: dict, key: str, types, where: str, out: list[str]) -> bool:
    if key not in d:
        out.append(f"{where}{key}: missing")
        return False
    if not isinstance(d[key], types):
        out.append(f"{where}{key}: {type(d[key]).__name__} is not {types}")
        return False
    return True


def _config(c, i: int, out: list[str]) -> None:
    w = f"configs[{i}]."
    if not isinstance(c, dict):
        out.append(f"configs[{i}]: not an object")
        return
    for key, t in (("id", str), ("label", str), ("role", str), ("threads", int), ("size", str)):
        _need(c, key, t, w, out)
    if c.get("role") not in ("edgepose", "baseline"):
        out.append(f"{w}role: {c.get('role')!r} is not edgepose or baseline")
    if "error" in c:
        if not isinstance(c["error"], str):
            out.append(f"{w}error: not a string")
        return
    if _need(c, "stages_ms", dict, w, out):
        for st in _STAGES:
            _summary(c["stages_ms"].get(st), f"{w}stages_ms.{st}", out)
    if not _num(c.get("fps"), lo=0):
        out.append(f"{w}fps: {c.get('fps')!r} is not a number")
    if not _num(c.get("peak_rss_mb"), none=True, lo=0):
        out.append(f"{w}peak_rss_mb: {c.get('peak_rss_mb')!r}")
    if not _num(c.get("frames"), lo=1):
        out.append(f"{w}frames: {c.get('frames')!r}")
    acc = c.get("accuracy")
    if acc is not None and "error" not in acc:
        for k in ("AP", "AP50", "AR"):
            if not _num(acc.get(k), lo=0, hi=1):
                out.append(f"{w}accuracy.{k}: {acc.get(k)!r} is not in [0, 1]")


def validate(r) -> list[str]:
    """Every way ``r`` differs from the ``edgepose-bench/1`` schema."""
    out: list[str] = []
    if not isinstance(r, dict):
        return ["result: not an object"]
    if r.get("schema") != "edgepose-bench/1":
        out.append(f"schema: {r.get('schema')!r} is not 'edgepose-bench/1'")
    if r.get("mode") not in ("quick", "full"):
        out.append("mode: missing" if "mode" not in r else f"mode: {r['mode']!r}")
    for key in ("started", "finished"):
        _need(r, key, str, "", out)
    if _need(r, "machine", dict, "", out):
        m = r["machine"]
        for key, t in (("host", str), ("cpu", dict), ("cores", dict), ("onnxruntime", str), ("providers", list)):
            _need(m, key, t, "machine.", out)
        if isinstance(m.get("cpu"), dict):
            _need(m["cpu"], "model", str, "machine.cpu.", out)
        if isinstance(m.get("cores"), dict):
            for k in ("logical", "usable", "physical"):
                if not _num(m["cores"].get(k), lo=1):
                    out.append(f"machine.cores.{k}: {m['cores'].get(k)!r}")
    if _need(r, "settings", dict, "", out):
        for key, t in (("model", str), ("model_sha256", str), ("threads", list), ("sizes", list), ("repeats", int)):
            _need(r["settings"], key, t, "settings.", out)
    _need(r, "skipped", list, "", out)
    if _need(r, "configs", list, "", out):
        if not r["configs"]:
            out.append("configs: empty")
        for i, c in enumerate(r["configs"]):
            _config(c, i, out)
        if not any(c.get("role") == "edgepose" and "stages_ms" in c for c in r["configs"] if isinstance(c, dict)):
            out.append("configs: no edgepose configuration was measured")
    if _need(r, "ratios", list, "", out):
        for i, x in enumerate(r["ratios"]):
            for k in ("inference", "end_to_end", "fps"):
                if not _num(x.get(k), none=True, lo=0):
                    out.append(f"ratios[{i}].{k}: {x.get(k)!r}")
    dec = r.get("decoders")
    if dec is not None and "error" not in dec:
        for k in ("edgepose", "learnopencv"):
            _summary((dec.get("decode_ms") or {}).get(k), f"decoders.decode_ms.{k}", out)
    st = r.get("session_study")
    if st is not None:
        if not isinstance(st, dict) or not isinstance(st.get("inference"), dict):
            out.append("session_study: needs an 'inference' object")
        else:
            for name, e in st["inference"].items():
                if "error" not in e:
                    _summary(e.get("inference"), f"session_study.inference.{name}.inference", out)
    return out
