"""What travels between the client and the server: tensor names, the two wire formats, and the
pre-processing split between the two sides.

Wire formats (inputs of the ``ensemble`` and ``pipeline`` models):

==========  ===========================================  =============================================
format      inputs (per request, batch dim first)        who resizes / where it is exact
==========  ===========================================  =============================================
``raw``     ``frame`` UINT8 (1, ph, pw, 3) BGR,          the client letterboxes to the network size with
            ``letterbox`` INT32 (1, 4)                   the local code: the same keypoints as a local run
``bytes``   ``image_bytes`` BYTES (1, 1): a JPEG/PNG     the server decodes and letterboxes; a picture
                                                         file sent as its own bytes matches a local run
==========  ===========================================  =============================================

``letterbox`` is ``(src_w, src_h, resized_w, resized_h)``: the original frame's size and the size it
was resized to inside the padded ``frame`` (padding is right/bottom, pixel value 0).

Outputs: ``keypoints`` FP32 (1, M, K, 3) in original-image pixels and ``scores`` FP32 (1, M); the
``bytes`` models add ``image_size`` INT32 (1, 2) ``(w, h)``. No maps go over the wire.

Example:
    >>> box = Letterbox((640, 480), (424, 318), (424, 320))
    >>> frame = letterbox_frame(np.zeros((480, 640, 3), np.uint8), box)
    >>> frame.shape, box_to_array(box).tolist()
    ((320, 424, 3), [640, 480, 424, 318])
"""

from __future__ import annotations

import numpy as np

from edgepose.geometry import Letterbox
from edgepose.preprocess import resize_for, to_input

__all__ = [
    "FRAME", "LETTERBOX", "IMAGE_BYTES", "KEYPOINTS", "SCORES", "IMAGE_SIZE", "WIRE_FORMATS",
    "letterbox_frame", "normalize", "box_to_array", "box_from_array", "check_box", "MAX_PIXELS",
]  # fmt: skip

#: default pixel cap of a picture sent as bytes (Pillow's ``MAX_IMAGE_PIXELS``: 89.5 MP, e.g. 11000 x 8000)
MAX_PIXELS = 89_478_485

FRAME = "frame"
LETTERBOX = "letterbox"
IMAGE_BYTES = "image_bytes"
KEYPOINTS = "keypoints"
SCORES = "scores"
IMAGE_SIZE = "image_size"
WIRE_FORMATS = ("raw", "bytes")


def letterbox_frame(img: np.ndarray, box: Letterbox, out: np.ndarray | None = None) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> the padded network-size frame (ph, pw, 3) uint8, BGR, zeros as padding.

    The resize is the one :meth:`edgepose.runner.PoseEstimator.preprocess` does (area when shrinking,
    linear when enlarging), so :func:`normalize` of this frame equals the local network input.
    """
    (nw, nh), (pw, ph) = box.resized, box.padded
    small = resize_for(img, box)
    if out is None or out.shape != (ph, pw, 3):
        out = np.empty((ph, pw, 3), np.uint8)
    out[:nh, :nw] = small
    out[nh:, :] = 0
    out[:nh, nw:] = 0
    return out


def normalize(frame: np.ndarray, box: Letterbox, meta, out: np.ndarray | None = None) -> np.ndarray:
    """The server's half: a padded BGR uint8 frame (ph, pw, 3) -> network input (3, ph, pw) float32.

    The same operations, in the same order, as the local pre-processing, so the network sees the
    same values bit for bit (padding takes the local pad value).

    Args:
        frame: from :func:`letterbox_frame`.
        box: its letterbox (``padded`` must be the frame's size).
        meta: the model's :class:`edgepose.meta.ModelMeta` (channel order, mean, scale).
    """
    return to_input(frame, box, meta, out)


def box_to_array(box: Letterbox) -> np.ndarray:
    """:class:`Letterbox` -> INT32 (4,) ``(src_w, src_h, resized_w, resized_h)``."""
    return np.array([*box.src, *box.resized], np.int32)


def box_from_array(a: np.ndarray, frame_shape: tuple[int, ...]) -> Letterbox:
    """INT32 (4,) and the frame's shape (ph, pw, 3) -> :class:`Letterbox` (checked with :func:`check_box`)."""
    a = np.asarray(a).reshape(-1)
    if a.size != 4:
        raise ValueError(f"letterbox must hold 4 values (src_w, src_h, resized_w, resized_h), got {a.size}")
    box = Letterbox((int(a[0]), int(a[1])), (int(a[2]), int(a[3])), (int(frame_shape[1]), int(frame_shape[0])))
    check_box(box)
    return box


def check_box(box: Letterbox) -> None:
    """Raise ValueError for a letterbox that does not describe a frame inside the padded input."""
    (w, h), (nw, nh), (pw, ph) = box.src, box.resized, box.padded
    if min(w, h, nw, nh, pw, ph) < 1:
        raise ValueError(f"letterbox sizes must be positive: src {w}x{h}, resized {nw}x{nh}, frame {pw}x{ph}")
    if nw > pw or nh > ph:
        raise ValueError(f"resized size {nw}x{nh} does not fit the {pw}x{ph} frame")
