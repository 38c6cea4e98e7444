"""The models Triton's Python backend runs (each exported ``model.py`` imports one class from here).

=====================  ===================================================================================
class                  model
=====================  ===================================================================================
:class:`DecodeModel`   ``P_decode``: ``heatmaps``, ``pafs``, ``letterbox`` -> ``keypoints``, ``scores``
:class:`ImageDecodeModel` ``P_imdecode``: ``image_bytes`` -> ``frame``, ``letterbox``, ``image_size``
:class:`PipelineModel` ``P_pipeline``: either wire format -> people, ONNX Runtime inside; the requests
                       of one dynamic batch that share a frame size go through the network together
=====================  ===================================================================================

A bad request (wrong sizes, an undecodable image) gets its own error response, one line; the others
in the same batch are answered. An encoded picture is decoded in one place (:func:`decode_request_image`):
its size is read from its header first and a picture above the pixel cap (config parameter
``max_pixels``, default :data:`MAX_PIXELS`, Pillow's limit) is refused before any pixel is decoded;
only JPEG, PNG, BMP and WebP are taken (formats whose header says the size).
``triton_python_backend_utils`` exists only inside the server's stub, so it is imported in ``initialize``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edgepose.decode import DecoderConfig, Workspace
from edgepose.imageio import decode_image, header_size, one_line
from edgepose.meta import HEATMAPS, PAFS, ModelMeta
from edgepose.runner import Letterbox, decode_to_image, fit_size, parse_size
from edgepose.triton.wire import (
    FRAME,
    IMAGE_BYTES,
    IMAGE_SIZE,
    KEYPOINTS,
    LETTERBOX,
    MAX_PIXELS,
    SCORES,
    box_from_array,
    check_box,
    letterbox_frame,
    normalize,
)  # fmt: skip

log = logging.getLogger(__name__)

__all__ = ["DecodeModel", "ImageDecodeModel", "PipelineModel", "people_from_maps", "decode_request_image",
           "header_size", "MAX_PIXELS"]


def _params(args: dict) -> dict[str, str]:
    cfg = json.loads(args["model_config"])
    return {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}


def _meta(params: dict[str, str]) -> ModelMeta:
    return ModelMeta.from_props(json.loads(params["edgepose_meta"]), "the model's config parameters")


def people_from_maps(hm: np.ndarray, paf: np.ndarray, box: Letterbox, meta: ModelMeta, cfg: DecoderConfig,
                     ws: Workspace) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One frame's maps (C, h, w) -> keypoints (M, K, 3) in image pixels and scores (M,), by the
    local estimator's own :func:`edgepose.runner.decode_to_image`."""
    people, _ = decode_to_image(hm, paf, box, meta.layout, meta.stride, cfg, ws)
    if not people:
        return np.zeros((0, meta.layout.num_parts, 3), np.float32), np.zeros((0,), np.float32)
    return np.stack([p.keypoints for p in people]), np.array([p.score for p in people], np.float32)


class _Base:
    def _setup(self, args: dict) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.params = _params(args)
        self.name = args.get("model_name", "edgepose")
        self.max_pixels = int(self.params.get("max_pixels") or MAX_PIXELS)

    def _error(self, e: BaseException):
        return self.pb.InferenceResponse(error=self.pb.TritonError(f"{self.name}: {one_line(e)}"))

    def _people(self, kps: np.ndarray, scores: np.ndarray, size: tuple[int, int] | None = None):
        out = [self.pb.Tensor(KEYPOINTS, np.ascontiguousarray(kps[None], np.float32)),
               self.pb.Tensor(SCORES, np.ascontiguousarray(scores[None], np.float32))]  # fmt: skip
        if size is not None:
            out.append(self.pb.Tensor(IMAGE_SIZE, np.array([size], np.int32)))
        return self.pb.InferenceResponse(out)

    def _input(self, request, name: str) -> np.ndarray | None:
        t = self.pb.get_input_tensor_by_name(request, name)
        return None if t is None else t.as_numpy()

    def finalize(self) -> None:
        pass


def _one(a: np.ndarray, name: str) -> np.ndarray:
    if a.shape[0] != 1:
        raise ValueError(f"send one {name} per request (got a batch of {a.shape[0]})")
    return a[0]


def decode_request_image(raw: bytes, max_pixels: int = MAX_PIXELS, name: str = IMAGE_BYTES) -> tuple[np.ndarray, list[str]]:
    """A request's encoded picture -> uint8 BGR (the one place the Triton models decode).

    :func:`edgepose.imageio.decode_image` with the server's cap, and only formats whose header gives
    the size (JPEG, PNG, BMP, WebP): a picture above ``max_pixels`` is refused before decoding.

    Raises:
        ImageError: empty, not JPEG/PNG/BMP/WebP, above the cap, or undecodable (one line).
    """
    return decode_image(raw, name, max_pixels=max_pixels, known_formats_only=True,
                        cap_text="the server's cap of {cap} pixels")


def _image_from_bytes(a: np.ndarray, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    data = _one(a, IMAGE_BYTES).reshape(-1)
    if data.size != 1:
        raise ValueError(f"{IMAGE_BYTES} must hold one encoded image, got {data.size} elements")
    raw = data[0]
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    return decode_request_image(bytes(raw), max_pixels)


class DecodeModel(_Base):
    """``P_decode``: the network's maps and the frame's letterbox -> people in image pixels."""

    def initialize(self, args: dict) -> None:
        self._setup(args)
        self.meta = _meta(self.params)
        self.cfg = DecoderConfig()
        self.ws = Workspace()

    def execute(self, requests):
        out = []
        for r in requests:
            try:
                hm, paf, lb = (_one(self._input(r, n), n) for n in (HEATMAPS, PAFS, LETTERBOX))
                s = self.meta.stride
                box = box_from_array(lb, (hm.shape[1] * s, hm.shape[2] * s))
                out.append(self._people(*people_from_maps(hm, paf, box, self.meta, self.cfg, self.ws)))
            except Exception as e:  # a bad request, not a broken server
                out.append(self._error(e))
        return out


class ImageDecodeModel(_Base):
    """``P_imdecode``: an encoded image -> the letterboxed uint8 frame the network model takes."""

    def initialize(self, args: dict) -> None:
        self._setup(args)
        self.meta = _meta(self.params)
        self.budget = parse_size(self.params.get("input_size") or None, self.meta.input_size)

    def execute(self, requests):
        out = []
        for r in requests:
            try:
                img, _ = _image_from_bytes(self._input(r, IMAGE_BYTES), self.max_pixels)
                h, w = img.shape[:2]
                nw, nh, pw, ph = fit_size(w, h, self.budget, self.meta.stride)
                box = Letterbox((w, h), (nw, nh), (pw, ph))
                frame = letterbox_frame(img, box)
                out.append(self.pb.InferenceResponse([
                    self.pb.Tensor(FRAME, frame[None]),
                    self.pb.Tensor(LETTERBOX, np.array([[w, h, nw, nh]], np.int32)),
                    self.pb.Tensor(IMAGE_SIZE, np.array([[w, h]], np.int32)),
                ]))  # fmt: skip
            except Exception as e:
                out.append(self._error(e))
        return out


class PipelineModel(_Base):
    """``P_pipeline``: frames (raw or encoded) -> people, with ONNX Runtime inside the model.

    Config parameters: ``threads`` (ONNX Runtime intra-op threads; 0: the cores divided by the
    instances), ``input_size`` (the bytes format's pixel budget).
    """

    def initialize(self, args: dict) -> None:
        from edgepose.runner import PoseEstimator
        from edgepose.session import usable_cores

        self._setup(args)
        cfg = json.loads(args["model_config"])
        instances = sum(int(g.get("count", 1)) for g in cfg.get("instance_group", [])) or 1
        threads = int(self.params.get("threads") or 0) or max(1, usable_cores() // instances)
        path = Path(args["model_repository"]) / str(args["model_version"]) / "model.onnx"
        self.est = PoseEstimator(path, device="cpu", threads=threads, size=self.params.get("input_size") or None)
        self.meta = self.est.meta
        self.ws = Workspace()
        log.info("%s: %s with %d threads", self.name, path.name, threads)

    def _frame(self, request) -> tuple[np.ndarray, Letterbox, bool]:
        """A request -> the network input (3, ph, pw), its letterbox, and whether it came as bytes."""
        data = self._input(request, IMAGE_BYTES)
        frame = self._input(request, FRAME)
        if data is not None:
            if frame is not None:
                raise ValueError(f"send either {FRAME} + {LETTERBOX} or {IMAGE_BYTES}, not both")
            img, _ = _image_from_bytes(data, self.max_pixels)
            x, box = self.est.preprocess(img)
            return x, box, True
        lb = self._input(request, LETTERBOX)
        if frame is None or lb is None:
            raise ValueError(f"send {FRAME} and {LETTERBOX} (raw wire format) or {IMAGE_BYTES} (encoded)")
        frame = _one(frame, FRAME)
        box = box_from_array(_one(lb, LETTERBOX), frame.shape)
        check_box(box)
        return normalize(frame, box, self.meta), box, False

    def execute(self, requests):
        out: list = [None] * len(requests)
        jobs: dict[tuple[int, ...], list] = {}  # network input shape -> [(request index, x, box, bytes?)]
        for i, r in enumerate(requests):
            try:
                x, box, enc = self._frame(r)
                jobs.setdefault(x.shape, []).append((i, x, box, enc))
            except Exception as e:
                out[i] = self._error(e)
        for group in jobs.values():
            try:
                # one request: its input as a batch of one (a view; np.stack would copy 1.9 MB)
                xb = group[0][1][None] if len(group) == 1 else np.stack([x for _, x, _, _ in group])
                hm, paf = self.est.infer(xb)
            except Exception as e:
                for i, *_ in group:
                    out[i] = self._error(e)
                continue
            for j, (i, _, box, _enc) in enumerate(group):
                try:
                    kps, scores = people_from_maps(hm[j], paf[j], box, self.meta, self.est.decoder, self.ws)
                    out[i] = self._people(kps, scores, box.src)
                except Exception as e:
                    out[i] = self._error(e)
        return out
