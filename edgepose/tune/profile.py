"""The profile file ``edgepose tune`` writes, and its use by ``run``, ``eval`` and the API.

A profile names the model file and its sha256; loading it checks the file still has that sha256
(a model rebuilt or replaced since tuning is refused: its speed and accuracy were not measured).
The model path is stored as given and relative to the profile's folder, so a profile copied with its
model keeps working.

Example:
    >>> from edgepose import PoseEstimator
    >>> est = PoseEstimator.from_profile("profile.json")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from edgepose.fileio import sha256_file

__all__ = ["SCHEMA", "ProfileError", "load_profile", "model_file", "estimator_kwargs", "apply_to_args", "sha256_file"]

SCHEMA = "edgepose-profile/1"
#: what every profile has (checked on load)
REQUIRED = ("schema", "model", "device", "size", "threads", "workers", "decoder")


class ProfileError(ValueError):
    """A profile cannot be used; the message says why."""


def model_file(profile: dict, where: str | Path | None = None) -> Path:
    """The profile's model file: its path as written, else relative to the profile's folder ``where``."""
    m = profile["model"]
    cands = [Path(m["path"])]
    if where is not None and m.get("relative"):
        cands.append(Path(where).parent / m["relative"])
    for c in cands:
        if c.is_file():
            return c
    raise ProfileError(f"the profile's model {m['path']} is missing (looked at {', '.join(map(str, cands))})")


#: the most intra-op threads or inference workers a profile (or --threads) may ask for
MAX_THREADS = 256


def _check_types(prof: dict, path: Path) -> None:
    """One message for a field of the wrong type or out of range (no traceback later)."""

    def whole(name: str, lo: int, hi: int) -> None:
        v = prof[name]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ProfileError(f"{path}: {name} must be a whole number {lo}..{hi}, not {v!r}")

    whole("threads", 1, MAX_THREADS)
    whole("workers", 1, MAX_THREADS)
    if not isinstance(prof["size"], str) or len(prof["size"]) > 32:
        raise ProfileError(f"{path}: size must be a preset name or WxH, not {prof['size']!r}")
    if not isinstance(prof["device"], str) or len(prof["device"]) > 64:
        raise ProfileError(f"{path}: device must be a device word such as cpu, not {prof['device']!r}")
    if not isinstance(prof["decoder"], dict) or not isinstance(prof["model"], dict) or \
            not isinstance(prof["model"].get("sha256", ""), str):  # fmt: skip
        raise ProfileError(f"{path}: model and decoder must be JSON objects")
    scales = prof.get("scales")
    if scales is not None and (not isinstance(scales, list) or len(scales) > 8 or
                               not all(isinstance(x, (int, float)) and 0.05 <= x <= 4 for x in scales)):  # fmt: skip
        raise ProfileError(f"{path}: scales must be a list of at most 8 numbers 0.05..4, not {scales!r}")


def load_profile(path: str | Path, check_model: bool = True) -> dict:
    """Read a profile and check its model.

    Returns:
        The profile, with ``model["file"]`` set to the model file found.

    Raises:
        FileNotFoundError: no profile at ``path``.
        ProfileError: not a profile, or its model is missing or changed since tuning (sha256).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no profile at {path}; make one with `edgepose tune --out {path}`")
    try:
        prof = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path} is not a profile (not JSON: {e})") from None
    except RecursionError:
        raise ProfileError(f"{path} is not a profile (JSON nested too deeply)") from None
    if not isinstance(prof, dict) or prof.get("schema") != SCHEMA:
        raise ProfileError(f"{path} is not an edgepose profile (schema {SCHEMA!r} expected)")
    missing = [k for k in REQUIRED if k not in prof]
    if missing:
        raise ProfileError(f"{path} lacks {', '.join(missing)}")
    _check_types(prof, path)
    if check_model:
        f = model_file(prof, path)
        sha = sha256_file(f)
        if sha != prof["model"]["sha256"]:
            raise ProfileError(f"{path} was tuned for another model: {f} has sha256 {sha[:12]}... but the profile was "
                               f"measured with {prof['model']['sha256'][:12]}...; the model changed since, so the "
                               f"profile's figures do not hold: run `edgepose tune` again")  # fmt: skip
        prof["model"]["file"] = str(f)
    return prof


def estimator_kwargs(prof: dict) -> dict:
    """Keyword arguments of :class:`edgepose.runner.PoseEstimator` for a loaded profile."""
    from edgepose.decode import DecoderConfig

    return {"model": prof["model"].get("file", prof["model"]["path"]), "device": prof["device"],
            "threads": prof["threads"], "size": prof["size"], "scales": tuple(prof.get("scales") or (1.0,)),
            "flip": bool(prof.get("flip")), "decoder": DecoderConfig(**prof["decoder"])}  # fmt: skip


def apply_to_args(args: argparse.Namespace) -> dict | None:
    """Fill a run/eval command's options from ``args.profile`` (once).

    The profile sets the model, device, size, scales, flip, threads, workers and decoder; options given
    on the command line that default to "unset" (``--threads``, ``--size``, ``--scales``, ``--flip``,
    ``--workers``, ``--matching``) win over it.
    """
    path = getattr(args, "profile", None)
    if not path or getattr(args, "_profile", None) is not None:
        return getattr(args, "_profile", None)
    prof = load_profile(path)
    args.model = prof["model"]["file"]
    args.device = prof["device"]
    for name, value in (("threads", prof["threads"]), ("size", prof["size"]), ("flip", prof.get("flip")),
                        ("workers", prof["workers"]), ("matching", prof["decoder"].get("matching"))):  # fmt: skip
        if hasattr(args, name) and getattr(args, name) is None:
            setattr(args, name, value)
    if getattr(args, "scales", None) is None and hasattr(args, "scales"):
        args.scales = ",".join(f"{s:g}" for s in prof.get("scales") or (1.0,))
    args._profile = prof
    return prof


def write_profile(path: str | Path, prof: dict) -> Path:
    """Write a profile atomically (nothing half-written under ``path`` on any failure)."""
    from edgepose.fileio import write_text_atomic

    return write_text_atomic(path, json.dumps(prof, indent=1) + "\n")


def relative_model(model: str | Path, out: str | Path) -> str:
    """The model's path relative to the profile's folder."""
    return os.path.relpath(Path(model).resolve(), Path(out).resolve().parent)


def make_profile(result: dict, out: str | Path) -> dict:
    """The profile of a tuning result's choice (``result["choice"]`` must be set)."""
    from dataclasses import asdict

    from edgepose.decode import DecoderConfig

    c = result["choice"]
    s = result["settings"]
    acc = dict(c.get("accuracy_detail") or {})
    return {
        "schema": SCHEMA,
        "date": result["finished"],
        "model": {"path": str(Path(c["model"]).resolve()), "relative": relative_model(c["model"], out),
                  "sha256": sha256_file(c["model"]), "variant": c["variant"]},  # fmt: skip
        "device": c["device"],
        "provider": c["provider"],
        "active_providers": c.get("active_providers"),
        "size": c["size"],
        "input_budget": c.get("input_budget"),
        "scales": c.get("scales") or [1.0],
        "flip": bool(c.get("flip")),
        "threads": c["threads"],
        "workers": c["workers"],
        "decoder": asdict(DecoderConfig()),
        "target": {"fps": s["target_fps"], "budget_ms": s["budget_ms"], "max_ap_drop": s["max_ap_drop"]},
        "measured": {
            "fps": c["fps"], "latency_ms": c["latency_ms"], "total_ms": c["total_ms"], "stages_ms": c["stages_ms"],
            "cpu_ms_per_frame": c["cpu_ms"], "peak_rss_mb": c.get("peak_rss_mb"), "frames": s["frames"],
            "accuracy": {"metric": result["accuracy_method"]["metric"], **acc},
            "accuracy_method": result["accuracy_method"]["what"], "method": s["method"],
        },  # fmt: skip
        "machine": result["machine"],
        "report": Path(out).with_suffix(".md").name,
    }
