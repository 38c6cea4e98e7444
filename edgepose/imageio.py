"""Reading images robustly: every failure is one clear :class:`ImageError`.

A picture above :data:`MAX_PIXELS` (Pillow's default cap, about 89 MP) is refused from its header
before it is decoded (JPEG, PNG, BMP, WebP; other formats are checked once decoded), so a small file
that claims 50000x50000 pixels cannot exhaust memory. ``edgepose run --max-pixels N`` sets the cap
for the process (0: none), as ``PIL.Image.MAX_IMAGE_PIXELS`` does for Pillow.

Example:
    >>> img, warnings = read_image("people.jpg")  # doctest: +SKIP
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

__all__ = ["ImageError", "read_image", "decode_image", "header_size", "one_line", "set_max_pixels", "to_bgr8",
           "IMAGE_EXTENSIONS", "MAX_PIXELS", "DEFAULT_MAX_PIXELS"]

#: Pillow's ``MAX_IMAGE_PIXELS``: a 1024 MB 24-bit picture / 3 / 4
DEFAULT_MAX_PIXELS = 89_478_485
#: the cap in force (0: none); set with :func:`set_max_pixels`
MAX_PIXELS = DEFAULT_MAX_PIXELS

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm", ".pnm"}


class ImageError(ValueError):
    """An input image could not be used; the message says why."""


def set_max_pixels(n: int) -> None:
    """Set the process's pixel cap for decoded pictures (0: no cap)."""
    global MAX_PIXELS
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"the pixel cap must be a whole number >= 0 (0: no cap), not {n!r}")
    MAX_PIXELS = n


def one_line(e: BaseException) -> str:
    """An error as one line (OpenCV's and others' messages span several)."""
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _jpeg_size(d: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(d):
        if d[i] != 0xFF:
            return None
        marker = d[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # standalone markers
            i += 2
            continue
        (length,) = struct.unpack(">H", d[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame
            if i + 9 > len(d):
                return None
            h, w = struct.unpack(">HH", d[i + 5 : i + 9])
            return w, h
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / scan before any frame header
            return None
        i += 2 + length
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an encoded picture's header, without decoding it: JPEG, PNG, BMP, WebP.

    Returns None for another format or a header too short or broken to say.
    """
    d = bytes(data[:65536]) if not isinstance(data, bytes) else data
    if d[:8] == b"\x89PNG\r\n\x1a\n" and len(d) >= 24 and d[12:16] == b"IHDR":
        return struct.unpack(">II", d[16:24])
    if d[:2] == b"\xff\xd8":
        return _jpeg_size(d)
    if d[:2] == b"BM" and len(d) >= 26:
        if struct.unpack("<I", d[14:18])[0] == 12:  # OS/2 header
            return struct.unpack("<HH", d[18:22])
        w, h = struct.unpack("<ii", d[18:26])
        return abs(w), abs(h)
    if d[:4] == b"RIFF" and d[8:12] == b"WEBP" and len(d) >= 30:
        kind = d[12:16]
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", d[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            (b,) = struct.unpack("<I", d[21:25])
            return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
        if kind == b"VP8X":
            return 1 + int.from_bytes(d[24:27], "little"), 1 + int.from_bytes(d[27:30], "little")
    return None




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


def read_image(path: str | Path, max_pixels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Read an image file as uint8 BGR.

    Returns:
        ``(image, warnings)``; warnings name oddities that did not stop reading (a truncated JPEG).

    Raises:
        ImageError: missing, empty, not an image, above the pixel cap, or undecodable.
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
    return decode_image(data, str(path), max_pixels)


def decode_image(data: bytes | np.ndarray, name: str = "image", max_pixels: int | None = None,
                 known_formats_only: bool = False,
                 cap_text: str = "the cap of {cap} pixels (--max-pixels)") -> tuple[np.ndarray, list[str]]:
    """Decode an encoded image (JPEG, PNG, ...) held in memory as uint8 BGR, as :func:`read_image` does.

    Args:
        data: the file's bytes (``bytes`` or a uint8 array).
        name: what to call it in messages.
        max_pixels: the cap (default :data:`MAX_PIXELS`; 0: none): checked from the header before
            decoding where the format has one we read (JPEG, PNG, BMP, WebP), else after decoding.
        known_formats_only: refuse a picture whose header does not give its size (the Triton models:
            bytes from the network).
        cap_text: how messages name the cap (``{cap}``: its value).

    Returns:
        ``(image, warnings)``.

    Raises:
        ImageError: empty, above the cap, or undecodable (one line).
    """
    cap = MAX_PIXELS if max_pixels is None else max_pixels
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data, np.uint8).reshape(-1)
    if data.size == 0:
        raise ImageError(f"{name}: empty file")
    size = header_size(data[:65536].tobytes())
    if size is None and known_formats_only:
        head = data[:4].tobytes()
        if head[:2] in (b"\x89P", b"\xff\xd8", b"BM") or head == b"RIFF":  # a known format, its header broken
            raise ImageError(f"{name}: not a readable image (corrupt or truncated header)")
        raise ImageError(f"{name}: not a JPEG, PNG, BMP or WebP picture whose header gives its size")
    if size is not None:
        w, h = size
        if w < 1 or h < 1:
            raise ImageError(f"{name}: the header says {w}x{h} pixels")
        if cap and w * h > cap:
            raise ImageError(f"{name}: {w}x{h} = {w * h} pixels is above {cap_text.format(cap=cap)}")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own size limit and decoder failures: this picture's error
        raise ImageError(f"{name}: cannot decode ({one_line(e)})") from None
    warnings = []
    if data[:2].tobytes() == b"\xff\xd8" and data[-2:].tobytes() != b"\xff\xd9":
        # A truncated JPEG (a camera upload cut short): recent OpenCV refuses it; closing the stream
        # with an end-of-image marker decodes what is there, the missing rows come out grey.
        if img is None:
            try:
                img = cv2.imdecode(np.concatenate([data, np.frombuffer(b"\xff\xd9", np.uint8)]), cv2.IMREAD_COLOR)
            except cv2.error as e:
                raise ImageError(f"{name}: cannot decode ({one_line(e)})") from None
        if img is not None:
            warnings.append(f"{Path(name).name}: JPEG is truncated (no end marker); the missing part decodes as grey")
    if img is None:
        raise ImageError(f"{name}: not a readable image (unknown format, corrupt or truncated)")
    if cap and img.shape[0] * img.shape[1] > cap:  # a format without a header we read, or a header that lied
        raise ImageError(f"{name}: decodes to {img.shape[1]}x{img.shape[0]} pixels, above {cap_text.format(cap=cap)}")
    return img, warnings
