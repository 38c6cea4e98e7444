"""Device words -> ONNX Runtime execution providers and their options, from one table.

Words: ``auto``, ``cpu``, ``cuda[:N]``, ``tensorrt[:N][+fp16]``, ``openvino[:DEVICE]``.
``auto`` prefers TensorRT > CUDA > OpenVINO > CPU among what this onnxruntime build offers.
Every list ends with the CPU provider, so nodes a GPU provider cannot take still run; the
session's *active* providers are logged by the runner so that a silent CPU fallback is visible.

Example:
    >>> from edgepose.providers import resolve
    >>> resolve("cpu").providers
    ['CPUExecutionProvider']
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgepose._ort import ort

log = logging.getLogger(__name__)

__all__ = ["DeviceSpec", "ProviderUnavailable", "resolve", "available", "TABLE", "trt_cache_dir"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"

#: device word -> the provider it needs. ``auto`` walks this table in order.
TABLE: dict[str, str] = {"tensorrt": TRT, "cuda": CUDA, "openvino": OPENVINO, "cpu": CPU}

_WORD = re.compile(r"^(?P<kind>auto|cpu|cuda|tensorrt|trt|openvino)(?::(?P<dev>[A-Za-z0-9_.]+))?(?P<fp16>\+fp16)?$")


class ProviderUnavailable(RuntimeError):
    """The requested execution provider is not in this onnxruntime build."""


@dataclass(frozen=True)
class DeviceSpec:
    """Resolved device: what to hand ``ort.InferenceSession``.

    Attributes:
        word: the normalised device word (``tensorrt:0+fp16``).
        providers: provider names, most preferred first, always ending with CPU.
        provider_options: one options dict per provider.
    """

    word: str
    providers: list[str]
    provider_options: list[dict] = field(default_factory=list)


def available() -> list[str]:
    """Providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


def _library_versions() -> str:
    trt = "none"
    try:  # the TensorRT Python package is optional; ORT links the library itself
        import tensorrt  # type: ignore

        trt = tensorrt.__version__
    except Exception:
        trt = os.environ.get("TRT_VERSION", "unknown")
    return f"ort{ort.__version__}-trt{trt}"


def trt_cache_dir(model_sha: str, fp16: bool, root: str | Path | None = None) -> Path:
    """Engine/timing cache folder keyed by model hash, precision and ORT/TensorRT versions."""
    base = Path(root or os.environ.get("EDGEPOSE_CACHE", Path.home() / ".cache" / "edgepose")) / "trt"
    return base / f"{model_sha[:16]}-{'fp16' if fp16 else 'fp32'}-{_library_versions()}"


def _clash_hint(have: list[str]) -> str:
    return (
        f"this onnxruntime build ({ort.__version__}) offers: {', '.join(have)}. "
        "For CUDA/TensorRT install onnxruntime-gpu (pip install 'edgepose[gpu]'); if both onnxruntime and "
        "onnxruntime-gpu are installed they overwrite each other and the GPU providers vanish: "
        "`pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu`. "
        "For OpenVINO install onnxruntime-openvino."
    )


def resolve(
    word: str = "auto", *, model_sha: str = "model", cache_root: str | Path | None = None, threads: int | None = None
) -> DeviceSpec:
    """Turn a device word into providers and options.

    Args:
        word: ``auto``, ``cpu``, ``cuda[:N]``, ``tensorrt[:N][+fp16]`` or ``openvino[:DEVICE]``.
        model_sha: the model's hash, used to key TensorRT's engine cache.
        cache_root: where TensorRT caches go (default ``~/.cache/edgepose`` or ``$EDGEPOSE_CACHE``).
        threads: CPU threads; OpenVINO on its CPU device takes them as ``num_of_threads`` (it
            ignores ONNX Runtime's intra-op setting and would otherwise use every core).

    Raises:
        ValueError: the word is not a device word.
        ProviderUnavailable: the provider is not in this onnxruntime build.
    """
    m = _WORD.match(word.strip().lower())
    if not m:
        raise ValueError(f"unknown device {word!r}; use auto, cpu, cuda[:N], tensorrt[:N][+fp16] or openvino[:DEVICE]")
    kind, dev, fp16 = m["kind"], m["dev"], bool(m["fp16"])
    kind = "tensorrt" if kind == "trt" else kind
    have = available()
    if kind == "auto":
        kind = next(k for k, p in TABLE.items() if p in have or k == "cpu")
    if fp16 and kind != "tensorrt":
        raise ValueError(f"+fp16 applies to tensorrt only; for {kind} use an fp16 model variant")
    need = TABLE[kind]
    if need not in have:
        raise ProviderUnavailable(f"device {word!r} needs {need}, which is not available: " + _clash_hint(have))
    cpu = (CPU, {})
    if kind == "cpu":
        chain = [cpu]
    elif kind == "cuda":
        chain = [(CUDA, {"device_id": int(dev or 0)}), cpu]
    elif kind == "tensorrt":
        cache = trt_cache_dir(model_sha, fp16, cache_root)
        cache.mkdir(parents=True, exist_ok=True)
        trt_opts = {
            "device_id": int(dev or 0),
            "trt_fp16_enable": fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
        }
        chain = [(TRT, trt_opts)]
        if CUDA in have:  # nodes TensorRT rejects fall back to CUDA, then CPU
            chain.append((CUDA, {"device_id": int(dev or 0)}))
        chain.append(cpu)
    else:  # openvino
        ov = {"device_type": (dev or "CPU").upper()}
        if threads and ov["device_type"] == "CPU":
            ov["num_of_threads"] = str(int(threads))
        chain = [(OPENVINO, ov), cpu]
    norm = kind + (f":{dev}" if dev else "") + ("+fp16" if fp16 else "")
    return DeviceSpec(word=norm, providers=[p for p, _ in chain], provider_options=[o for _, o in chain])
