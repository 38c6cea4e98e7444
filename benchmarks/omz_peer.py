"""The peer for Lightweight OpenPose: Intel's own pipeline on the same IR, against edgepose.

Intel's pipeline for ``human-pose-estimation-0001`` is the OpenVINO runtime plus the Open Model Zoo
model API's ``OpenPose`` wrapper (PyPI ``openvino-model-api``; the wrapper was dropped after 0.2.5.x,
which pins ``numpy<2`` and OpenVINO 2024.x), so it runs in its own venv, ``.venv-omz``
(``make omz-venv``), as a worker process this script talks to over stdin/stdout. The wrapper reshapes
the network to each frame's aspect ratio (height ``target_size``, width to the stride), resizes,
pads right, runs, max-pools the heatmaps for NMS and groups with its own ``OpenPoseDecoder``; it
returns COCO-17 keypoints.

What it measures, in one run (``make bench-lwop``):
- AP on coco-val-mini: the peer at its own default (target height 256, the IR's) and at edgepose's
  pixel budgets (small/default/large), and edgepose's converted models (fp32, int8) at those presets.
- Time per frame from a decoded frame to keypoints (pre-processing, inference, decoding; the video's
  decoding is done once, before, for both) on the 1080p video, same 2 threads, interleaved rounds:
  peer, edgepose fp32, edgepose int8, peer, ... so that drift on the machine hits all alike. edgepose is
  timed on its still-image path (``predict``: one area resize of the full frame) and on its video path
  (what ``edgepose run`` does per video frame: 2x2 halvings, then bilinear), and each network alone
  (the peer's: OpenVINO on the IR at the wrapper's input size) shows what the pipelines add.

Example:
    $ .venv/bin/python benchmarks/omz_peer.py --fp32 models/lwop.onnx --int8 models/lwop-int8.onnx
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
IR = DATA / "models" / "omz-human-pose-estimation-0001" / "FP16-INT8" / "human-pose-estimation-0001.xml"
VIDEO = DATA / "video" / "mmaction2__demo_skeleton.mp4"
COCO = DATA / "coco-val-mini"
OMZ_PY = ROOT / ".venv-omz" / "bin" / "python"

# pixel budgets of edgepose's presets for this model (its preferred size is 456x256)
BUDGETS = {"small": (320, 272), "default": (456, 256), "large": (656, 560)}


_FRAMES: dict[tuple[str, int], list] = {}


def _frames(video: str, n: int) -> list:
    """The first ``n`` frames of ``video``, decoded once per worker (decoding is not timed)."""
    import cv2

    if (video, n) not in _FRAMES:
        cap = cv2.VideoCapture(video)
        fr = []
        while len(fr) < n:
            ok, f = cap.read()
            if not ok:
                break
            fr.append(f)
        _FRAMES[(video, n)] = fr
    return _FRAMES[(video, n)]


# ------------------------------------------------------------------------------------------------
# The worker: runs in .venv-omz (OpenVINO 2024.x + openvino-model-api 0.2.5.x), imports no edgepose
# ------------------------------------------------------------------------------------------------


def _worker(xml: str, threads: int) -> None:  # pragma: no cover - runs in the peer's venv
    import cv2
    import numpy as np
    from model_api.adapters import OpenvinoAdapter, create_core
    from model_api.models import ImageModel

    class Adapter(OpenvinoAdapter):
        # 0.2.5.x's OpenPose wrapper concatenates the input shape with a list, but its adapter returns
        # tuples with current OpenVINO builds; shapes as lists, nothing else changed
        def get_input_layers(self):
            layers = super().get_input_layers()
            for meta in layers.values():
                meta.shape = list(meta.shape)
            return layers

    # ImageModel (0.2.x) embeds a resize/layout pre-processing into the network unless told it is
    # there already; OpenPose does its own resize, pad and NCHW transpose, so the IR stays as it is
    no_embed = {"embedded_processing": True, "orig_height": 256, "orig_width": 456,
                "confidence_threshold": 0.1}  # the OMZ demo's --prob_threshold default
    core = create_core()
    # what the OMZ demo's get_user_config(-d CPU -nstreams 1 -nthreads N) gives, plus the latency hint
    config = {"INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
    models: dict[tuple[int, float], object] = {}
    nets: dict[tuple, object] = {}  # the IR alone, compiled per input shape ("net" requests)

    def model_for(target: int, aspect: float):
        key = (target, round(aspect, 4))
        if key not in models:
            adapter = Adapter(core, xml, device="CPU", plugin_config=config, max_num_requests=1)
            models[key] = ImageModel.create_model(
                adapter, "OpenPose", {"target_size": target, "aspect_ratio": aspect, **no_embed}, preload=True)
        return models[key]

    def target_for(img, budget):
        if budget is None:
            return 256  # the wrapper's default: the IR's input height
        ih, iw = img.shape[:2]
        # a multiple of the stride: the wrapper pads the height up to one but sizes the width from the
        # unpadded target, and refuses a frame that then does not fit
        return max(16, round(math.sqrt(budget[0] * budget[1] * ih / iw) / 8) * 8)

    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "detect":
            res = []
            for path in req["images"]:
                img = cv2.imread(path)
                m = model_for(target_for(img, req.get("budget")), img.shape[1] / img.shape[0])
                poses, scores = m(img)
                res.append({"poses": np.asarray(poses).tolist(), "scores": np.asarray(scores).tolist()})
            out.write(json.dumps({"results": res}) + "\n")
        elif req["cmd"] == "time":
            fr = _frames(req["video"], req["frames"])
            m = model_for(target_for(fr[0], req.get("budget")), fr[0].shape[1] / fr[0].shape[0])
            for f in fr[: req.get("warmup", 3)]:
                m(f)
            ms, people = [], 0
            for f in fr:
                t0 = time.perf_counter()
                poses, _ = m(f)
                ms.append((time.perf_counter() - t0) * 1e3)
                people += len(poses)
            out.write(json.dumps({"ms": ms, "people": people, "input": [int(m.w), int(m.h)]}) + "\n")
        elif req["cmd"] == "net":  # the network alone, on the input size the wrapper picked for the video
            fr = _frames(req["video"], 1)
            m = model_for(target_for(fr[0], req.get("budget")), fr[0].shape[1] / fr[0].shape[0])
            shape = (1, 3, int(m.h), int(m.w))
            if shape not in nets:  # compiled once per input size, not every round
                ir = core.read_model(xml)
                ir.reshape(list(shape))
                nets[shape] = core.compile_model(ir, "CPU", config).create_infer_request()
            req_ = nets[shape]
            x = np.random.default_rng(0).uniform(0, 255, (1, 3, int(m.h), int(m.w))).astype(np.float32)
            ms = []
            for _ in range(req.get("warmup", 3) + req["frames"]):
                t0 = time.perf_counter()
                req_.infer({0: x})
                ms.append((time.perf_counter() - t0) * 1e3)
            out.write(json.dumps({"ms": ms[req.get("warmup", 3):]}) + "\n")
        out.flush()


def _edgepose_worker(model: str, device: str, threads: int, size: str | None = None) -> None:
    """Times edgepose in a process of its own (``--device openvino`` needs onnxruntime-openvino's venv).

    ``path`` in a request: ``image`` times ``PoseEstimator.predict`` (a still: one area resize of the
    full frame); ``video`` times what ``edgepose run`` does to each frame of a video (the stream's
    ``preprocess_image``: exact 2x2 halvings, then one bilinear resize; then inference and decoding);
    ``net`` the network alone on that frame's input."""
    import numpy as np

    from edgepose.runner import PoseEstimator
    from edgepose.stream.frames import preprocess_image

    est = PoseEstimator(model, device=device, threads=threads, size=size)
    bufs: dict = {}
    x = None

    def video_frame(f):
        nonlocal x
        x, box = preprocess_image(est, f, x, bufs, True)
        hm, paf = est.infer(x[None])
        return est.decode_maps(hm[0], paf[0], box)[0]

    for line in sys.stdin:
        req = json.loads(line)
        fr = _frames(req["video"], req["frames"])
        path = req.get("path", "image")
        if path == "net":
            xn = np.ascontiguousarray(preprocess_image(est, fr[0], None, {}, True)[0][None])
            step = lambda f, xn=xn: est.infer(xn)  # noqa: E731
        elif path == "video":
            step = video_frame
        else:
            step = lambda f: est.predict(f).people  # noqa: E731
        for f in fr[: req.get("warmup", 3)]:
            step(f)
        ms, people = [], 0
        for f in fr:
            t0 = time.perf_counter()
            r = step(f)
            ms.append((time.perf_counter() - t0) * 1e3)
            people += len(r) if path != "net" else 0
        sys.stdout.write(json.dumps({"ms": ms, "people": people, "providers": est.session.get_providers()}) + "\n")
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------------
# The driver: edgepose's venv
# ------------------------------------------------------------------------------------------------


class Peer:
    """A worker process: the peer in its venv (``--worker``), or edgepose in any venv (``--edgepose-worker``)."""

    def __init__(self, python: Path, args: list[str], hint: str = "run `make omz-venv`") -> None:
        if not python.exists():
            raise SystemExit(f"no Python at {python}: {hint}")
        self.proc = subprocess.Popen([str(python), __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT)  # fmt: skip

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer's worker ended (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def peer_ap(peer: Peer, budget) -> dict:
    from edgepose.evaluate import coco_ap

    gt = json.loads((COCO / "person_keypoints.json").read_text())
    imgs = gt["images"]
    res = peer.ask(cmd="detect", images=[str(COCO / "images" / im["file_name"]) for im in imgs], budget=budget)
    dets = []
    for im, r in zip(imgs, res["results"]):
        for pose, score in zip(r["poses"], r["scores"]):
            kp = []
            for x, y, s in pose:
                kp += [float(x), float(y), 1.0 if s > 0 else 0.0]
            if any(kp[2::3]):
                dets.append({"image_id": im["id"], "category_id": 1, "keypoints": kp, "score": float(score)})
    scores = coco_ap(gt, dets, [im["id"] for im in imgs])
    scores["detections"] = len(dets)
    return scores


def edgepose_ap(model: Path, size: str, threads: int) -> dict:
    """AP of edgepose on coco-val-mini at a preset (in this process: AP does not depend on timing)."""
    from edgepose.evaluate import evaluate
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model, device="cpu", threads=threads, size=size)
    s = evaluate(est, COCO / "person_keypoints.json", COCO / "images", progress=False)
    return {k: s[k] for k in ("AP", "AP50", "AP75", "AR", "detections")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--edgepose-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    p.add_argument("--xml", type=Path, default=IR, help="the IR (default: the shared FP16-INT8 one)")
    p.add_argument("--fp32", type=Path, default=ROOT / "models" / "lwop.onnx")
    p.add_argument("--int8", type=Path, default=ROOT / "models" / "lwop-int8.onnx")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=MODEL",
                   help="another edgepose build to time (and score), e.g. int8-nearest=build/lwop-int8n.onnx")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=40, help="video frames per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-ap", action="store_true", help="timing only")
    p.add_argument("--no-time", action="store_true", help="AP only")
    p.add_argument("--peer-python", type=Path, default=OMZ_PY)
    p.add_argument("--openvino-python", type=Path, default=ROOT / ".venv-ortov" / "bin" / "python",
                   help="a venv with onnxruntime-openvino and edgepose (make ortov-venv): adds edgepose rows with "
                        "--device openvino; skipped when missing")
    p.add_argument("--out", type=Path, help="JSON results")
    a = p.parse_args(argv)
    if a.worker:
        _worker(str(a.xml), a.threads)
        return 0
    if a.edgepose_worker:
        _edgepose_worker(a.model, a.device, a.threads, a.size)
        return 0

    import numpy as np

    from edgepose.bench.machine import machine_info

    builds = [("fp32", a.fp32), ("int8", a.int8)] + [(e.split("=", 1)[0], Path(e.split("=", 1)[1])) for e in a.extra]
    peer = Peer(a.peer_python, ["--worker", "--xml", str(a.xml), "--threads", str(a.threads)])
    report: dict = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "threads": a.threads, "ir": str(a.xml), "models": {k: str(v) for k, v in builds}}
    try:
        if not a.no_ap:
            ap: dict = {"omz@256 (its default)": peer_ap(peer, None)}
            for preset, budget in BUDGETS.items():
                ap[f"omz@{preset}"] = peer_ap(peer, budget)
                for name, model in builds:
                    ap[f"edgepose-{name}@{preset}"] = edgepose_ap(model, preset, a.threads)
            report["ap"] = ap
            for k, v in ap.items():
                print(f"AP {k:28s} {v['AP']:.3f}  (AP50 {v['AP50']:.3f}, {v['detections']} detections)")
        if not a.no_time:
            workers: dict[str, Peer] = {"omz": peer}
            for name, model in builds:
                workers[f"edgepose-{name}"] = Peer(Path(sys.executable), ["--edgepose-worker", "--model", str(model),
                                                                        "--threads", str(a.threads)])  # fmt: skip
            if a.openvino_python.exists():
                for name, model in builds:
                    workers[f"edgepose-{name}-openvino-ep"] = Peer(a.openvino_python, [
                        "--edgepose-worker", "--model", str(model), "--device", "openvino", "--threads", str(a.threads)])
            else:
                report["skipped"] = f"edgepose with the OpenVINO provider: no {a.openvino_python} (make ortov-venv)"
                print(report["skipped"])
            # each edgepose worker is timed three ways: its still-image path (predict), its video path (what
            # `edgepose run` does per frame of a video) and the network alone; the peer whole and its network
            tasks = [("omz", peer, {"cmd": "time"}), ("omz network alone", peer, {"cmd": "net"})]
            for k, w in workers.items():
                if k == "omz":
                    continue
                tasks += [(k, w, {"path": "image"}), (f"{k} video path", w, {"path": "video"}),
                          (f"{k} network alone", w, {"path": "net"})]
            runs: dict[str, list[float]] = {k: [] for k, _, _ in tasks}
            info: dict[str, dict] = {}
            for _ in range(a.rounds):
                for k, w, req in tasks:
                    r = w.ask(video=str(VIDEO), frames=a.frames, warmup=a.warmup, **req)
                    runs[k] += r["ms"]
                    info[k] = {key: r[key] for key in ("people", "input", "providers") if key in r}
            for w in workers.values():
                if w is not peer:
                    w.close()
            base = float(np.median(runs["omz"]))
            report["time_ms"] = {k: {"p50": float(np.median(v)), "mean": float(np.mean(v)), "p90": float(np.percentile(v, 90)),
                                     "ratio_to_omz_p50": float(np.median(v)) / base, **info[k]}
                                 for k, v in runs.items()}  # fmt: skip
            for k, v in report["time_ms"].items():
                print(f"time {k:44s} p50 {v['p50']:6.1f} ms  p90 {v['p90']:6.1f} ms  x{v['ratio_to_omz_p50']:.2f} of OMZ"
                      + (f"  ({v['people']} people in {a.frames} frames)" if "people" in v and "alone" not in k else ""))
    finally:
        peer.close()
    if a.out:
        from edgepose.fileio import write_json_atomic

        write_json_atomic(a.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
