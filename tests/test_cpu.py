"""Which int8 kernels suit which CPU (edgepose/cpu.py), the converter's weight type and the runtime's warning."""

from __future__ import annotations

import pytest

from edgepose import cpu

X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_VNNI = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\n"
X86_AVXVNNI = "processor\t: 0\nflags\t\t: fpu avx2 fma avx_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp\n"

U8S8 = {"quant_activations": "uint8 asymmetric per-tensor", "quant_weights": "int8 symmetric per-channel"}
U8U8 = {"quant_activations": "uint8 asymmetric per-tensor", "quant_weights": "uint8 (zero point 128) per-channel"}


def test_flags_parsed_from_cpuinfo():
    assert cpu.cpu_flags(X86_AVX2) == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert "asimddp" in cpu.cpu_flags(ARM)
    assert cpu.cpu_flags("") == set()


@pytest.mark.parametrize(
    ("machine", "info", "want"),
    [("x86_64", X86_AVX2, "u8"), ("x86_64", X86_VNNI, "s8"), ("x86_64", X86_AVXVNNI, "s8"),
     ("aarch64", ARM, "s8"), ("x86_64", "", "s8")],
)  # fmt: skip
def test_weight_type_for_the_converting_cpu(machine, info, want):
    assert cpu.int8_weight_type(machine, cpu.cpu_flags(info)) == want


def test_warning_only_for_u8s8_on_x86_without_vnni():
    avx2, vnni = cpu.cpu_flags(X86_AVX2), cpu.cpu_flags(X86_VNNI)
    msg = cpu.int8_warning(U8S8, "x86_64", avx2)
    assert msg and "--weight-type mixed" in msg and "saturate" in msg
    assert cpu.int8_warning(U8S8, "x86_64", vnni) is None
    assert cpu.int8_warning(U8S8, "aarch64", cpu.cpu_flags(ARM)) is None
    assert cpu.int8_warning(U8U8, "x86_64", avx2) is None
    assert cpu.int8_warning({**U8S8, "quant_weights": "int8 symmetric per-channel (7-bit, reduce_range)"},
                            "x86_64", avx2) is None  # fmt: skip
    assert cpu.int8_warning({}, "x86_64", avx2) is None  # fp32 model
