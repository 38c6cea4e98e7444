"""``edgepose triton export|serve``: a Triton model repository from an edgepose model, and a real
``tritonserver`` serving it on this machine for development and tests (docs/triton.md).

``serve`` prints the URLs once the server is ready and stops it on SIGINT/SIGTERM (exit 0, or 130
after SIGINT); a server that exits on its own is an error (exit 1, with the end of its log).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="triton_command", metavar="ACTION", required=True)
    ex = sub.add_parser("export", help="write a Triton model repository for a model",
                        description="Write a Triton model repository: the network (onnxruntime backend), "
                        "server-side decoding (python backend), two ensembles and a self-contained pipeline model.")  # fmt: skip
    ex.add_argument("--model", default="models/mobilenet_thin.onnx", help="edgepose ONNX model (default %(default)s)")
    ex.add_argument("--repo", type=Path, required=True, help="the repository folder to write")
    ex.add_argument("--force", action="store_true", help="replace the folder if it exists and is a repository "
                    "edgepose wrote (any other folder is refused, nothing deleted)")  # fmt: skip
    ex.add_argument("--prefix", default="edgepose", help="model-name prefix (default %(default)s)")
    ex.add_argument("--max-batch-size", type=int, default=8, help="largest dynamic batch (default %(default)s)")
    ex.add_argument("--queue-delay-us", type=int, default=0, help="dynamic batching's queue delay in "
                    "microseconds (default %(default)s: requests that queue while an instance is busy are batched "
                    "anyway; a delay helps only a model faster than the gaps between requests, e.g. on a GPU)")  # fmt: skip
    ex.add_argument("--instances", type=int, default=1, help="instances of the network and of the pipeline (default 1)")
    ex.add_argument("--kind", choices=("cpu", "gpu"), default="cpu", help="network instances on CPU or GPU (default cpu)")
    ex.add_argument("--gpus", default="", help="GPU ids for --kind gpu, comma-separated (default: all)")
    ex.add_argument("--tensorrt", action="store_true", help="ONNX Runtime's TensorRT accelerator for the network (GPU)")
    ex.add_argument("--trt-precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision (default fp16)")
    ex.add_argument("--trt-cache", default="", metavar="DIR",
                    help="TensorRT engine cache folder on the server (default: none). Give a folder only the server's "
                         "user can write, never a shared one such as /tmp: a planted engine would run as the network")
    ex.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per pipeline instance "
                    "(default 0: the server's cores divided by the instances)")  # fmt: skip
    ex.add_argument("--size", default=None, help="pixel budget WxH of the encoded-image wire format (default: the model's)")
    ex.add_argument("--python-env", default=None, metavar="PATH", help="EXECUTION_ENV_PATH of the Python models "
                    "(a packed environment on the server; default: the stub's own python3)")  # fmt: skip
    ex.add_argument("--max-pixels", type=int, default=None, metavar="N", help="the server refuses a picture sent as "
                    "bytes whose header says more pixels, before decoding it (default 89478485, Pillow's cap)")  # fmt: skip
    ex.set_defaults(func=export)
    sv = sub.add_parser("serve", help="start a real tritonserver on this machine (development, tests)",
                        description="Start the tritonserver of the nvidia-pytriton wheel (Python backend only) "
                        "on the repository; the models it cannot run are named and skipped. The model-repository "
                        "API is closed (model control mode none): no client can load or unload a model.")  # fmt: skip
    sv.add_argument("--repo", type=Path, required=True, help="the model repository")
    sv.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default %(default)s; 0: a free one)")
    sv.add_argument("--http-port", type=int, default=8000, help="HTTP port (default %(default)s; 0: a free one)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback; another address "
                    "is warned about: anyone who reaches it can run inference)")  # fmt: skip
    sv.add_argument("--triton-env", default=None, metavar="DIR", help="the Python environment with nvidia-pytriton "
                    "and edgepose (default $EDGEPOSE_TRITON_ENV or .venv-triton)")  # fmt: skip
    sv.add_argument("--models", default=None, help="comma-separated models to load (default: all it can run)")
    sv.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for readiness (default 120)")
    sv.add_argument("--log", type=Path, default=None, help="write the server's output to this file")
    sv.set_defaults(func=serve)


def export(args: argparse.Namespace) -> int:
    from edgepose.runner import parse_size
    from edgepose.triton.repo import ExportOptions, export_repository

    opt = ExportOptions(
        prefix=args.prefix, max_batch_size=args.max_batch_size, queue_delay_us=args.queue_delay_us,
        instances=args.instances, kind=args.kind, gpus=[int(g) for g in args.gpus.split(",") if g.strip()],
        tensorrt=args.tensorrt, trt_fp16=args.trt_precision == "fp16", trt_cache=args.trt_cache, threads=args.threads,
        size=parse_size(args.size, (0, 0)) if args.size else None, python_env=args.python_env,
        **({"max_pixels": args.max_pixels} if args.max_pixels is not None else {}),
    )  # fmt: skip
    names = export_repository(args.model, args.repo, opt, force=args.force)
    print(f"wrote {args.repo}: {', '.join(names)}")
    return 0


def serve(args: argparse.Namespace) -> int:
    from edgepose.triton.server import TritonServer, exposure_warning

    warn = exposure_warning(args.host)
    if warn:
        print(f"warning: {warn}", file=sys.stderr, flush=True)
    srv = TritonServer(args.repo, grpc_port=args.grpc_port, http_port=args.http_port, host=args.host,
                       env=args.triton_env, startup_timeout=args.startup_timeout, log_path=args.log, warn_exposure=False,
                       models=[m.strip() for m in args.models.split(",")] if args.models else None)  # fmt: skip
    stop = threading.Event()
    got: dict = {"signal": None}

    def handler(signum, _frame):
        got["signal"] = signum
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        srv.start()
        for name, why in srv.skipped.items():
            print(f"skipped {name}: {why}", file=sys.stderr)
        print(f"serving {', '.join(srv.loaded)} from {args.repo}", file=sys.stderr)
        print(f"ready: {srv.grpc_url} {srv.http_url}", flush=True)
        while not stop.wait(0.5):
            if srv.proc.poll() is not None:
                from edgepose.triton.server import log_tail

                print(f"error: tritonserver exited with status {srv.proc.returncode}:\n{log_tail(srv.log_text)}", file=sys.stderr)
                return 1
    finally:
        rc = srv.stop()
        for s, h in old.items():
            signal.signal(s, h)
    print(f"stopped (tritonserver exit status {rc})", file=sys.stderr)
    return 130 if got["signal"] == signal.SIGINT else 0
