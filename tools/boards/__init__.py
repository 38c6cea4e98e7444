"""Proof on the boards' own platforms, by emulation (issue #14).

Three checks, each ending in one summary line and exit status 0 only when every figure holds:

``arm64`` (``make check-arm64``, needs root)
    Builds a Debian bookworm arm64 root (Raspberry Pi OS's userland: Python 3.11, glibc 2.36) with
    ``mmdebstrap`` and ``qemu-user-static``, cached in ``~/.cache/edgepose/arm64-root`` (the second
    run skips it). Builds edgepose's wheel on the host and installs it inside with pip from PyPI, as
    a Pi user would (aarch64 wheels; nothing is copied from the host's venv and the host's pip
    configuration is not seen: every command runs with a clean environment). Then, inside the
    emulated board (``QEMU_CPU=cortex-a76``, a Pi 5; ``--cpu cortex-a72`` for a Pi 4): ``edgepose
    info``, ``edgepose run`` on real pictures with the fp32 and int8 models and on a short stretch
    of the video with the PyAV and OpenCV back-ends, every run compared with the same run on the
    host (fp32 keypoints within 0.05 px given the same inputs; int8 keypoints reported, judged by
    AP). The decoded video frames are compared too: where the decoder library itself gives the
    board other pixels (OpenCV's FFmpeg converts YUV to BGR with other SIMD rounding on arm64),
    that route is held to the same people and parts, all within 2 px, and the report says so.
    Then ``edgepose
    eval`` of the int8 model on coco-val-mini, whose AP must be within 0.01 of the host's fp32 AP
    at the same input size.

``haswell`` (``make check-x86-haswell``, no root)
    The project's own venv Python under ``qemu-x86_64-static -cpu Haswell`` (AVX2 and FMA, no
    AVX-512, no VNNI: ONNX Runtime picks other u8s8 kernels): fp32 keypoints on a picture against
    native, int8 eval AP against the host's fp32 AP at the same size.

``smoke`` (``make check-arm64-smoke``)
    Root built or restored, wheel installed, ``edgepose info`` and one picture with fp32 and int8
    under arm64 emulation, fp32 compared with the host.

Timings under emulation mean nothing for real boards and are printed only as the check's own
step times. Every figure is written to ``--json-out`` (default: ``build/boards/<check>.json``).

Example:
    $ sudo make check-arm64
    $ python tools/check_boards.py arm64 --pictures 6 --video-frames 4 --eval-size default

The package: ``common`` (paths, errors, running commands), ``root`` (the emulated arm64 board),
``judge`` (comparisons and verdicts, no commands), ``checks`` (the three checks); the command line is
``tools/check_boards.py``.
"""
