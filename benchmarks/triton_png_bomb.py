"""Peak RSS of the Triton Python models' stubs after a 30000x30000 PNG bomb (875 KB) sent to the pipeline
and imdecode models (issue 24 item 2, Triton half): refused from the header, or decoded in full.

Usage: ``python benchmarks/triton_png_bomb.py REPO`` (an exported repository; the server of
``.venv-triton`` or ``$EDGEPOSE_TRITON_ENV``). Not a timing: it runs on a busy machine too.
"""

from __future__ import annotations

import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from edgepose.triton.server import TritonServer


def png(w: int, h: int) -> bytes:
    """An all-zero grey PNG of w x h (a few hundred KB for 900 MP)."""

    def chunk(k: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))

    z = zlib.compressobj(9)
    line = bytes(w + 1)
    rows = b"".join(z.compress(line) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def stub_peaks(pid: int) -> dict[str, int]:
    """Peak RSS (MB) of each Python backend stub the server started."""
    out = {}
    for p in Path("/proc").glob("[0-9]*"):
        try:
            st = (p / "status").read_text()
            if f"PPid:\t{pid}\n" in st and "triton_python" in (p / "cmdline").read_text():
                out[p.name] = int(st.split("VmHWM:")[1].split()[0]) // 1024
        except (OSError, IndexError):
            pass
    return out


def main(repo: str) -> None:
    bomb = png(30000, 30000)
    print(f"bomb: {len(bomb)} bytes, header 30000x30000")
    with TritonServer(repo, models=["edgepose_pipeline", "edgepose_imdecode"]) as srv:
        before = stub_peaks(srv.proc.pid)
        c = grpcclient.InferenceServerClient(srv.grpc_url.split("://")[1])
        for model in ("edgepose_pipeline", "edgepose_imdecode"):
            t = grpcclient.InferInput("image_bytes", [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[bomb]], dtype=np.object_))
            t0 = time.perf_counter()
            try:
                c.infer(model, [t])
                print(model, "answered (decoded in full)")
            except InferenceServerException as e:
                print(model, f"refused in {time.perf_counter() - t0:.2f} s:", e.message())
        print("stub peak RSS MB before/after:", before, stub_peaks(srv.proc.pid))


if __name__ == "__main__":
    main(sys.argv[1])
