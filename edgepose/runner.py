"""The pose estimator: an ONNX Runtime session, pre-processing, the decoder and timings.

Example:
    >>> from edgepose import PoseEstimator
    >>> est = PoseEstimator("models/mobilenet_thin.onnx", device="cpu")  # doctest: +SKIP
    >>> result = est.predict(cv2.imread("people.jpg"))  # doctest: +SKIP
    >>> [p.score for p in result.people]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgepose._ort import ort
from edgepose.decode import DecoderConfig, Workspace, decode
from edgepose.imageio import ImageError, to_bgr8
from edgepose.meta import HEATMAPS, INPUT, PAFS, MetadataError, ModelMeta
from edgepose.providers import DeviceSpec, resolve
from edgepose.results import FrameResult, Person
from edgepose.session import session_options

log = logging.getLogger(__name__)

__all__ = ["PoseEstimator", "SIZE_PRESETS", "Letterbox", "ModelError", "fit_size", "parse_size"]

#: input-size presets as pixel budgets ``(w, h)``; ``default`` is the model's preferred size
SIZE_PRESETS: dict[str, tuple[int, int] | None] = {
    "small": (320, 272),
    "default": None,
    "large": (656, 560),
}


class ModelError(ValueError):
    """The model file cannot be used by edgepose; the message says why."""


def parse_size(size: str | tuple[int, int] | None, preferred: tuple[int, int]) -> tuple[int, int]:
    """A preset name, ``"WxH"`` or ``(w, h)`` -> the pixel budget ``(w, h)``."""
    if size is None:
        return preferred
    if isinstance(size, str):
        if size in SIZE_PRESETS:
            return SIZE_PRESETS[size] or preferred
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"size must be one of {', '.join(SIZE_PRESETS)} or WxH, not {size!r}") from None
        size = (w, h)
    w, h = size
    if w < 16 or h < 16:
        raise ValueError(f"input size {w}x{h} is too small (at least 16x16)")
    return int(w), int(h)


def fit_size(w: int, h: int, budget: tuple[int, int], stride: int) -> tuple[int, int, int, int]:
    """Scale ``w x h`` keeping its aspect ratio so the stride-padded size fits ``budget`` pixels.

    Returns:
        ``(new_w, new_h, padded_w, padded_h)``.
    """
    area = budget[0] * budget[1]
    s = math.sqrt(area / (w * h))
    limit = 16 * max(budget)  # keep extreme aspect ratios sane
    while True:
        nw = max(1, min(limit, round(w * s)))
        nh = max(1, min(limit, round(h * s)))
        pw, ph = -(-nw // stride) * stride, -(-nh // stride) * stride
        if pw * ph <= area or s < 1e-6:
            return nw, nh, pw, ph
        s *= 0.99


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the network input: resized to ``resized`` and padded right/bottom."""

    src: tuple[int, int]  # (w, h) of the original frame
    resized: tuple[int, int]  # (w, h) after resizing
    padded: tuple[int, int]  # (w, h) of the network input

    def map_to_image(self, kp: np.ndarray, stride: int) -> np.ndarray:
        """Map-space ``(x, y, score)`` (..., 3) -> original-image pixels, in place."""
        sx = self.resized[0] / self.src[0]
        sy = self.resized[1] / self.src[1]
        off = (stride - 1) / 2.0  # centre of a map cell in input pixels
        vis = kp[..., 2] > 0
        kp[..., 0] = np.where(vis, ((kp[..., 0] * stride + off) + 0.5) / sx - 0.5, 0.0)
        kp[..., 1] = np.where(vis, ((kp[..., 1] * stride + off) + 0.5) / sy - 0.5, 0.0)
        return kp


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class PoseEstimator:
    """Frames in, people out: the local ONNX Runtime :class:`edgepose.estimator.Estimator`.

    Args:
        model: path to an edgepose ONNX model (any variant).
        device: ``auto``, ``cpu``, ``cuda[:N]``, ``tensorrt[:N][+fp16]`` or ``openvino``.
        threads: intra-op threads for the CPU provider (default: all cores this process may use).
        size: input-size preset (``small``, ``default``, ``large``), ``"WxH"`` or ``(w, h)``: a pixel
            budget; frames keep their aspect ratio and are padded to the stride.
        decoder: decoder thresholds (see :class:`edgepose.decode.DecoderConfig`).

    Raises:
        FileNotFoundError: no model at ``model``.
        ModelError: not an ONNX model, no edgepose metadata, or outputs that disagree with it.
        ProviderUnavailable: the device's provider is not in this onnxruntime build.

    Example:
        >>> est = PoseEstimator("models/mobilenet_thin.onnx", device="cpu", threads=2)  # doctest: +SKIP
        >>> est.providers  # doctest: +SKIP
        ['CPUExecutionProvider']
    """

    def __init__(
        self,
        model: str | Path = "models/mobilenet_thin.onnx",
        device: str = "auto",
        threads: int | None = None,
        size: str | tuple[int, int] | None = None,
        decoder: DecoderConfig | None = None,
    ) -> None:
        self.model_path = Path(model)
        if not self.model_path.is_file():
            raise FileNotFoundError(
                f"no model at {self.model_path}; build the default one with `make model` "
                "(or `edgepose convert tfpose`)"
            )
        data = self.model_path.read_bytes()
        self.model_sha256 = hashlib.sha256(data).hexdigest()
        self.threads = threads or _default_threads()
        self.device: DeviceSpec = resolve(device, model_sha=self.model_sha256, threads=self.threads)
        so = session_options(self.threads)
        try:
            self.session = ort.InferenceSession(
                data, so, providers=self.device.providers, provider_options=self.device.provider_options
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{self.model_path}: onnxruntime cannot load it: {e}") from e
        del data
        try:
            self.meta = ModelMeta.from_props(self.session.get_modelmeta().custom_metadata_map, str(self.model_path))
        except MetadataError as e:
            raise ModelError(str(e)) from e
        self._check_io()
        self.providers: list[str] = self.session.get_providers()
        log.info("%s on %s (active providers: %s)", self.model_path.name, self.device.word, ", ".join(self.providers))
        if self.device.providers[0] not in self.providers:
            log.warning("requested %s but the session runs on %s", self.device.providers[0], self.providers)
        self.layout = self.meta.layout
        self.budget = parse_size(size, self.meta.input_size)
        self.decoder = decoder or DecoderConfig()
        self._workspace = Workspace()
        self._buf: np.ndarray | None = None
        self._pad_value = (0.0 - self.meta.mean) * self.meta.scale

    # -- set-up -------------------------------------------------------------------------------
    def _check_io(self) -> None:
        ins = self.session.get_inputs()
        outs = {o.name: o for o in self.session.get_outputs()}
        if len(ins) != 1 or ins[0].name != INPUT:
            raise ModelError(f"{self.model_path}: expected one input named {INPUT!r}, got {[i.name for i in ins]}")
        lay = self.meta.layout
        for name, want in ((HEATMAPS, lay.heatmap_channel_count), (PAFS, lay.paf_channel_count)):
            if name not in outs:
                raise ModelError(f"{self.model_path}: no output named {name!r} (outputs: {list(outs)})")
            got = outs[name].shape[1] if len(outs[name].shape) == 4 else None
            if isinstance(got, int) and got != want:
                raise ModelError(
                    f"{self.model_path}: output {name!r} has {got} channels but layout {lay.id} needs {want}"
                )
        c = ins[0].shape[1] if len(ins[0].shape) == 4 else None
        if isinstance(c, int) and c != 3:
            raise ModelError(f"{self.model_path}: input has {c} channels, expected 3")

    @property
    def input_size(self) -> tuple[int, int]:
        """The pixel budget ``(w, h)`` frames are fitted into."""
        return self.budget

    # -- stages -------------------------------------------------------------------------------
    def letterbox(self, w: int, h: int) -> Letterbox:
        nw, nh, pw, ph = fit_size(w, h, self.budget, self.meta.stride)
        return Letterbox((w, h), (nw, nh), (pw, ph))

    def preprocess(self, image: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
        """BGR uint8 (H, W, 3) -> network input (3, ph, pw) float32 and its :class:`Letterbox`.

        Args:
            image: any image :func:`edgepose.imageio.to_bgr8` accepts.
            out: a (3, ph, pw) float32 buffer to fill (allocated when None or the wrong shape).
        """
        img = to_bgr8(image)
        h, w = img.shape[:2]
        box = self.letterbox(w, h)
        (nw, nh), (pw, ph) = box.resized, box.padded
        interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
        resized = cv2.resize(img, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else img
        if self.meta.channel_order == "RGB":
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        if out is None or out.shape != (3, ph, pw):
            out = np.empty((3, ph, pw), np.float32)
        chw = out[:, :nh, :nw]
        np.copyto(chw, resized.transpose(2, 0, 1), casting="unsafe")
        if self.meta.mean:
            chw -= self.meta.mean
        if self.meta.scale != 1.0:
            chw *= self.meta.scale
        out[:, nh:, :] = self._pad_value
        out[:, :nh, nw:] = self._pad_value
        return out, box

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on an (N, 3, H, W) float32 batch; return ``heatmaps`` and ``pafs``."""
        hm, paf = self.session.run([HEATMAPS, PAFS], {INPUT: batch})
        return hm, paf

    def decode_maps(
        self, hm: np.ndarray, paf: np.ndarray, box: Letterbox, *, workspace: Workspace | None = None
    ) -> tuple[list[Person], list[str]]:
        """One frame's maps -> people in original-image pixels (and warnings).

        ``workspace``: the decoder's scratch buffers; threads decoding at once need one each
        (default: this estimator's own).
        """
        s = self.meta.stride
        # Only the part of the maps that covers the image (not the padding).
        vh, vw = min(hm.shape[1], -(-box.resized[1] // s)), min(hm.shape[2], -(-box.resized[0] // s))
        hm, paf = hm[:, :vh, :vw], paf[:, :vh, :vw]
        warnings = []
        # One float64 sum per map: finite unless some value is NaN/inf (no temporary mask array).
        if not (np.isfinite(hm.sum(dtype=np.float64)) and np.isfinite(paf.sum(dtype=np.float64))):
            warnings.append("the network output contains NaN or infinite values (treated as 0)")
            log.warning(warnings[-1])
        kps, scores = decode(hm, paf, self.layout, self.decoder, self._workspace if workspace is None else workspace)
        box.map_to_image(kps, s)
        return [Person(keypoints=kps[i], score=float(scores[i])) for i in range(len(scores))], warnings

    # -- whole frames ---------------------------------------------------------------------------
    def predict(self, image: np.ndarray, *, index: int = 0, source: str = "", read_ms: float = 0.0) -> FrameResult:
        """Estimate the poses in one frame.

        Raises:
            ImageError: the frame is empty or malformed.
        """
        return self.predict_batch([image], index=index, source=source, read_ms=read_ms)[0]

    def predict_batch(
        self, images: list[np.ndarray], *, index: int = 0, source: str = "", read_ms: float = 0.0
    ) -> list[FrameResult]:
        """Estimate the poses in several frames with one network call.

        Frames of different sizes are padded to the largest; each result's timings hold its share
        of the batch's pre-processing, inference and decoding.
        """
        if not images:
            return []
        t0 = time.perf_counter()
        pre = []
        for img in images:
            buf = self._buf if len(images) == 1 else None
            x, box = self.preprocess(img, buf)
            if len(images) == 1:
                self._buf = x
            pre.append((x, box))
        if len(pre) == 1:
            batch = pre[0][0][None]
        else:
            ph = max(x.shape[1] for x, _ in pre)
            pw = max(x.shape[2] for x, _ in pre)
            batch = np.full((len(pre), 3, ph, pw), self._pad_value, np.float32)
            for i, (x, _) in enumerate(pre):
                batch[i, :, : x.shape[1], : x.shape[2]] = x
        t1 = time.perf_counter()
        hm, paf = self.infer(batch)
        t2 = time.perf_counter()
        n = len(images)
        results = []
        for i, (_, box) in enumerate(pre):
            td = time.perf_counter()
            people, warnings = self.decode_maps(hm[i], paf[i], box)
            dec = (time.perf_counter() - td) * 1e3
            results.append(
                FrameResult(
                    people=people,
                    image_size=box.src,
                    layout=self.layout,
                    timings={
                        "read": read_ms / n,
                        "preprocess": (t1 - t0) * 1e3 / n,
                        "inference": (t2 - t1) * 1e3 / n,
                        "decode": dec,
                    },
                    index=index + i,
                    source=source,
                    warnings=warnings,
                )
            )
        return results

    def __repr__(self) -> str:
        return f"PoseEstimator({str(self.model_path)!r}, device={self.device.word!r}, providers={self.providers})"

    def stream(self, source, **kw):
        """One :class:`FrameResult` per frame of any source, pipelined; see :class:`edgepose.stream.Stream`.

        Example:
            >>> for r in est.stream("clip.mp4", realtime=False):  # doctest: +SKIP
            ...     print(r.index, [p.id for p in r.people])
        """
        from edgepose.stream import stream

        return stream(self, source, **kw)


__all__ += ["ImageError"]
