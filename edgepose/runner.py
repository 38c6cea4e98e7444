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
import os
import threading
import time
from pathlib import Path

import numpy as np

from edgepose._ort import ort
from edgepose.cpu import int8_warning
from edgepose.decode import DecoderConfig, Workspace, decode
from edgepose.geometry import SIZE_PRESETS, Letterbox, fit_size, parse_size
from edgepose.imageio import ImageError, to_bgr8
from edgepose.meta import HEATMAPS, INPUT, PAFS, MetadataError, ModelMeta
from edgepose.multiscale import ACCURATE, MultiScaleState, ScalePlan, multi_scale_maps
from edgepose.preprocess import pad_value, resize_for, to_input
from edgepose.providers import DeviceSpec, resolve
from edgepose.results import FrameResult, Person
from edgepose.session import session_options

log = logging.getLogger(__name__)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, msg: str) -> None:
    """Log ``msg`` once per process for ``key`` (workers and tune load the same model many times)."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("%s: %s", key, msg)

__all__ = ["PoseEstimator", "SIZE_PRESETS", "Letterbox", "ModelError", "fit_size", "parse_size"]


class ModelError(ValueError):
    """The model file cannot be used by edgepose; the message says why."""


def decode_to_image(hm: np.ndarray, paf: np.ndarray, box: Letterbox, layout, stride: int, cfg: DecoderConfig,
                    workspace: Workspace) -> tuple[list[Person], list[str]]:  # fmt: skip
    """One frame's maps ``hm`` (P+1, h, w), ``paf`` (2L, h, w) -> people in original-image pixels, and warnings.

    Only the cells that cover the frame (not the padding) are decoded; NaN/inf in the maps is
    reported as a warning (and counts as 0). Shared by :meth:`PoseEstimator.decode_maps` and the
    Triton server's decode model.
    """
    vh, vw = min(hm.shape[1], -(-box.resized[1] // stride)), min(hm.shape[2], -(-box.resized[0] // stride))
    hm, paf = hm[:, :vh, :vw], paf[:, :vh, :vw]
    warnings = []
    # One float64 sum per map: finite unless some value is NaN/inf (no temporary mask array).
    if not (np.isfinite(hm.sum(dtype=np.float64)) and np.isfinite(paf.sum(dtype=np.float64))):
        warnings.append("the network output contains NaN or infinite values (treated as 0)")
        log.warning(warnings[-1])
    kps, scores = decode(hm, paf, layout, cfg, workspace)
    box.map_to_image(kps, stride)
    return [Person(keypoints=kps[i], score=float(scores[i])) for i in range(len(scores))], warnings


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
        scales: run the network at these scales of the budget and average the maps (OpenPose's
            ``--scale_number``/``--scale_gap``), e.g. ``(1, 0.75, 0.5)``; scales above 1 enlarge
            the budget. Default: one scale, or the ``accurate`` preset's set with ``size="accurate"``.
        flip: also run the mirrored frame at every scale and average it back (left/right parts
            swapped from the layout). Default: off, or the ``accurate`` preset's choice.

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
        scales: str | tuple[float, ...] | list[float] | None = None,
        flip: bool | None = None,
    ) -> None:
        self.model_path = Path(model)
        if not self.model_path.is_file():
            raise FileNotFoundError(
                f"no model at {self.model_path}; build the default one with `make model` "
                "(or `edgepose convert tfpose`)"
            )
        data = self.model_path.read_bytes()
        self.model_sha256 = hashlib.sha256(data).hexdigest()
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or not 0 <= threads <= 256):
            raise ValueError(f"threads must be a whole number 1..256 (0 or None: one per core), not {threads!r}")
        self.threads = threads or _default_threads()
        self.device: DeviceSpec = resolve(device, model_sha=self.model_sha256, threads=self.threads)
        so = session_options(self.threads)
        # loaded from bytes (hashed once): external weights resolve against the model's folder, not the
        # working directory, as they would if ONNX Runtime read the file itself
        so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                    str(self.model_path.resolve().parent))
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
        if self.providers[0] == "CPUExecutionProvider":
            msg = int8_warning(self.session.get_modelmeta().custom_metadata_map)
            if msg:
                _warn_once(str(self.model_path), msg)
        log.info("%s on %s (active providers: %s)", self.model_path.name, self.device.word, ", ".join(self.providers))
        if self.device.providers[0] not in self.providers:
            log.warning("requested %s but the session runs on %s", self.device.providers[0], self.providers)
        self.layout = self.meta.layout
        base = parse_size(size, self.meta.input_size)
        if size == "accurate":
            base = ACCURATE["budget"]
            scales = ACCURATE["scales"] if scales is None else scales
            flip = ACCURATE["flip"] if flip is None else flip
        #: the scales and flip of every frame (:class:`edgepose.multiscale.ScalePlan`)
        self.plan = ScalePlan.make(base, scales if scales is not None else (1.0,), bool(flip), self.meta.layout)
        self.budget = self.plan.budgets[0]  # the largest scale: what preprocess() fits frames into
        self._ms_local = threading.local()
        self.decoder = decoder or DecoderConfig()
        self._workspace = Workspace()
        self._buf: np.ndarray | None = None
        self._pad_value = pad_value(self.meta)

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
        return to_input(resize_for(img, box), box, self.meta, out), box

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
        return decode_to_image(hm, paf, box, self.layout, self.meta.stride, self.decoder,
                               self._workspace if workspace is None else workspace)  # fmt: skip

    @property
    def infer_people(self):
        """With several scales or flip: ``(x, box) -> (people, warnings)`` on the largest scale's input
        (the stream calls it instead of ``infer`` + ``decode_maps``); None for one scale."""
        return None if self.plan.single else self._infer_people_multi

    def multi_scale_maps(self, x: np.ndarray, box: Letterbox) -> tuple[np.ndarray, np.ndarray]:
        """Averaged heatmaps and PAFs of every scale (and flip) of :attr:`plan`, on ``box``'s map grid.

        ``x`` and ``box`` come from :meth:`preprocess` (the largest scale). Thread-safe: each thread
        keeps its own buffers.
        """
        state = getattr(self._ms_local, "state", None)
        if state is None:
            state = self._ms_local.state = MultiScaleState()
        return multi_scale_maps(self.infer, self.layout, x, box, self.plan, self.meta.stride, self._pad_value, state)

    def _infer_people_multi(self, x: np.ndarray, box: Letterbox) -> tuple[list[Person], list[str]]:
        hm, paf = self.multi_scale_maps(x, box)
        ws = getattr(self._ms_local, "workspace", None)
        if ws is None:
            ws = self._ms_local.workspace = Workspace()
        return self.decode_maps(hm, paf, box, workspace=ws)

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
        of the batch's pre-processing, inference and decoding. With several scales or flip
        (:attr:`plan`) each frame runs its own scales, and ``inference`` includes averaging the maps.
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
        t1 = time.perf_counter()
        if not self.plan.single:  # several runs per frame (scales, flips): maps averaged per frame
            maps = [self.multi_scale_maps(x, box) for x, box in pre]
        else:
            if len(pre) == 1:
                batch = pre[0][0][None]
            else:
                ph = max(x.shape[1] for x, _ in pre)
                pw = max(x.shape[2] for x, _ in pre)
                batch = np.full((len(pre), 3, ph, pw), self._pad_value, np.float32)
                for i, (x, _) in enumerate(pre):
                    batch[i, :, : x.shape[1], : x.shape[2]] = x
            hm, paf = self.infer(batch)
            maps = [(hm[i], paf[i]) for i in range(len(pre))]
        t2 = time.perf_counter()
        n = len(images)
        results = []
        for i, (_, box) in enumerate(pre):
            td = time.perf_counter()
            people, warnings = self.decode_maps(maps[i][0], maps[i][1], box)
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

    @classmethod
    def from_profile(cls, profile: str | Path, **overrides) -> PoseEstimator:
        """The estimator an ``edgepose tune`` profile chose (model, device, size, scales, flip, threads,
        decoder); ``overrides`` replace any of those keyword arguments.

        Raises:
            FileNotFoundError: no profile there.
            edgepose.tune.ProfileError: not a profile, or its model changed since tuning (sha256).

        Example:
            >>> est = PoseEstimator.from_profile("profile.json")  # doctest: +SKIP
        """
        from edgepose.tune.profile import estimator_kwargs, load_profile

        kw = estimator_kwargs(load_profile(profile))
        kw.update(overrides)
        return cls(**kw)

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
