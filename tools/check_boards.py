#!/usr/bin/env python3
"""Command line of the board checks by emulation (issue #14): ``arm64``, ``smoke`` and ``haswell``.

What each check does is told in ``tools/boards/__init__.py`` and docs/boards.md; the work is in the
package ``tools/boards/``: ``common`` (paths, errors, running commands), ``root`` (the emulated arm64
board), ``judge`` (comparisons and verdicts) and ``checks`` (the checks themselves).

Example:
    $ sudo make check-arm64
    $ python tools/check_boards.py arm64 --pictures 6 --video-frames 4 --eval-size default
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# the package sits beside this file: found from any working directory
TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import boards  # noqa: E402
from boards import checks, common  # noqa: E402
from boards.common import CACHE, REPO, CheckError  # noqa: E402
from boards.root import CPUS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=boards.__doc__.splitlines()[0])
    p.add_argument("check", choices=["arm64", "smoke", "haswell"])
    p.add_argument("--model", default=str(REPO / "models" / "mobilenet_thin.onnx"),
                   help="the fp32 model; its int8 variant sits next to it (default %(default)s)")  # fmt: skip
    p.add_argument(
        "--data", default=str(common.DATA), help="the shared data: images/, video/, coco-val-mini/ (default %(default)s)"
    )
    p.add_argument("--root", default=str(CACHE / "arm64-root"), help="the cached arm64 root (default %(default)s)")
    p.add_argument(
        "--cpu", default="cortex-a76", choices=sorted(CPUS), help="QEMU_CPU of the board (default %(default)s: Pi 5)"
    )
    p.add_argument("--pictures", type=int, help="real pictures run on both sides (default: arm64 4, haswell 2)")
    p.add_argument("--video-frames", type=int, default=2, help="video frames per back-end (default %(default)s)")
    p.add_argument(
        "--eval-size",
        help="input size of the AP check, and of haswell's pictures (default: arm64 "
        "default, i.e. 432x368; haswell small, i.e. 320x272: fp32 runs ~40x slower there)",
    )
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads on both sides (default %(default)s)")
    p.add_argument("--work", default=str(REPO / "build" / "boards"), help="outputs on the host (default %(default)s)")
    p.add_argument("--json-out", help="where the figures go (default WORK/CHECK.json)")
    args = p.parse_args(argv)
    args.smoke = args.check == "smoke"
    args.pictures = args.pictures or (2 if args.check == "haswell" else 4)
    args.eval_size = args.eval_size or ("small" if args.check == "haswell" else "default")
    common.DATA = Path(args.data).resolve()  # read at call time by root and checks
    try:
        return checks.run_haswell(args) if args.check == "haswell" else checks.run_arm64(args)
    except CheckError as e:
        print(f"check-{args.check}: ERROR: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
