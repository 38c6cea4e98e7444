"""``edgepose run SOURCE``: an image, a folder of images, a video file, a camera index or a stream.

Nothing stops at one bad input: a frame that fails is recorded (in the JSON outputs and the
summary), the run goes on, and the exit status is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edgepose.commands import add_model_args, estimator_from_args

log = logging.getLogger(__name__)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="image, folder, video file, camera index (0, 1, ...), RTSP/HTTP URL or GStreamer pipeline")
    add_model_args(p)
    p.add_argument("--json-dir", type=Path, help="write one OpenPose JSON file per frame into this folder")
    p.add_argument("--coco-out", type=Path, help="write COCO keypoint results (COCO-17 order) to this file")
    p.add_argument("--render", type=Path, help="write rendered overlays: an image file, a folder, or a video file (.mp4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edgepose.results import FrameResult
    from edgepose.sinks import CocoWriter, OpenPoseJsonDir, RenderSink
    from edgepose.sources import classify, frame_count, iter_frames

    kind = classify(args.source)  # raises SourceError for a missing path
    est = estimator_from_args(args)
    print(f"model {est.model_path.name} on {', '.join(est.providers)}, input budget {est.budget[0]}x{est.budget[1]}",
          file=sys.stderr)  # fmt: skip
    per_frame = kind not in ("image", "folder")
    json_sink = OpenPoseJsonDir(args.json_dir, per_frame=per_frame) if args.json_dir else None
    coco_sink = CocoWriter(args.coco_out) if args.coco_out else None
    render_sink = None
    if args.render:
        render_path = args.render
        if kind == "folder" and render_path.suffix:
            raise ValueError("--render must be a folder when the source is a folder")
        render_sink = RenderSink(render_path, fps=_fps(args.source, kind))
    total = frame_count(args.source)
    counts = {"frames": 0, "ok": 0, "failed": 0, "people": 0}
    failures: list[tuple[str, str]] = []
    bar = tqdm(total=total, unit="frame", disable=args.no_progress or kind == "image", file=sys.stderr)
    try:
        for frame in iter_frames(args.source):
            counts["frames"] += 1
            if frame.error is None:
                try:
                    result = est.predict(frame.image, index=frame.index, source=frame.name, read_ms=frame.read_ms)
                    result.timestamp = frame.timestamp
                    result.warnings[:0] = frame.warnings
                except Exception as e:  # a frame that breaks the model must not end the run
                    log.exception("frame %s failed", frame.name)
                    frame.error = f"{frame.name}: {type(e).__name__}: {e}"
            if frame.error is not None:
                result = FrameResult(people=[], image_size=(0, 0), layout=est.layout, index=frame.index,
                                     source=frame.name, error=frame.error)  # fmt: skip
                failures.append((frame.name, frame.error))
                counts["failed"] += 1
                bar.write(f"skipped {frame.error}")
            else:
                counts["ok"] += 1
                counts["people"] += len(result.people)
                for w in result.warnings:
                    bar.write(f"warning: {w}")
            if json_sink:
                json_sink.write(result)
            if coco_sink:
                coco_sink.write(result)
            if render_sink and result.ok:
                render_sink.write(frame.image, result)
            if kind in ("image", "folder") and result.ok:
                t = result.timings
                bar.write(f"{frame.name}: {len(result.people)} people "
                          f"(inference {t['inference']:.1f} ms, decode {t['decode']:.2f} ms)")  # fmt: skip
            bar.update(1)
    finally:
        bar.close()
        for sink in (json_sink, coco_sink, render_sink):
            if sink:
                sink.close()
    print(f"summary: {counts['frames']} inputs, {counts['ok']} processed, {counts['failed']} failed, "
          f"{counts['people']} people found")  # fmt: skip
    for name, err in failures:
        print(f"  failed: {err}")
    return 1 if failures else 0


def _fps(source, kind: str) -> float:
    if kind not in ("video", "camera", "stream"):
        return 25.0
    import cv2

    cap = cv2.VideoCapture(int(source) if kind == "camera" else str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.release()
    return fps if 1 <= fps <= 240 else 25.0
