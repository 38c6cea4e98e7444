"""``edgepose run SOURCE``: an image, a folder of images, a video file, a camera index, an RTSP/HTTP
URL or a GStreamer pipeline, through the pipelined stream (:mod:`edgepose.stream`).

Nothing stops at one bad input: a frame that fails is recorded (in the JSON outputs and the
summary), the run goes on, and the exit status is 1 when anything failed (a failed or corrupt
frame, a source lost or ended early, a sink that could not write). SIGINT/SIGTERM stop reading,
finish the frames already read and flush every output; a second signal drops what is in flight.
After SIGINT the exit status is 130; after SIGTERM it is that of a normal end (a service stop).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from edgepose.commands import add_model_args, apply_max_pixels, estimator_from_args
from edgepose.redact import printable, redact

log = logging.getLogger(__name__)

#: failures listed one by one after the summary (the rest are counted)
MAX_LISTED = 20


def _mqtt_sink(args: argparse.Namespace):
    """The MQTT sink of ``--mqtt`` and its login/TLS options; the password from a file, the environment
    (``EDGEPOSE_MQTT_PASSWORD``, ``EDGEPOSE_MQTT_USERNAME``) or the URL, in that order."""
    import os

    from edgepose.sinks import MqttSink, parse_mqtt_target

    t = parse_mqtt_target(args.mqtt)
    username = t.username or os.environ.get("EDGEPOSE_MQTT_USERNAME")
    password = t.password
    if os.environ.get("EDGEPOSE_MQTT_PASSWORD") is not None:
        password = os.environ["EDGEPOSE_MQTT_PASSWORD"]
    if args.mqtt_password_file:
        try:
            password = args.mqtt_password_file.read_text().splitlines()[0] if args.mqtt_password_file.stat().st_size else ""
        except OSError as e:
            raise ValueError(f"cannot read --mqtt-password-file {args.mqtt_password_file}: {e.strerror}") from None
    if password is not None and username is None:
        raise ValueError("an MQTT password needs a user name (mqtt://USER@HOST/... or $EDGEPOSE_MQTT_USERNAME)")
    return MqttSink(t.host, t.port, t.topic, qos=args.mqtt_qos, username=username, password=password, tls=t.tls,
                    ca_file=args.mqtt_ca, certfile=args.mqtt_cert, keyfile=args.mqtt_key)  # fmt: skip


def _print_failures(st, out, limit: int | None) -> None:
    """The failures after the summary: up to ``limit`` listed, and how many were not (the stream keeps
    the first 1000 messages; ``st.failed`` counts them all)."""
    shown = st.failures if limit is None else st.failures[:limit]
    for _, err in shown:
        print(f"  failed: {printable(err)}", file=out)
    rest = st.failed - len(shown)
    if rest > 0:
        print(f"  ... and {rest} more failures not listed", file=out)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="+", help="image, folder, video file, camera index (0, 1, ...), RTSP/HTTP URL or "
                   "GStreamer pipeline; several videos, cameras or URLs run in one process (one capture thread each, "
                   "shared inference, per-source ids and counts; one failing never stops the others)")  # fmt: skip
    add_model_args(p)
    out = p.add_argument_group("outputs")
    out.add_argument("--json-dir", type=Path, help="write one OpenPose JSON file per frame into this folder")
    out.add_argument("--coco-out", type=Path, help="write COCO keypoint results (COCO-17 order) to this file")
    out.add_argument("--render", type=Path, help="write rendered overlays: an image file, a folder, or a video file (.mp4)")
    out.add_argument("--jsonl", metavar="FILE|-", help="one JSON line per frame (index, timestamp, people with ids, "
                     "timings) to a file or - for standard output")  # fmt: skip
    out.add_argument("--mqtt", metavar="[mqtt[s]://][USER@]HOST[:PORT]/TOPIC",
                     help="publish each frame's JSON line to an MQTT broker (needs the mqtt extra); {source} in TOPIC: "
                          "one topic per source; mqtts:// for TLS (port 8883)")  # fmt: skip
    out.add_argument("--mqtt-qos", type=int, choices=(0, 1, 2), default=0, help="MQTT quality of service (default 0)")
    out.add_argument("--mqtt-password-file", type=Path, metavar="FILE",
                     help="the MQTT password, first line of FILE (else $EDGEPOSE_MQTT_PASSWORD, else the URL's; "
                          "keep it out of the command line, which `ps` shows)")  # fmt: skip
    out.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate(s) to trust for mqtts:// (default: the system's)")
    out.add_argument("--mqtt-cert", metavar="FILE", help="client certificate for brokers that require one (mqtts://)")
    out.add_argument("--mqtt-key", metavar="FILE", help="its private key (if not in --mqtt-cert)")
    out.add_argument("--stats-json", type=Path, help="write the run's counts, timings and threads as JSON")
    out.add_argument("--preview", metavar="[HOST:]PORT", help="live view in the browser: rendered frames (MJPEG), "
                     "people, fps and latency per source; loopback unless HOST is given (e.g. 0.0.0.0:8080)")  # fmt: skip
    out.add_argument("--preview-auth", metavar="token:SECRET|basic:USER:PASS",
                     help="require a token (Bearer header, or ?token= once) or a login for the live view (default "
                          "$EDGEPOSE_PREVIEW_AUTH, which keeps it out of `ps`)")  # fmt: skip
    out.add_argument("--preview-allow-host", action="append", default=[], metavar="NAME",
                     help="a Host name the live view answers besides loopback and its address (repeatable; "
                          "others get 403: DNS rebinding)")  # fmt: skip
    st = p.add_argument_group("streaming")
    st.add_argument("--realtime", action="store_true", help="keep only the newest frame when inference falls "
                    "behind (drops are counted); files are read at their frame rate")  # fmt: skip
    st.add_argument("--loop", action="store_true", help="start a video file again at its end")
    st.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    st.add_argument("--workers", type=int, default=None, metavar="N", help="inference threads calling the model at "
                    "once, frames kept in order (default for video, cameras and streams in offline mode: 2, with the cores "
                    "shared out between them, or as many as the cores allow with --threads; 1 otherwise)")  # fmt: skip
    st.add_argument("--batch", type=int, default=1, metavar="N", help="frames (of several sources) one inference "
                    "call may take at once, of those already waiting (default 1: on a 2-core CPU a batch was slower "
                    "per frame, docs/streaming.md; try the number of cameras on a GPU)")  # fmt: skip
    st.add_argument("--queue-size", type=int, default=2, metavar="N", help="capacity of each queue between stages (default 2)")
    st.add_argument("--decode-threads", type=int, default=None, metavar="N",
                    help="FFmpeg threads decoding the video (default: 1 for a file when inference uses every core, "
                    "else FFmpeg's choice)")  # fmt: skip
    st.add_argument("--video-backend", choices=("auto", "opencv", "pyav"), default="auto",
                    help="how video files are decoded: auto uses PyAV (extra `video`) for 4:2:0 files when no sink "
                    "needs full-size frames, so only the network-sized picture is converted to BGR (default auto)")  # fmt: skip
    st.add_argument("--reconnect-tries", type=int, default=15, metavar="N",
                    help="reopen a source that stops at most N times in a row (default 15: about 15 s of "
                    "patience with the default delays; 0: never)")  # fmt: skip
    st.add_argument("--reconnect-delay", type=float, default=0.5, metavar="S",
                    help="first back-off before reopening, doubled each try up to --reconnect-max-delay (default 0.5)")  # fmt: skip
    st.add_argument("--reconnect-max-delay", type=float, default=1.0, metavar="S",
                    help="longest back-off between reopen attempts (default 1: a camera that comes back is "
                    "picked up within about a second plus the time to open it)")  # fmt: skip
    st.add_argument("--timeout", type=float, default=10.0, metavar="S", help="open/read time-out of network streams (default 10)")
    st.add_argument("--rtsp-transport", choices=("auto", "udp", "tcp"), default="auto",
                    help="RTSP transport: udp, tcp (through firewalls and NAT) or auto (FFmpeg's choice) (default auto)")  # fmt: skip
    tr = p.add_argument_group("tracking")
    tr.add_argument("--no-track", action="store_true", help="no person ids (default: ids for video, cameras, streams)")
    tr.add_argument("--track-max-age", type=int, default=10, metavar="N", help="frames a person may be missing and keep "
                    "the same id (default 10)")  # fmt: skip
    tr.add_argument("--smooth", action="store_true", help="One-Euro smoothing of tracked keypoints")
    tr.add_argument("--smooth-min-cutoff", type=float, default=1.0, metavar="HZ", help="One-Euro cut-off at rest (default 1.0)")
    tr.add_argument("--smooth-beta", type=float, default=0.02, help="One-Euro speed coefficient (default 0.02)")
    sv = p.add_argument_group("Triton server (the network and decoding run there; see docs/triton.md)")
    sv.add_argument("--server", metavar="URL[,URL...]", help="grpc[s]://HOST:PORT or http[s]://HOST:PORT of one or more "
                    "Triton servers serving an `edgepose triton export` repository (frames spread over the healthy ones)")  # fmt: skip
    sv.add_argument("--server-ca", default=None, metavar="FILE", help="PEM certificate authorities for grpcs:// and "
                    "https:// servers (default: the system's)")  # fmt: skip
    sv.add_argument("--server-header", action="append", default=[], metavar="NAME=VALUE", help="a header sent with "
                    "every request (an API key, a bearer token); repeatable; values are never logged")  # fmt: skip
    sv.add_argument("--server-model", default=None, metavar="ensemble|pipeline|NAME",
                    help="force a model (default: the ensemble when ready, else the pipeline)")  # fmt: skip
    sv.add_argument("--wire", choices=("raw", "jpeg", "png"), default="raw", help="raw: letterboxed uint8 frames "
                    "(exact); jpeg/png: frames encoded (thin links) (default raw)")  # fmt: skip
    sv.add_argument("--jpeg-quality", type=int, default=90, metavar="Q", help="JPEG quality of --wire jpeg (default 90)")
    sv.add_argument("--server-timeout", type=float, default=10.0, metavar="S",
                    help="wait this long for a server to be ready, or to come back (default 10)")  # fmt: skip
    sv.add_argument("--server-prefix", default="edgepose", help="model-name prefix of the repository (default edgepose)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _sinks(args: argparse.Namespace, kind: str, fps: float, multi: bool = False) -> list:
    from edgepose.sinks import (
        CocoWriter,
        JsonLinesSink,
        OpenPoseJsonDir,
        PerSource,
        RenderSink,
    )

    made: list = []
    try:
        if getattr(args, "preview", None) is not None:  # first: a port in use fails before anything else
            import os

            from edgepose.preview import PreviewSink, parse_bind

            auth = args.preview_auth or os.environ.get("EDGEPOSE_PREVIEW_AUTH") or None
            made.append(PreviewSink(*parse_bind(args.preview), auth=auth, allow_hosts=args.preview_allow_host))
            print(f"live view: {made[-1].url}", file=sys.stderr)
        if args.mqtt:  # first: an unreachable broker fails before any file is created
            made.append(_mqtt_sink(args))
        if args.json_dir:
            if multi:  # one folder per source
                made.append(PerSource(lambda slug: OpenPoseJsonDir(args.json_dir / slug, per_frame=True), False))
            else:
                made.append(OpenPoseJsonDir(args.json_dir, per_frame=kind not in ("image", "folder")))
        if args.coco_out:
            made.append(CocoWriter(args.coco_out))
        if args.render and multi:  # out.mp4 -> out_<source>.mp4; a folder -> one sub-folder per source
            r = args.render
            made.append(PerSource(lambda slug: RenderSink(r.with_name(f"{r.stem}_{slug}{r.suffix}") if r.suffix
                                                          else r / slug, fps=fps or 25.0)))  # fmt: skip
        elif args.render:
            if kind == "folder" and args.render.suffix:
                raise ValueError("--render must be a folder when the source is a folder")
            made.append(RenderSink(args.render, fps=fps or 25.0))
        if args.jsonl:
            made.append(JsonLinesSink(args.jsonl))
    except BaseException:
        for s in made:
            s.close()
        raise
    return made


def _choose_workers(args: argparse.Namespace, kind: str) -> None:
    """Offline video on a CPU: two inferences at once with half the cores each keep the cores busy while
    frames are read and decoded; one session using every core stalls whenever another thread runs
    (see benchmarks/stream_bench.py). Realtime mode keeps one worker: lower latency per frame."""
    if args.workers is not None:
        return
    if args.realtime or kind in ("image", "folder"):
        args.workers = 1
        return
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if args.threads is None:
        args.workers = 2
        args.threads = max(1, cores // 2)
    else:  # the threads asked for, and as many workers (up to 2) as the cores allow
        args.workers = max(1, min(2, cores // max(1, args.threads)))


def _smoothing(args: argparse.Namespace):
    """One-Euro smoothing from the options, or None."""
    if not args.smooth:
        return None
    if args.no_track:
        raise ValueError("--smooth needs tracking (drop --no-track)")
    from edgepose.tracking import Smoothing

    return Smoothing(min_cutoff=args.smooth_min_cutoff, beta=args.smooth_beta)


def _reconnect(args: argparse.Namespace):
    """The reopening policy from the options."""
    from edgepose.sources import Reconnect

    return Reconnect(tries=max(0, args.reconnect_tries), delay=max(0.0, args.reconnect_delay),
                     max_delay=max(0.0, args.reconnect_max_delay))  # fmt: skip


def run(args: argparse.Namespace) -> int:
    apply_max_pixels(args)
    from edgepose.sources import classify, open_source
    from edgepose.stream import Stream
    from edgepose.tune.profile import apply_to_args

    apply_to_args(args)  # --profile: model, device, size, threads, workers ... (before the workers are chosen)
    specs = list(args.source)
    if len(specs) > 1:
        return _run_many(args, specs)
    args.source = specs[0]
    kind = classify(args.source)  # raises SourceError for a missing path
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError("--max-frames must be at least 1")
    if args.server:
        if args.workers is None:  # requests in flight: set from the servers once they are known
            args.workers = 0
    else:
        _choose_workers(args, kind)
    if args.workers < (0 if args.server else 1) or args.queue_size < 1 or args.batch < 1:
        raise ValueError("--workers, --batch and --queue-size must be at least 1")
    smoothing = _smoothing(args)
    reconnect = _reconnect(args)
    source = open_source(args.source, loop=args.loop, pace=args.realtime, reconnect=reconnect, timeout_s=args.timeout,
                         decode_threads=args.decode_threads, backend=args.video_backend,
                         rtsp_transport=args.rtsp_transport)  # fmt: skip
    source.open()  # an unopenable source fails before the model is loaded
    try:
        if args.server:
            from edgepose.triton.client import RemoteEstimator

            est = RemoteEstimator(args.server, model=args.server_model, wire=args.wire, size=args.size,
                                  jpeg_quality=args.jpeg_quality, prefix=args.server_prefix, timeout=args.server_timeout,
                                  ca_file=args.server_ca, headers=args.server_header)  # fmt: skip
            args.workers = args.workers or (1 if kind == "image" else est.in_flight)
        else:
            est = estimator_from_args(args)
        print(f"model {est.model_path.name} on {', '.join(est.providers)}, input budget {est.budget[0]}x{est.budget[1]}"
              f"{f', {args.workers} inference workers x {est.threads} threads' if args.workers > 1 else ''}",
              file=sys.stderr)  # fmt: skip
        try:
            sinks = _sinks(args, kind, getattr(source, "fps", 0.0))
        except ConnectionError as e:
            print(f"error: {e}", file=sys.stderr)
            source.close()
            return 2
        stream = Stream(est, source, realtime=args.realtime, sinks=sinks, track=False if args.no_track else None,
                        smoothing=smoothing, max_age=args.track_max_age, max_frames=args.max_frames,
                        queue_size=args.queue_size, workers=args.workers, batch=args.batch)  # fmt: skip
    except BaseException:
        source.close()
        raise
    total = source.stats.expected if not args.loop else None
    if args.max_frames:
        total = min(total, args.max_frames) if total else args.max_frames
    return _results(args, stream, est, sources=[args.source], kinds=[kind], total=total)


def _run_many(args: argparse.Namespace, specs: list[str]) -> int:
    """Several videos, cameras or URLs: one stream with one capture thread per source."""

    from edgepose.sources import classify
    from edgepose.stream import Stream

    kinds = [classify(s) for s in specs]  # a missing path is an error before anything starts
    if any(k in ("image", "folder") for k in kinds):
        raise ValueError("several sources must be videos, cameras or URLs (run images and folders one at a time)")
    if args.server:
        raise ValueError("--server takes one source at a time")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError("--max-frames must be at least 1")
    _choose_workers(args, kinds[0])
    if args.workers < 1 or args.queue_size < 1 or args.batch < 1:
        raise ValueError("--workers, --batch and --queue-size must be at least 1")
    smoothing = _smoothing(args)
    est = estimator_from_args(args)
    print(f"model {est.model_path.name} on {', '.join(est.providers)}, input budget {est.budget[0]}x{est.budget[1]}, "
          f"{len(specs)} sources, {args.workers} inference worker(s) x {est.threads} threads", file=sys.stderr)  # fmt: skip
    try:
        sinks = _sinks(args, "stream", 25.0, multi=True)
    except ConnectionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reconnect = _reconnect(args)
    stream = Stream(est, sources=specs, realtime=args.realtime, sinks=sinks, track=False if args.no_track else None,
                    smoothing=smoothing, max_age=args.track_max_age, max_frames=args.max_frames, loop=args.loop,
                    queue_size=args.queue_size, workers=args.workers, batch=args.batch, reconnect=reconnect,
                    timeout_s=args.timeout,
                    decode_threads=args.decode_threads, backend=args.video_backend,
                    rtsp_transport=args.rtsp_transport)  # fmt: skip
    return _results(args, stream, est, sources=specs, kinds=kinds, total=None)


def _results(args: argparse.Namespace, stream, est, *, sources: list[str], kinds: list[str], total: int | None) -> int:
    """The one result loop of ``run``, for one source or several: a progress bar, a line per skipped
    input (every one for pictures, the first MAX_LISTED for streams), warnings, a line per picture;
    then the summary (per source when there are several), drops, mean step times, servers, failures,
    ``--stats-json``; the exit status (130 after SIGINT, 1 when anything failed)."""
    from tqdm import tqdm

    from edgepose.stream import DROP_REASONS, stop_on_signals

    images = kinds[0] in ("image", "folder")
    several = len(sources) > 1
    out = sys.stderr if args.jsonl == "-" else sys.stdout  # stdout carries the JSON lines then
    bar = tqdm(total=total, unit="input" if images else "frame", file=sys.stderr,
               disable=args.no_progress or kinds[0] == "image")  # fmt: skip
    listed = 0
    with stop_on_signals(stream) as got:
        try:
            for r in stream:
                if not r.ok:
                    listed += 1
                    if images or listed <= MAX_LISTED:
                        bar.write(f"skipped {printable(r.error)}", file=out)
                else:
                    for w in r.warnings:
                        bar.write(f"warning: {w}", file=out)
                    if images:
                        t = r.timings  # no decode stage where the estimator decodes inside inference (server, scales)
                        dec = f", decode {t['decode']:.2f} ms" if "decode" in t else ""
                        bar.write(f"{r.source}: {len(r.people)} people (inference {t.get('inference', 0.0):.1f} ms{dec})",
                                  file=out)  # fmt: skip
                # one source's bar counts its dropped frames too (by index); several sources' indexes interleave
                bar.update(1 if images or several else max(1, r.index + 1 - bar.n))
        finally:
            bar.close()
    st = stream.stats
    if images:
        print(f"summary: {st.read} inputs, {st.processed} processed, {st.failed} failed, {st.people} people found",
              file=out)  # fmt: skip
    else:
        print(f"summary: {st.summary()}", file=out)
    for name, d in st.sources.items() if several else ():
        drops = ", ".join(f"{n} {k}" for k, n in sorted(d["dropped"].items()) if n)
        lat = d["latency_ms"]
        lat_s = f", latency p50 {lat['p50']:.0f} ms p99 {lat['p99']:.0f} ms" if lat else ""
        drop_s = f", dropped {drops}" if drops else ""
        lost_s = " (LOST)" if d["source_lost"] else ""
        print(f"  {name}: {d['read']} read, {d['processed']} processed, {d['failed']} failed{drop_s}, "
              f"{d['people']} people{lat_s}; {d['source_ended'] or 'running'}{lost_s}", file=out)  # fmt: skip
    if not images:
        for reason, n in sorted(st.dropped.items()):
            print(f"  dropped: {n} {reason} ({DROP_REASONS.get(reason, reason)})", file=out)
        if st.stage_ms:
            print(f"  mean ms per frame: {', '.join(f'{k} {v:.1f}' for k, v in st.stage_ms.items())}", file=out)
    for line in getattr(est, "summary", lambda: [])():  # per server, for a remote estimator
        print(f"  server {line}", file=out)
    _print_failures(st, out, None if images else MAX_LISTED)
    if args.stats_json:
        from edgepose.fileio import write_json_atomic

        names = [printable(redact(str(s))) for s in sources]
        write_json_atomic(args.stats_json, {"source": names if several else names[0], "kind": kinds if several else kinds[0],
                                            "realtime": args.realtime, **st.to_dict(),
                                            **({"servers": est.server_stats()} if args.server else {})})  # fmt: skip
    if got["signal"] == signal.SIGINT:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if st.ok else 1
