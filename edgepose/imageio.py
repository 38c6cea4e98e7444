"""Reading images robustly: every failure is one clear :class:`ImageError`.

Example:
    >>> img, warnings = read_image("people.jpg")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["ImageError", "read_image", "decode_image", "to_bgr8", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm", ".pnm"}


class ImageError(ValueError):
    """An input image could not be used; the message says why."""


def to_bgr8(img: np.ndarray, channel_order: str = "BGR") -> np.ndarray:
    """Bring any image array to 3-channel uint8 BGR.

    Handles grayscale (H,W) or (H,W,1), BGRA (H,W,4), 16-bit and float (0..1) images.

    Raises:
        ImageError: empty, wrong rank or unsupported channel count.
    """
    if not isinstance(img, np.ndarray):
        raise ImageError(f"expected a numpy image, got {type(img).__name__}")
    if img.size == 0 or img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ImageError(f"empty or malformed image of shape {img.shape}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype.kind == "f":
        finite = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
        peak = float(finite.max()) if finite.size else 1.0
        img = np.clip(finite * (255.0 if peak <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR if channel_order == "BGR" else cv2.COLOR_RGBA2RGB)
    if img.shape[2] != 3:
        raise ImageError(f"unsupported channel count {img.shape[2]} (shape {img.shape})")
    return img


def read_image(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read an image file as uint8 BGR.

    Returns:
        ``(image, warnings)``; warnings name oddities that did not stop reading (a truncated JPEG).

    Raises:
        ImageError: missing, empty, not an image, or undecodable.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from e
    return decode_image(data, str(path))


def decode_image(data: bytes | np.ndarray, name: str = "image") -> tuple[np.ndarray, list[str]]:
    """Decode an encoded image (JPEG, PNG, ...) held in memory as uint8 BGR, as :func:`read_image` does.

    Args:
        data: the file's bytes (``bytes`` or a uint8 array).
        name: what to call it in messages.

    Returns:
        ``(image, warnings)``.

    Raises:
        ImageError: empty or undecodable.
    """
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data, np.uint8).reshape(-1)
    if data.size == 0:
        raise ImageError(f"{name}: empty file")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    warnings = []
    if data[:2].tobytes() == b"\xff\xd8" and data[-2:].tobytes() != b"\xff\xd9":
        # A truncated JPEG (a camera upload cut short): recent OpenCV refuses it; closing the stream
        # with an end-of-image marker decodes what is there, the missing rows come out grey.
        if img is None:
            img = cv2.imdecode(np.concatenate([data, np.frombuffer(b"\xff\xd9", np.uint8)]), cv2.IMREAD_COLOR)
        if img is not None:
            warnings.append(f"{Path(name).name}: JPEG is truncated (no end marker); the missing part decodes as grey")
    if img is None:
        raise ImageError(f"{name}: not a readable image (unknown format, corrupt or truncated)")
    return img, warnings
