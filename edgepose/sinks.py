"""Where results go: OpenPose JSON files, COCO results, rendered images and videos, JSON lines, MQTT.

All file writers write atomically (temporary file, then rename) or line by line with a flush, so
nothing already written is lost or half-written when a later input fails or the run is interrupted.

Every sink has ``consume(result, image)`` (the one call :mod:`edgepose.stream` makes for each
frame; ``image`` is the BGR frame, valid only during the call) and ``close()`` (flush, finish files).
Any object with these two methods can be a sink.

Example:
    >>> sink = OpenPoseJsonDir("out/json")  # doctest: +SKIP
    >>> sink.write(result)  # doctest: +SKIP
    >>> with JsonLinesSink("-") as jl:  # doctest: +SKIP
    ...     jl.consume(result, None)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edgepose.fileio import atomic_path, plain_path, write_json_atomic
from edgepose.redact import printable, redact
from edgepose.results import FrameResult, coco_results

log = logging.getLogger(__name__)

__all__ = [
    "Sink", "write_json_atomic", "frame_record", "OpenPoseJsonDir", "CocoWriter", "render", "RenderSink",
    "JsonLinesSink", "MqttSink", "parse_mqtt_url", "PerSource", "source_slug",
]  # fmt: skip


class Sink(Protocol):
    """What :func:`edgepose.stream.stream` needs from a sink (``needs_image = False`` lets the stream
    give a frame's buffer back before the sink sees it; a sink without the attribute gets images)."""

    needs_image: bool

    def consume(self, result: FrameResult, image: np.ndarray | None) -> None: ...

    def close(self) -> None: ...


def source_slug(name: str) -> str:
    """A source name as a file-name and MQTT-topic word: no scheme, no password, only ``[A-Za-z0-9._-]``.

    Example:
        >>> source_slug("rtsp://user:pw@10.0.0.7:554/Streaming/101")
        '10.0.0.7_554_Streaming_101'
        >>> source_slug("entrance.mp4#2")
        'entrance.mp4_2'
    """
    name = redact(name)  # a password with '/' or '@' in it never reaches a file or topic name
    rest = name.split("://", 1)[1] if "://" in name else name
    if "***@" in rest:
        rest = rest.split("***@", 1)[1]
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in rest).strip("._")
    while "__" in slug:
        slug = slug.replace("__", "_")
    return slug or "source"


class UniqueSlugs:
    """One :func:`source_slug` per source name, made unique: two names whose slugs collide
    (``cam 1.mp4`` and ``cam_1.mp4``) get ``cam_1.mp4`` and ``cam_1-2.mp4``, so no output is shared or
    overwritten. Stable: a name keeps its slug.

    Example:
        >>> slugs = UniqueSlugs()
        >>> slugs("cam 1.mp4"), slugs("cam_1.mp4"), slugs("cam 1.mp4"), slugs("rtsp://u:p@h/a_b"), slugs("rtsp://h/a/b")
        ('cam_1.mp4', 'cam_1-2.mp4', 'cam_1.mp4', 'h_a_b', 'h_a_b-2')
    """

    def __init__(self) -> None:
        self._by_name: dict[str, str] = {}
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        with self._lock:
            slug = self._by_name.get(name)
            if slug is None:
                base = slug = source_slug(name)
                stem, dot, ext = base.rpartition(".")
                if not (dot and stem and 1 <= len(ext) <= 5 and ext.isalnum()):  # keep a file extension last
                    stem, dot, ext = base, "", ""
                n = 1
                while slug in self._used:
                    n += 1
                    slug = f"{stem}-{n}{dot}{ext}"
                self._used.add(slug)
                self._by_name[name] = slug
            return slug


class PerSource:
    """One sink per source, made when the source's first frame comes: ``factory(slug)`` with the
    source's :func:`source_slug` (e.g. one OpenPose folder or one rendered video per camera).

    Example:
        >>> sink = PerSource(lambda slug: RenderSink(f"out/{slug}.mp4"))  # doctest: +SKIP
    """

    def __init__(self, factory, needs_image: bool | None = None) -> None:
        self.factory = factory
        self.sinks: dict[str, object] = {}
        self.slugs = UniqueSlugs()
        self.needs_image = needs_image if needs_image is not None else True
        self.name = "PerSource"

    def consume(self, result: FrameResult, image: np.ndarray | None) -> None:
        sink = self.sinks.get(result.source)
        if sink is None:
            sink = self.sinks[result.source] = self.factory(self.slugs(result.source))
            self.name = type(sink).__name__
        sink.consume(result, image)

    def close(self) -> None:
        errors = []
        for sink in self.sinks.values():
            try:
                sink.close()
            except Exception as e:  # close the others anyway
                errors.append(e)
        if errors:
            raise errors[0]


def frame_stem(result: FrameResult, per_frame: bool) -> str:
    stem = Path(result.source).stem or "frame"
    return f"{stem}_{result.index:012d}" if per_frame else stem


class OpenPoseJsonDir:
    """One OpenPose JSON file per frame: ``<image stem>_keypoints.json`` or
    ``<video stem>_<frame:012d>_keypoints.json`` (OpenPose's own naming)."""

    needs_image = False

    def __init__(self, folder: str | Path, per_frame: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.per_frame = per_frame

    def write(self, result: FrameResult) -> Path:
        return write_json_atomic(self.folder / f"{frame_stem(result, self.per_frame)}_keypoints.json",
                                 result.to_openpose_json())  # fmt: skip

    def consume(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        self.write(result)

    def close(self) -> None:
        pass


class CocoWriter:
    """COCO keypoint results (COCO-17 order) for a whole run, written on :meth:`close`.

    Args:
        path: output JSON file.
        image_ids: optional map from file name to COCO image id; otherwise the frame index is used.
    """

    needs_image = False

    def __init__(self, path: str | Path, image_ids: dict[str, int] | None = None) -> None:
        self.path = Path(path)
        self.image_ids = image_ids or {}
        self.items: list[dict] = []
        self.failures: list[dict] = []

    def write(self, result: FrameResult) -> None:
        image_id = self.image_ids.get(Path(result.source).name, result.index)
        if result.error:
            self.failures.append({"image_id": image_id, "source": result.source, "error": result.error})
        items = coco_results(result, image_id)
        for item, p in zip(items, result.people, strict=True):
            if p.id >= 0:
                item["track_id"] = int(p.id)  # PoseTrack's field; COCO tools ignore it
        self.items.extend(items)

    def consume(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        self.write(result)

    def close(self) -> Path:
        write_json_atomic(self.path, self.items)
        if self.failures:
            write_json_atomic(self.path.with_suffix(".failures.json"), self.failures)
        return self.path


def _colors(n: int) -> list[tuple[int, int, int]]:
    hsv = np.zeros((1, n, 3), np.uint8)
    hsv[0, :, 0] = np.linspace(0, 179, n, endpoint=False).astype(np.uint8)
    hsv[0, :, 1:] = 255
    return [tuple(int(c) for c in bgr) for bgr in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]]


def render(image: np.ndarray, result: FrameResult, thickness: int | None = None) -> np.ndarray:
    """Draw every person's skeleton on a copy of ``image`` (BGR)."""
    out = image.copy()
    lay = result.layout
    limbs = lay.drawn_limbs()
    colors = _colors(max(len(limbs), 1))
    t = thickness or max(2, round(max(out.shape[:2]) / 300))
    for p in result.people:
        kp = p.keypoints
        for (a, b), c in zip(limbs, colors, strict=False):
            if kp[a, 2] > 0 and kp[b, 2] > 0:
                cv2.line(out, (int(kp[a, 0]), int(kp[a, 1])), (int(kp[b, 0]), int(kp[b, 1])), c, t, cv2.LINE_AA)
        for x, y, s in kp:
            if s > 0:
                cv2.circle(out, (int(x), int(y)), t + 1, (255, 255, 255), -1, cv2.LINE_AA)
        if p.id >= 0:
            vis = kp[kp[:, 2] > 0]
            if len(vis):
                org = (int(vis[:, 0].min()), max(12, int(vis[:, 1].min()) - 6))
                cv2.putText(out, f"#{p.id}", org, cv2.FONT_HERSHEY_SIMPLEX, 0.4 + t / 6, (0, 255, 255), max(1, t // 2))
    return out


class RenderSink:
    """Rendered overlays: one image file, a folder of images, or a video file.

    Args:
        path: ``out.jpg`` (single image), a folder, or ``out.mp4`` (video).
        fps: frames per second of a video output.
    """

    needs_image = True

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        self.path = Path(path)
        self.fps = fps or 25.0
        suffix = self.path.suffix.lower()
        self.kind = "video" if suffix in (".mp4", ".avi", ".mkv", ".mov") else "image" if suffix else "dir"
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self._link_dir: str | None = None
        if self.kind == "dir":
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, image: np.ndarray, result: FrameResult) -> None:
        drawn = render(image, result)
        if self.kind == "video":
            if self._writer is None:
                stem = self.path.stem if printable(self.path.stem) == self.path.stem else "out"
                self._tmp = self.path.with_name(f".{stem}.partial{self.path.suffix}")
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() in (".mp4", ".mov") else "MJPG"))
                h, w = drawn.shape[:2]
                handed, self._link_dir = plain_path(self._tmp)  # OpenCV crashes on undecodable names
                self._writer = cv2.VideoWriter(str(handed), fourcc, self.fps, (w, h))
                if not self._writer.isOpened():
                    raise OSError(f"OpenCV cannot write video {self.path}")
                self._size = (w, h)
            if (drawn.shape[1], drawn.shape[0]) != self._size:
                drawn = cv2.resize(drawn, self._size)
            self._writer.write(drawn)
            return
        target = self.path if self.kind == "image" else self.path / f"{frame_stem(result, False)}_rendered.jpg"
        if self.kind == "dir" and result.timestamp is not None:
            target = self.path / f"{frame_stem(result, True)}_rendered.jpg"
        with atomic_path(target, keep_suffix=True) as tmp:
            if not cv2.imwrite(str(tmp), drawn):
                raise OSError(f"OpenCV cannot write {target}")

    def consume(self, result: FrameResult, image: np.ndarray | None) -> None:
        """Draw and write a frame that has an image (failed or skipped frames have none)."""
        if image is not None and result.ok:
            self.write(image, result)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if self._tmp is not None and self._tmp.exists():
                os.replace(self._tmp, self.path)
            if self._link_dir is not None:
                shutil.rmtree(self._link_dir, ignore_errors=True)


def frame_record(result: FrameResult, digits: int = 2) -> dict:
    """One frame as a JSON-ready dict (the JSON-lines and MQTT payload).

    Keys: ``frame`` (index), ``timestamp`` (seconds, or null), ``source``, ``width``, ``height``,
    ``layout``, ``people`` (each ``id``, ``score`` and ``keypoints``: flat ``x, y, score`` in image
    pixels, as OpenPose's ``pose_keypoints_2d``), ``timings_ms`` (per stage), ``latency_ms``
    (glass to result, when a stream set it) and, when present, ``error`` and ``warnings``.
    """
    rec = {
        "frame": int(result.index),
        "timestamp": None if result.timestamp is None else round(float(result.timestamp), 4),
        "source": result.source,
        "width": int(result.image_size[0]),
        "height": int(result.image_size[1]),
        "layout": result.layout.id,
        "people": [
            {"id": int(p.id), "score": round(float(p.score), 4),
             "keypoints": [round(float(v), digits) for v in p.keypoints.reshape(-1)]}
            for p in result.people
        ],
        "timings_ms": {k: round(float(v), 3) for k, v in result.timings.items()},
    }  # fmt: skip
    if result.latency_ms is not None:
        rec["latency_ms"] = round(float(result.latency_ms), 2)
    if result.error:
        rec["error"] = result.error
    if result.warnings:
        rec["warnings"] = list(result.warnings)
    return rec


class JsonLinesSink:
    """One JSON object per frame and line (see :func:`frame_record`), flushed after every line.

    Args:
        path: output file, or ``-`` for standard output.

    Example:
        >>> with JsonLinesSink("poses.jsonl") as sink:  # doctest: +SKIP
        ...     for r in est.stream("clip.mp4"):
        ...         sink.consume(r, None)
    """

    needs_image = False

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path == "-":
            self._f = sys.stdout
            self._own = False
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._own = True
        self.lines = 0

    def consume(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps(frame_record(result), separators=(",", ":")) + "\n")
        self._f.flush()
        self.lines += 1

    def close(self) -> None:
        if self._f is None:
            return
        try:
            self._f.flush()
            if self._own:
                os.fsync(self._f.fileno())
                self._f.close()
        finally:
            self._f = None

    def __enter__(self) -> JsonLinesSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class MqttTarget:
    """Where and how to publish: from ``[mqtt[s]://][USER[:PASSWORD]@]HOST[:PORT][/TOPIC]``."""

    host: str
    port: int
    topic: str
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:  # what logs and errors show: never the password
        user = f"{self.username}:***@" if self.password is not None else f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.topic}"


def parse_mqtt_target(url: str) -> MqttTarget:
    """``[mqtt://|mqtts://][USER[:PASSWORD]@]HOST[:PORT][/TOPIC]`` -> :class:`MqttTarget` (port 1883, 8883
    for ``mqtts://``; topic ``edgepose/poses``). The password may hold any character (``%XX`` escapes
    are decoded); errors quote the address redacted.

    Example:
        >>> parse_mqtt_target("mqtts://cam:s3cr@t@broker.local/site/cam1")
        MqttTarget(host='broker.local', port=8883, topic='site/cam1', tls=True, username='cam')
    """
    from urllib.parse import unquote

    shown = redact(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "mqtt", url
    scheme = scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT address {shown!r}: scheme must be mqtt:// or mqtts://, not {scheme}://")
    username = password = None
    at = rest.rfind("@")  # the userinfo ends at the last '@' (a password may hold '@', ':' or '/')
    if at != -1:
        cred, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = cred.partition(":")
        username, password = unquote(user), (unquote(pw) if colon else None)
    hostport, _, topic = rest.partition("/")
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    if not host:
        raise ValueError(f"MQTT address {shown!r} has no host (expected HOST[:PORT]/TOPIC)")
    try:
        port_n = int(port) if port else (8883 if scheme == "mqtts" else 1883)
    except ValueError:
        raise ValueError(f"MQTT address {shown!r}: port {port!r} is not a number") from None
    topic = topic or "edgepose/poses"
    if "+" in topic or "#" in topic:
        raise ValueError(f"MQTT topic {topic!r}: wildcards cannot be published to")
    return MqttTarget(host, port_n, topic, scheme == "mqtts", username, password)


def parse_mqtt_url(url: str) -> tuple[str, int, str]:
    """``[mqtt://]HOST[:PORT][/TOPIC]`` -> ``(host, port, topic)`` (:func:`parse_mqtt_target` without the
    credentials and TLS).

    Example:
        >>> parse_mqtt_url("broker.local:1884/site/cam1")
        ('broker.local', 1884, 'site/cam1')
    """
    t = parse_mqtt_target(url)
    return t.host, t.port, t.topic


def _import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError as e:
        raise ImportError("the MQTT sink needs paho-mqtt: pip install 'edgepose[mqtt]'") from e
    return mqtt


class MqttSink:
    """Publish one JSON message per frame (see :func:`frame_record`) to an MQTT broker.

    Connects when made (a broker that cannot be reached is an error at once); paho's network thread
    then reconnects by itself if the broker goes away. :meth:`close` waits until every message handed
    to paho has been sent (QoS 0) or acknowledged (QoS 1/2), up to ``flush_timeout`` seconds.

    Args:
        host, port, topic: where to publish; ``{source}`` in the topic is replaced by each frame's
            source (:func:`source_slug`): one topic per camera.
        qos: MQTT quality of service (0, 1 or 2).
        client_id: client id (default: ``edgepose-<pid>``).
        retain: publish with the retain flag (a late subscriber gets the last frame).
        max_queued: messages paho may hold while disconnected; more are dropped and counted.
        flush_timeout: seconds :meth:`close` waits for outstanding messages.
        username, password: the broker's login (sent only over the connection; never logged).
        tls: connect with TLS (``mqtts://``); ``ca_file`` the CA to trust (default: the system's),
            ``certfile``/``keyfile`` a client certificate for brokers that require one.

    Raises:
        ImportError: paho-mqtt is not installed (extra ``mqtt``).
        ConnectionError: the broker cannot be reached.

    Example:
        >>> sink = MqttSink(*parse_mqtt_url("localhost:1883/edgepose/cam1"))  # doctest: +SKIP
    """

    needs_image = False

    def __init__(
        self,
        host: str,
        port: int = 1883,
        topic: str = "edgepose/poses",
        *,
        qos: int = 0,
        client_id: str | None = None,
        retain: bool = False,
        keepalive: int = 30,
        max_queued: int = 1000,
        flush_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        mqtt = _import_paho()
        if qos not in (0, 1, 2):
            raise ValueError(f"MQTT qos must be 0, 1 or 2, not {qos}")
        self.host, self.port, self.topic, self.qos, self.retain = host, int(port), topic, qos, retain
        self.slugs = UniqueSlugs()
        self.flush_timeout = flush_timeout
        self.published = 0
        self.failed = 0
        self._pending: deque = deque()
        self._connected = threading.Event()
        cid = client_id or f"edgepose-{os.getpid()}"
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
            self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
        else:  # pragma: no cover - paho-mqtt 1.x
            self._client = mqtt.Client(client_id=cid)
        self._client.max_queued_messages_set(max_queued)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._refused: str | None = None
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls or ca_file or certfile:
            import ssl

            try:
                self._client.tls_set(ca_certs=ca_file, certfile=certfile, keyfile=keyfile,
                                     cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip
            except (OSError, ValueError, ssl.SSLError) as e:
                raise ValueError(f"MQTT TLS set-up failed (--mqtt-ca/--mqtt-cert/--mqtt-key): {e}") from None
        where = f"{'mqtts' if tls or ca_file or certfile else 'mqtt'}://{host}:{self.port}"
        try:
            self._client.connect(host, self.port, keepalive)
        except OSError as e:  # ssl.SSLError included: a certificate the CA did not sign, a wrong host name
            raise ConnectionError(f"cannot connect to the MQTT broker at {where}: {e}") from e
        self._client.loop_start()
        deadline = time.monotonic() + connect_timeout
        while not self._connected.wait(0.05) and self._refused is None and time.monotonic() < deadline:
            pass
        if not self._connected.is_set():
            self._client.loop_stop()
            if self._refused is not None:
                raise ConnectionError(f"the MQTT broker at {where} refused the connection: {self._refused}"
                                      + (" (check the user name and password)" if "authori" in self._refused.lower()
                                         or "password" in self._refused.lower() else ""))  # fmt: skip
            raise ConnectionError(f"the MQTT broker at {where} did not accept the connection "
                                  f"within {connect_timeout:.0f} s")  # fmt: skip
        log.info("publishing to %s/%s (QoS %d)", where, topic, qos)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not getattr(reason_code, "is_failure", bool(reason_code)):
            self._connected.set()
        else:
            self._refused = str(reason_code)
            log.warning("MQTT broker refused the connection: %s", reason_code)

    def _on_disconnect(self, client, userdata, *args) -> None:
        if self._connected.is_set():
            log.warning("MQTT broker %s:%d disconnected; paho reconnects by itself", self.host, self.port)
        self._connected.clear()

    def publish(self, payload: str | bytes, topic: str | None = None) -> bool:
        """Publish a payload; False (and counted in ``failed``) when paho refused it."""
        info = self._client.publish(topic or self.topic, payload, qos=self.qos, retain=self.retain)
        if info.rc != 0:
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                log.warning("MQTT publish failed (rc %s; %d failed so far)", info.rc, self.failed)
            return False
        self._pending.append(info)
        while self._pending and self._pending[0].is_published():
            self._pending.popleft()
            self.published += 1
        return True

    def consume(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        topic = self.topic.replace("{source}", self.slugs(result.source)) if "{source}" in self.topic else None
        self.publish(json.dumps(frame_record(result), separators=(",", ":")), topic)

    def close(self) -> None:
        """Wait for outstanding messages (up to ``flush_timeout``), then disconnect."""
        import time

        deadline = time.monotonic() + self.flush_timeout
        while self._pending:
            info = self._pending[0]
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                info.wait_for_publish(timeout=min(left, 1.0))
            except (RuntimeError, ValueError):  # not queued any more (paho 2 raises when disconnected)
                pass
            if info.is_published():
                self._pending.popleft()
                self.published += 1
        if self._pending:
            self.failed += len(self._pending)
            log.warning("MQTT: %d message(s) not confirmed before closing", len(self._pending))
            self._pending.clear()
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
