"""The remote estimator: frames go to one or more Triton servers, people come back.

:class:`RemoteEstimator` has the local :class:`edgepose.runner.PoseEstimator`'s interface
(``predict``, ``predict_batch``, ``stream``, ``letterbox``, ``preprocess``, ``layout``) and plugs
into the same :class:`edgepose.stream.Stream`, sinks and tracking. The server decodes, so instead of
``infer`` + ``decode_maps`` it offers ``infer_people`` (the stream's hook for estimators that return
people). Several requests are in flight at once: one per stream worker (``in_flight``).

With several servers, each request goes to the healthy server with the fewest requests in flight;
a server that fails (unreachable, dying, stopping) is taken out and retried with a doubling
back-off, and the frame is resent to another server: no frame is lost or answered twice.
A request the server refuses (a malformed frame) fails that frame only. :meth:`summary` counts
per server.

Secure connections: ``grpcs://`` and ``https://`` servers are reached over TLS, verified against the
system's certificate authorities or ``ca_file``; ``headers`` go with every request (an API key or a
bearer token for a gateway, or the secret of Triton's restricted-API options). Header values never
appear in logs or errors: any message that would hold one says ``***`` instead.

Example:
    >>> est = RemoteEstimator("grpc://127.0.0.1:8001,grpc://127.0.0.1:9001")  # doctest: +SKIP
    >>> for r in est.stream("clip.mp4"):  # doctest: +SKIP
    ...     print(r.index, len(r.people))
    >>> print("\\n".join(est.summary()))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from edgepose.imageio import ImageError, to_bgr8
from edgepose.meta import ModelMeta
from edgepose.results import FrameResult, Person
from edgepose.runner import Letterbox, fit_size, parse_size
from edgepose.triton.repo import META_KEY, model_names
from edgepose.triton.server import ServerError
from edgepose.triton.wire import (
    FRAME,
    IMAGE_BYTES,
    IMAGE_SIZE,
    KEYPOINTS,
    LETTERBOX,
    SCORES,
    box_to_array,
    letterbox_frame,
)

log = logging.getLogger(__name__)

__all__ = ["RemoteEstimator", "RequestError", "ServerError", "parse_servers", "parse_headers", "WIRES", "SCHEMES"]

#: client-side wire choices: raw letterboxed uint8, or the frame encoded as JPEG / PNG (bytes format)
WIRES = ("raw", "jpeg", "png")
#: server URL schemes: gRPC and HTTP, plain or over TLS
SCHEMES = ("grpc", "grpcs", "http", "https")
#: gRPC / HTTP conditions that mean "this server is gone", not "this request is bad"
_DOWN_CODES = ("UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED")
_DOWN_WORDS = ("connect", "socket closed", "broken pipe", "reset by peer", "server is stopping", "unavailable", "eof")


class RequestError(ValueError):
    """The server refused this request (its message is kept as is); the server itself is fine."""


def _tc(scheme: str):
    try:
        if scheme.startswith("grpc"):
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
        from tritonclient.utils import InferenceServerException
    except ImportError as e:
        raise ImportError("the Triton client needs tritonclient: pip install 'edgepose[triton]'") from e
    return mod, InferenceServerException


def _message(e: Exception) -> str:
    m = e.message() if callable(getattr(e, "message", None)) else None
    return str(m or e)


def parse_headers(items: list[str] | dict[str, str] | None) -> dict[str, str]:
    """``["Authorization=Bearer x", "X-Key=y"]`` -> a dict (a dict is checked and returned).

    Raises:
        ValueError: an item without ``=``, or a name that is not a plain header name (the message
            never holds the value).
    """
    if not items:
        return {}
    pairs = list(items.items()) if isinstance(items, dict) else []
    for i, item in enumerate([] if isinstance(items, dict) else items, 1):
        name, sep, value = str(item).partition("=")
        if not sep:
            raise ValueError(f"server header {i} must be NAME=VALUE (it has no '=')")
        pairs.append((name, value))
    out = {}
    for name, value in pairs:
        name = name.strip()
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"server header name {name!r} must be letters, digits, '-' or '_'")
        if any(c in str(value) for c in "\r\n\0"):
            raise ValueError(f"server header {name!r}: its value holds a line break or NUL")
        out[name] = str(value)
    return out


def parse_servers(spec: str | list[str]) -> list[tuple[str, str]]:
    """``"grpc://h:p,https://h2:p2"`` -> ``[("grpc", "h:p"), ("https", "h2:p2")]`` (grpc, grpcs, http, https)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for s in (x.strip() for x in items):
        if not s:
            continue
        u = urlsplit(s if "://" in s else f"grpc://{s}")
        try:
            port = u.port
        except ValueError:
            port = None
        if u.scheme not in SCHEMES or not u.hostname or not port or u.username or u.password:
            shown = u._replace(netloc=f"***@{u.hostname}" + (f":{port}" if port else "")).geturl() if u.username else s
            raise ValueError(f"server must be grpc[s]://HOST:PORT or http[s]://HOST:PORT (credentials go in "
                             f"--server-header), not {shown!r}")  # fmt: skip
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        out.append((u.scheme, f"{host}:{port}"))
    if not out:
        raise ValueError("no server given")
    return out


@dataclass
class _Endpoint:
    scheme: str
    address: str
    up: bool = False
    retry_at: float = 0.0
    delay: float = 0.0
    in_flight: int = 0
    frames: int = 0
    failures: int = 0
    outages: int = 0
    resent: int = 0
    refused: int = 0
    last_error: str = ""
    local: threading.local = field(default_factory=threading.local)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"


class RemoteEstimator:
    """Frames in, people out, computed by Triton servers.

    Args:
        servers: ``grpc://HOST:PORT`` / ``http://HOST:PORT``, comma-separated or a list.
        model: ``ensemble`` or ``pipeline`` (the repository's models of that role), a model name,
            or None: the ensemble when a server has it ready, else the pipeline.
        wire: ``raw`` (letterboxed uint8, exact), ``jpeg`` or ``png`` (the frame encoded; bytes format).
        size: pixel budget for the raw format (default: the model's preferred size).
        jpeg_quality: JPEG quality of the ``jpeg`` wire.
        prefix: the repository's model-name prefix.
        timeout: seconds to wait for a first server to be ready, and for a lost one to come back
            before a frame fails.
        request_timeout: seconds one request may take.
        retry_delay, max_retry_delay: back-off before a failed server is tried again (doubling).
        in_flight: requests in flight at once in :meth:`stream` and :meth:`predict_batch`.
        ca_file: PEM certificate authorities that sign the ``grpcs``/``https`` servers' certificates
            (default: the system's).
        headers: ``{name: value}`` or ``["NAME=VALUE", ...]`` sent with every request; the values are
            never logged nor put in an error message.

    Raises:
        ServerError: no server ready within ``timeout``, or the model is not available there (the
            server's own message is included).
    """

    def __init__(self, servers: str | list[str], *, model: str | None = None, wire: str = "raw",
                 size: str | tuple[int, int] | None = None, jpeg_quality: int = 90, prefix: str = "edgepose",
                 timeout: float = 10.0, request_timeout: float = 30.0, retry_delay: float = 0.5,
                 max_retry_delay: float = 8.0, in_flight: int | None = None, ca_file: str | Path | None = None,
                 headers: dict[str, str] | list[str] | None = None) -> None:  # fmt: skip
        if wire not in WIRES:
            raise ValueError(f"wire must be one of {', '.join(WIRES)}, not {wire!r}")
        self.headers = parse_headers(headers)
        self._secrets = sorted({v for v in self.headers.values() if v}, key=len, reverse=True)
        self.ca_file = str(ca_file) if ca_file else None
        if self.ca_file and not Path(self.ca_file).is_file():
            raise FileNotFoundError(f"no CA file at {self.ca_file}")
        self.endpoints = [_Endpoint(s, a) for s, a in parse_servers(servers)]
        for ep in self.endpoints:
            _tc(ep.scheme)
        self.wire = wire
        self.jpeg_quality = int(jpeg_quality)
        self.timeout = float(timeout)
        self.request_timeout = float(request_timeout)
        self.retry_delay = float(retry_delay)
        self.max_retry_delay = float(max_retry_delay)
        self._lock = threading.Condition()
        self._all_down_since: float | None = None
        first = self._first_ready()
        self.model_name = self._choose_model(first, model, prefix)
        cfg = self._call(first, lambda c: c.get_model_config(self.model_name, headers=self.headers))
        self.meta = self._meta_from_config(cfg)
        self.layout = self.meta.layout
        self.budget = parse_size(size, self.meta.input_size)
        self.threads = 1
        self.providers = [f"triton:{self.model_name}@{ep.url}" for ep in self.endpoints]
        self.model_path = Path(self.meta.extra.get("source_file", self.model_name))
        self.in_flight = int(in_flight or max(2, 2 * len(self.endpoints)))
        for ep in self.endpoints:  # the others are checked when first used
            if ep is not first:
                ep.up = self._ready(ep, quick=True)
                if not ep.up:
                    self._take_out(ep, "not ready at start")
        log.info("Triton model %s on %s (%s wire)", self.model_name, ", ".join(e.url for e in self.endpoints), wire)

    # -- connections --------------------------------------------------------------------------------
    def _client(self, ep: _Endpoint):
        c = getattr(ep.local, "client", None)
        if c is None:  # one per thread: the HTTP client is not thread-safe
            mod, _ = _tc(ep.scheme)
            if ep.scheme.startswith("http"):
                tls = {"ssl": True, "ssl_options": {"ca_certs": self.ca_file} if self.ca_file else None} \
                    if ep.scheme == "https" else {}  # fmt: skip
                c = mod.InferenceServerClient(ep.address, network_timeout=self.request_timeout, **tls)
            else:
                tls = {"ssl": True, "root_certificates": self.ca_file} if ep.scheme == "grpcs" else {}  # a file name
                c = mod.InferenceServerClient(ep.address, **tls)
            ep.local.client = c
        return c

    def _scrub(self, text: str) -> str:
        """``text`` with every header value replaced by ``***``."""
        for v in self._secrets:
            text = text.replace(v, "***")
        return text

    def _call(self, ep: _Endpoint, fn):
        _, exc = _tc(ep.scheme)
        try:
            return fn(self._client(ep))
        except exc as e:
            raise RequestError(self._scrub(f"{ep.url}: {_message(e)}")) from None

    def _ready(self, ep: _Endpoint, quick: bool = False) -> bool:
        try:
            return bool(self._client(ep).is_server_ready(headers=self.headers))
        except Exception as e:  # refused connection, DNS, TLS, ...
            ep.last_error = self._scrub(f"{type(e).__name__}: {_message(e)}")
            return False

    def _first_ready(self) -> _Endpoint:
        deadline = time.monotonic() + self.timeout
        while True:
            for ep in self.endpoints:
                if self._ready(ep):
                    ep.up = True
                    return ep
            if time.monotonic() >= deadline:
                why = "; ".join(f"{e.url}: {e.last_error or 'not ready'}" for e in self.endpoints)
                raise ServerError(f"no Triton server ready after {self.timeout:.0f} s ({why})")
            time.sleep(0.2)

    def _choose_model(self, ep: _Endpoint, model: str | None, prefix: str) -> str:
        names = model_names(prefix)
        encoded = self.wire != "raw"
        roles = {"ensemble": names["ensemble_bytes" if encoded else "ensemble"], "pipeline": names["pipeline"]}
        if model is None:
            ens = roles["ensemble"]
            if self._model_ready(ep, ens):
                return ens
            if self._model_ready(ep, roles["pipeline"]):
                return roles["pipeline"]
            raise ServerError(f"{ep.url} has neither {ens} nor {roles['pipeline']} ready "
                              f"(export with `edgepose triton export`, prefix {prefix!r})")  # fmt: skip
        name = roles.get(model, model)
        if self._model_ready(ep, name):
            return name
        try:  # explicit model control: ask the server, and show its answer as it is
            self._call(ep, lambda c: c.load_model(name, headers=self.headers))
        except RequestError as e:
            raise ServerError(f"model {name} is not available on {ep.url}: {e}") from None
        if not self._model_ready(ep, name):
            raise ServerError(f"model {name} is not ready on {ep.url}")
        return name

    def _model_ready(self, ep: _Endpoint, name: str) -> bool:
        try:
            return bool(self._client(ep).is_model_ready(name, headers=self.headers))
        except Exception:
            return False

    def _meta_from_config(self, cfg) -> ModelMeta:
        if not isinstance(cfg, dict):  # gRPC: a response message with .config
            from google.protobuf import json_format

            cfg = json_format.MessageToDict(cfg.config, preserving_proto_field_name=True)
        params = cfg.get("parameters", {})
        raw = params.get(META_KEY, {}).get("string_value")
        if not raw:
            raise ServerError(f"model {self.model_name} carries no edgepose metadata "
                              f"(its config has no {META_KEY!r} parameter): export it with `edgepose triton export`")  # fmt: skip
        return ModelMeta.from_props(json.loads(raw), f"model {self.model_name}")

    # -- the pool -----------------------------------------------------------------------------------
    def _take_out(self, ep: _Endpoint, why: str) -> None:
        with self._lock:
            if ep.up or ep.delay == 0:
                ep.outages += 1
                log.warning("%s taken out: %s", ep.url, why)
            ep.up = False
            ep.last_error = why
            ep.delay = min(self.max_retry_delay, ep.delay * 2 if ep.delay else self.retry_delay)
            ep.retry_at = time.monotonic() + ep.delay
            if not any(e.up for e in self.endpoints) and self._all_down_since is None:
                self._all_down_since = time.monotonic()
            self._lock.notify_all()

    def _pick(self, avoid: set[int]) -> _Endpoint:
        with self._lock:
            while True:
                now = time.monotonic()
                usable = [e for e in self.endpoints if (e.up or e.retry_at <= now) and id(e) not in avoid]
                if not usable:  # every server was tried for this frame: any whose back-off is over
                    usable = [e for e in self.endpoints if e.up or e.retry_at <= now]
                if usable:
                    ep = min(usable, key=lambda e: (not e.up, e.in_flight, e.frames))
                    if not ep.up:
                        ep.retry_at = now + ep.delay  # one probe at a time
                    ep.in_flight += 1
                    return ep
                down_for = now - (self._all_down_since or now)
                if down_for >= self.timeout:
                    raise ServerError("every Triton server is down: " +
                                      "; ".join(f"{e.url}: {e.last_error}" for e in self.endpoints))  # fmt: skip
                wake = min(e.retry_at for e in self.endpoints)
                self._lock.wait(max(0.01, min(wake - now, self.timeout - down_for)))

    def _is_down(self, e: Exception) -> bool:
        _, exc = _tc("grpc")
        if isinstance(e, exc):
            status = str(e.status() or "")
            msg = (e.message() or "").lower()
            if any(c in status for c in _DOWN_CODES):
                return True
            return not status and any(w in msg for w in _DOWN_WORDS)
        return isinstance(e, (OSError, ConnectionError)) or "connect" in str(e).lower()

    def _request(self, fn) -> tuple[object, _Endpoint]:
        """Run ``fn(client, module)`` on a healthy server; resend elsewhere when that server fails."""
        tried: set[int] = set()
        while True:
            ep = self._pick(tried)
            tried.add(id(ep))
            try:
                mod, _ = _tc(ep.scheme)
                res = fn(self._client(ep), mod)
            except Exception as e:
                with self._lock:
                    ep.in_flight -= 1
                if self._is_down(e):
                    ep.failures += 1
                    ep.resent += 1
                    self._take_out(ep, self._scrub(f"{type(e).__name__}: {_message(e)}"))
                    continue
                with self._lock:
                    ep.refused += 1
                raise RequestError(self._scrub(f"{ep.url}: {_message(e)}")) from None
            with self._lock:
                ep.in_flight -= 1
                ep.frames += 1
                if not ep.up:
                    log.warning("%s is back", ep.url)
                ep.up, ep.delay = True, 0.0
                self._all_down_since = None
            return res, ep

    # -- the estimator interface --------------------------------------------------------------------
    def letterbox(self, w: int, h: int) -> Letterbox:
        nw, nh, pw, ph = fit_size(w, h, self.budget, self.meta.stride)
        return Letterbox((w, h), (nw, nh), (pw, ph))

    def preprocess(self, image: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
        """BGR uint8 (H, W, 3) -> what goes on the wire and its letterbox: the padded network-size frame
        (ph, pw, 3) uint8 for ``raw``; the frame itself for ``jpeg``/``png`` (encoded when sent)."""
        img = to_bgr8(image)
        h, w = img.shape[:2]
        box = self.letterbox(w, h)
        if self.wire != "raw":
            return img, box
        return letterbox_frame(img, box, out), box

    def infer_people(self, x: np.ndarray, box: Letterbox) -> tuple[list[Person], list[str]]:
        """What :meth:`preprocess` gave -> people in ``box.src`` pixels (one request, resent on failure)."""
        if self.wire == "raw":
            arrays = {FRAME: (x[None], "UINT8"), LETTERBOX: (box_to_array(box)[None], "INT32")}
            sent = box.src
        else:
            data = self.encode(x)
            arrays = {IMAGE_BYTES: (np.array([[data]], dtype=np.object_), "BYTES")}
            sent = (x.shape[1], x.shape[0])
        kps, scores = self._infer_arrays(arrays)
        if sent != box.src:  # the stream shrank the frame before it was encoded: back to the original's pixels
            vis = kps[..., 2] > 0
            for i in (0, 1):
                kps[..., i] = np.where(vis, (kps[..., i] + 0.5) * (box.src[i] / sent[i]) - 0.5, 0.0)
        return [Person(keypoints=kps[i], score=float(scores[i])) for i in range(len(scores))], []

    def encode(self, img: np.ndarray) -> bytes:
        """The ``jpeg``/``png`` wire's encoding of a BGR frame."""
        ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]) if self.wire == "jpeg" else (".png", [])
        ok, buf = cv2.imencode(ext, img, params)
        if not ok:
            raise ImageError(f"cannot encode the frame as {ext}")
        return buf.tobytes()

    def _infer_arrays(self, arrays: dict[str, tuple[np.ndarray, str]]) -> tuple[np.ndarray, np.ndarray]:
        def fn(client, mod):
            inputs = []
            for name, (a, dtype) in arrays.items():
                t = mod.InferInput(name, list(a.shape), dtype)
                t.set_data_from_numpy(a)
                inputs.append(t)
            outs = [mod.InferRequestedOutput(KEYPOINTS), mod.InferRequestedOutput(SCORES)]
            kw = {"client_timeout": self.request_timeout} if "grpc" in mod.__name__ else {}
            return client.infer(self.model_name, inputs, outputs=outs, headers=self.headers, **kw)

        res, _ = self._request(fn)
        kps = np.array(res.as_numpy(KEYPOINTS)[0], np.float32)
        scores = np.array(res.as_numpy(SCORES)[0], np.float32)
        return kps, scores

    def predict_bytes(self, data: bytes, *, index: int = 0, source: str = "") -> FrameResult:
        """People in an encoded picture sent as it is (a JPEG/PNG file's own bytes): needs a bytes-format
        model (``wire`` ``jpeg``/``png``, or the pipeline)."""
        if self.wire == "raw" and not self.model_name.endswith("_pipeline"):
            raise ValueError(f"{self.model_name} takes raw frames; make the estimator with wire='jpeg' or 'png'")
        t0 = time.perf_counter()
        arrays = {IMAGE_BYTES: (np.array([[bytes(data)]], dtype=np.object_), "BYTES")}

        def fn(client, mod):
            t = mod.InferInput(IMAGE_BYTES, [1, 1], "BYTES")
            t.set_data_from_numpy(arrays[IMAGE_BYTES][0])
            outs = [mod.InferRequestedOutput(n) for n in (KEYPOINTS, SCORES, IMAGE_SIZE)]
            return client.infer(self.model_name, [t], outputs=outs, headers=self.headers)

        res, _ = self._request(fn)
        kps, scores = res.as_numpy(KEYPOINTS)[0], res.as_numpy(SCORES)[0]
        w, h = (int(v) for v in res.as_numpy(IMAGE_SIZE)[0])
        people = [Person(keypoints=np.array(kps[i], np.float32), score=float(scores[i])) for i in range(len(scores))]
        ms = (time.perf_counter() - t0) * 1e3
        return FrameResult(people=people, image_size=(w, h), layout=self.layout, index=index, source=source,
                           timings={"read": 0.0, "preprocess": 0.0, "inference": ms, "decode": 0.0})  # fmt: skip

    def predict(self, image: np.ndarray, *, index: int = 0, source: str = "", read_ms: float = 0.0) -> FrameResult:
        """Estimate the poses in one frame (one request)."""
        t0 = time.perf_counter()
        x, box = self.preprocess(image)
        t1 = time.perf_counter()
        people, warnings = self.infer_people(x, box)
        t2 = time.perf_counter()
        return FrameResult(people=people, image_size=box.src, layout=self.layout, index=index, source=source,
                           warnings=warnings, timings={"read": read_ms, "preprocess": (t1 - t0) * 1e3,
                                                       "inference": (t2 - t1) * 1e3, "decode": 0.0})  # fmt: skip

    def predict_batch(self, images: list[np.ndarray], *, index: int = 0, source: str = "",
                      read_ms: float = 0.0) -> list[FrameResult]:  # fmt: skip
        """Several frames, ``in_flight`` requests at once; results in the frames' order."""
        if len(images) <= 1:
            return [self.predict(img, index=index + i, source=source, read_ms=read_ms) for i, img in enumerate(images)]
        with ThreadPoolExecutor(min(self.in_flight, len(images))) as pool:
            futs = [pool.submit(self.predict, img, index=index + i, source=source, read_ms=read_ms / len(images))
                    for i, img in enumerate(images)]  # fmt: skip
            return [f.result() for f in futs]

    def stream(self, source, **kw):
        """One :class:`FrameResult` per frame of any source through :class:`edgepose.stream.Stream`,
        with ``in_flight`` requests in flight (the stream's ``workers``)."""
        from edgepose.stream import stream

        kw.setdefault("workers", self.in_flight)
        return stream(self, source, **kw)

    def infer(self, batch: np.ndarray):
        raise TypeError("a RemoteEstimator returns people, not maps: the server decodes (use infer_people)")

    def decode_maps(self, hm, paf, box, *, workspace=None):
        raise TypeError("a RemoteEstimator returns people, not maps: the server decodes (use infer_people)")

    # -- reporting ----------------------------------------------------------------------------------
    def server_stats(self) -> list[dict]:
        """Per server: frames answered, failures, outages (times taken out), frames resent elsewhere,
        requests refused, and whether it is up now."""
        return [{"server": e.url, "frames": e.frames, "failures": e.failures, "outages": e.outages,
                 "resent": e.resent, "refused": e.refused, "up": e.up,
                 **({"last_error": e.last_error} if e.last_error else {})} for e in self.endpoints]  # fmt: skip

    def summary(self) -> list[str]:
        """One line per server for the closing summary."""
        lines = []
        for s in self.server_stats():
            extra = []
            if s["outages"]:
                extra.append(f"taken out {s['outages']}x, {s['resent']} frames resent elsewhere")
            if s["refused"]:
                extra.append(f"{s['refused']} requests refused")
            if not s["up"]:
                extra.append(f"down: {s.get('last_error', '')}")
            lines.append(f"{s['server']} ({self.model_name}): {s['frames']} frames" + (f"; {'; '.join(extra)}" if extra else ""))
        return lines

    def __repr__(self) -> str:
        return f"RemoteEstimator({','.join(e.url for e in self.endpoints)!r}, model={self.model_name!r}, wire={self.wire!r})"
