"""Where the Triton server hop goes (issue #13): one client, one frame at a time, remote and local
runs interleaved, plus the server's own per-request statistics (queue, input, inference, output)
over the same requests, for one export setting (``--queue-delay-us``).

Usage::

    .venv/bin/python benchmarks/triton_hop_profile.py --queue-delay-us 0
    .venv/bin/python benchmarks/triton_hop_profile.py --queue-delay-us 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "mobilenet_thin.onnx")
    ap.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "data" / "video" / "mmaction2__demo_skeleton.mp4")
    ap.add_argument("--queue-delay-us", type=int, default=0)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()

    import tritonclient.grpc as grpcclient
    from triton_bench import hop, video_frames  # the hop as `make bench-triton` measures it

    from edgepose import PoseEstimator
    from edgepose.session import usable_cores
    from edgepose.triton.repo import ExportOptions, export_repository
    from edgepose.triton.server import TritonServer

    frames = video_frames(args.video, 10)
    local = PoseEstimator(args.model, device="cpu", threads=usable_cores())
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        export_repository(args.model, repo, ExportOptions(instances=1, queue_delay_us=args.queue_delay_us))
        with TritonServer(repo, models=["edgepose_pipeline"], startup_timeout=180) as srv:
            client = grpcclient.InferenceServerClient(srv.grpc_url.split("://", 1)[1])

            def stats() -> dict[str, tuple[int, int]]:
                s = client.get_inference_statistics("edgepose_pipeline", as_json=True)["model_stats"][0]
                return {k: (int(v.get("count", 0)), int(v.get("ns", 0)))
                        for k, v in s["inference_stats"].items() if isinstance(v, dict)}  # fmt: skip

            before = stats()
            measured = hop(srv, local, frames, args.frames)  # (its warm-up request is counted with the rest)
            after = stats()
    n = after["success"][0] - before["success"][0]
    server = {k: round((after[k][1] - before[k][1]) / max(1, n) / 1e6, 3) for k in after if k in before}
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M"), "queue_delay_us": args.queue_delay_us,
        **{k: round(v, 2) for k, v in measured.items()}, "server_ms_per_request": server, "requests": n,
    }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
