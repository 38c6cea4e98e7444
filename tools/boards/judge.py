"""The judging: keypoints, decoded frames and eval APs of two runs compared, and the verdicts.

Pure functions on files and dicts: nothing here runs a command.
"""

from __future__ import annotations

import json
from pathlib import Path

FP32_TOL_PX = 0.05
AP_TOL = 0.01


# -- keypoint comparison ---------------------------------------------------------------------------
def load_frames(folder: Path) -> dict[str, list[list[float]]]:
    """OpenPose JSON folder -> {file name: [flat keypoints per person]}."""
    out = {}
    for f in sorted(folder.glob("*.json")):
        doc = json.loads(f.read_text())
        out[f.name] = [p["pose_keypoints_2d"] for p in doc.get("people", [])]
    return out


def compare_keypoints(ref_dir: Path, cand_dir: Path) -> dict:
    """Match people (greedy on mean distance of shared parts) and measure keypoint differences.

    Returns max |dx|,|dy| over matched parts, how many frames/people/parts were compared, parts
    present in one run only, people unmatched, and the share of parts within 2 px.
    """
    import numpy as np

    ref, cand = load_frames(ref_dir), load_frames(cand_dir)
    res = {"frames": 0, "people_ref": 0, "people_cand": 0, "matched": 0, "parts": 0, "parts_one_side": 0,
           "max_px": 0.0, "within_2px": 1.0, "missing_frames": sorted(set(ref) ^ set(cand))}  # fmt: skip
    close = total = 0
    for name in sorted(set(ref) & set(cand)):
        a = [np.asarray(p, float).reshape(-1, 3) for p in ref[name]]
        b = [np.asarray(p, float).reshape(-1, 3) for p in cand[name]]
        res["frames"] += 1
        res["people_ref"] += len(a)
        res["people_cand"] += len(b)
        pairs = []
        for i, pa in enumerate(a):
            for j, pb in enumerate(b):
                both = (pa[:, 2] > 0) & (pb[:, 2] > 0)
                d = np.abs(pa[both, :2] - pb[both, :2]).max(axis=1).mean() if both.any() else np.inf
                pairs.append((d, i, j))
        used_a, used_b = set(), set()
        for d, i, j in sorted(pairs):
            if i in used_a or j in used_b or not np.isfinite(d):
                continue
            used_a.add(i)
            used_b.add(j)
            pa, pb = a[i], b[j]
            both = (pa[:, 2] > 0) & (pb[:, 2] > 0)
            one = (pa[:, 2] > 0) ^ (pb[:, 2] > 0)
            diff = np.abs(pa[both, :2] - pb[both, :2]).max(axis=1)
            res["matched"] += 1
            res["parts"] += int(both.sum())
            res["parts_one_side"] += int(one.sum())
            res["max_px"] = max(res["max_px"], float(diff.max()) if diff.size else 0.0)
            close += int((diff <= 2.0).sum())
            total += int(both.sum() + one.sum())
    res["within_2px"] = round(close / total, 4) if total else 1.0
    res["max_px"] = round(res["max_px"], 4)
    return res


def compare_decoded(host_prefix: str, board_prefix: str) -> dict:
    """Per back-end: how the decoded frames of the board differ from the host's (share of values, max levels)."""
    import numpy as np

    out = {}
    for backend in ("opencv", "pyav"):
        a, b = Path(f"{host_prefix}-{backend}.npy"), Path(f"{board_prefix}-{backend}.npy")
        if not (a.is_file() and b.is_file()):
            continue
        x, y = np.load(a).astype(np.int16), np.load(b).astype(np.int16)
        if x.shape != y.shape:
            out[backend] = {"identical": False, "shape_host": list(x.shape), "shape_board": list(y.shape)}
            continue
        d = np.abs(x - y)
        out[backend] = {"identical": bool(not d.any()), "values_differing": round(float((d > 0).mean()), 4),
                        "max_levels": int(d.max()), "what": "BGR frames" if backend == "opencv" else "yuv420p planes"}  # fmt: skip
    return out


def fp32_ok(c: dict) -> bool:
    return (not c["missing_frames"] and c["frames"] > 0 and c["people_ref"] == c["people_cand"] == c["matched"]
            and c["parts_one_side"] == 0 and c["max_px"] <= FP32_TOL_PX)  # fmt: skip


def describe(c: dict) -> str:
    return (f"max {c['max_px']:.3f} px over {c['parts']} parts of {c['matched']} people in {c['frames']} frames; "
            f"people {c['people_ref']} vs {c['people_cand']}, parts in one run only {c['parts_one_side']}, "
            f"within 2 px {100 * c['within_2px']:.1f} %")  # fmt: skip


def eval_ap(out: str) -> dict:
    doc = json.loads(Path(out).read_text())
    return {k: doc[k] for k in ("AP", "AP50", "AR", "images", "detections", "input_budget")}


# -- the checks ------------------------------------------------------------------------------------
def judge_ap(host_fp32: str | Path, host_int8: str | Path, cand_int8: str | Path, cand: str) -> dict:
    """The three evals' figures, and whether ``cand``'s int8 AP is within :data:`AP_TOL` of the host's fp32."""
    ap = {"host_fp32": eval_ap(host_fp32), "host_int8": eval_ap(host_int8), f"{cand}_int8": eval_ap(cand_int8)}
    delta = ap[f"{cand}_int8"]["AP"] - ap["host_fp32"]["AP"]
    ap[f"delta_{cand}_int8_vs_host_fp32"] = round(delta, 4)
    ap["ok"] = abs(delta) <= AP_TOL
    return ap
