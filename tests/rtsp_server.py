"""A real RTSP server on loopback for the tests and benchmarks: GStreamer's RTSP server (Debian's
``gir1.2-gst-rtsp-server-1.0`` with ``python3-gi``, run with the *system* Python) serving H.264
encoded live from a video file, looped forever, as one or more cameras.

The file is decoded once (scaled to ``--size`` at ``--fps``), and each mount pushes its pictures
through ``appsrc ! x264enc ! rtph264pay`` at the frame rate with live timestamps, so the stream
behaves like a camera: it never ends, a client that joins late gets the current picture.

Prints ``rtsp://HOST:PORT/MOUNT`` (one line per mount) once it accepts connections, then serves
until SIGTERM or SIGINT.

Usage::

    /usr/bin/python3 tests/rtsp_server.py VIDEO [--port 0] [--mounts cam0,cam1] [--size 640x360]
        [--fps 25] [--user NAME:PASSWORD]
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402

assert GstApp  # registers appsrc/appsink's Python bindings


def decode_file(path: str, width: int, height: int, fps: int) -> list[bytes]:
    """Every picture of ``path`` as I420 bytes at ``width`` x ``height``, resampled to ``fps``."""
    pipe = Gst.parse_launch(
        f'filesrc location="{path}" ! decodebin ! videoconvert ! videoscale ! videorate ! '
        f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 ! "
        "appsink name=sink sync=false emit-signals=false"
    )
    sink = pipe.get_by_name("sink")
    pipe.set_state(Gst.State.PLAYING)
    frames = []
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if ok:
            frames.append(bytes(info.data))
            buf.unmap(info)
    pipe.set_state(Gst.State.NULL)
    if not frames:
        raise SystemExit(f"rtsp_server: no pictures decoded from {path}")
    return frames


class Camera(GstRtspServer.RTSPMediaFactory):
    """One mount: the decoded pictures looped at the frame rate, encoded to H.264 for every client."""

    def __init__(self, frames: list[bytes], width: int, height: int, fps: int) -> None:
        super().__init__()
        self.frames, self.fps = frames, fps
        self.caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        self.set_shared(True)

    def do_create_element(self, url):
        launch = (
            f"( appsrc name=src is-live=true format=time do-timestamp=false caps={self.caps} ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={self.fps} bitrate=1500 ! "
            "video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        return Gst.parse_launch(launch)

    def do_configure(self, media):
        src = media.get_element().get_child_by_name("src")
        state = {"n": 0}
        dur = Gst.SECOND // self.fps

        def need_data(appsrc, _length):
            n = state["n"]
            buf = Gst.Buffer.new_wrapped(self.frames[n % len(self.frames)])
            buf.pts = buf.dts = n * dur
            buf.duration = dur
            state["n"] = n + 1
            appsrc.emit("push-buffer", buf)

        src.connect("need-data", need_data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (the URL printed says which)")
    ap.add_argument("--mounts", default="cam0", help="comma-separated mount names (default cam0)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--user", default=None, metavar="NAME:PASSWORD", help="require Basic authentication")
    args = ap.parse_args()
    Gst.init(None)
    w, h = (int(v) for v in args.size.lower().split("x"))
    frames = decode_file(args.video, w, h, args.fps)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    names = [m.strip() for m in args.mounts.split(",") if m.strip()]
    for name in names:
        factory = Camera(frames, w, h, args.fps)
        if args.user:
            factory.add_role_from_structure(Gst.Structure.from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
        mounts.add_factory(f"/{name}", factory)
    if args.user:
        user, _, password = args.user.partition(":")
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 2
    port = server.get_bound_port()
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    for name in names:
        print(f"rtsp://{args.host}:{port}/{name}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
