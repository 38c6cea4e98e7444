"""Caffe's protobuf formats without Caffe or compiled protobuf classes.

Two small readers (and one writer), enough for network definitions and weights:

* :func:`parse_prototxt` reads protobuf *text format* (``.prototxt``): nested ``name { ... }``
  blocks (``name: { ... }`` and ``< ... >`` too), ``key: value`` with quoted strings, numbers,
  enum words and booleans, repeated fields, ``key: [a, b]`` lists and ``#`` comments, into
  :class:`Message` objects that keep every field as a list of values.
* :func:`read_caffemodel` decodes the *binary* ``NetParameter`` of a ``.caffemodel`` with a
  hand-written varint / length-delimited reader and returns each layer's blobs as float32
  arrays (``layer`` = field 100, or the legacy ``layers`` = field 2).
* :func:`write_caffemodel` writes such a file from ``{layer name: [arrays]}``.

Field numbers are those of BVLC Caffe's ``caffe.proto``:

========================  ==========================================================
NetParameter              layer = 100 (LayerParameter), layers = 2 (V1LayerParameter)
LayerParameter            name = 1, type = 2, bottom = 3, top = 4, blobs = 7
V1LayerParameter          bottom = 2, top = 3, name = 4, type = 5 (enum), blobs = 6
BlobProto                 shape = 7, data = 5 (packed float), double_data = 8,
                          legacy num, channels, height, width = 1..4
BlobShape                 dim = 1 (packed int64)
========================  ==========================================================

Example:
    >>> net = parse_prototxt('name: "n" layer { name: "c" type: "Convolution" '
    ...                      'convolution_param { num_output: 8 kernel_size: 3 } }')
    >>> net.get("name"), net.all("layer")[0].msg("convolution_param").int("num_output")
    ('n', 8)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from edgepose.fileio import write_bytes_atomic

__all__ = [
    "CaffeFormatError",
    "Message",
    "Word",
    "parse_prototxt",
    "read_caffemodel",
    "encode_caffemodel",
    "write_caffemodel",
]


class CaffeFormatError(ValueError):
    """A prototxt or caffemodel cannot be read; the message says where and why."""


# --------------------------------------------------------------------------------------------
# Text format
# --------------------------------------------------------------------------------------------


class Word(str):
    """An unquoted scalar of the text format (number, enum name, ``true``/``false``)."""

    __slots__ = ()


class Message:
    """A parsed text-format message: every field is a list of values, in file order.

    Values are ``str`` (quoted strings), :class:`Word` (unquoted scalars) or nested
    :class:`Message` objects. The typed getters convert and fail with a clear message.
    """

    __slots__ = ("fields", "where")

    def __init__(self, where: str = "") -> None:
        self.fields: dict[str, list] = {}
        self.where = where

    def add(self, key: str, value) -> None:
        self.fields.setdefault(key, []).append(value)

    def has(self, key: str) -> bool:
        return key in self.fields

    def all(self, key: str) -> list:
        """All values of a (repeated) field; empty when absent."""
        return list(self.fields.get(key, ()))

    def get(self, key: str, default=None):
        """The last value of a field (proto2 semantics for a repeated scalar set twice), or ``default``."""
        vals = self.fields.get(key)
        return vals[-1] if vals else default

    def msg(self, key: str) -> Message:
        """A sub-message, or an empty one when absent."""
        v = self.get(key)
        if v is None:
            return Message(f"{self.where}.{key}")
        if not isinstance(v, Message):
            raise CaffeFormatError(f"{self.where}: {key} should be a {{ ... }} block, not {v!r}")
        return v

    def _scalar(self, key: str, v, conv):
        if isinstance(v, Message):
            raise CaffeFormatError(f"{self.where}: {key} should be a value, not a {{ ... }} block")
        try:
            return conv(v)
        except (TypeError, ValueError):
            raise CaffeFormatError(f"{self.where}: bad value {v!r} for {key}") from None

    def int(self, key: str, default: int | None = None) -> int | None:
        v = self.get(key)
        return default if v is None else self._scalar(key, v, _to_int)

    def ints(self, key: str) -> list[int]:
        return [self._scalar(key, v, _to_int) for v in self.all(key)]

    def float(self, key: str, default: float | None = None) -> float | None:
        v = self.get(key)
        return default if v is None else self._scalar(key, v, _to_float)

    def bool(self, key: str, default: bool | None = None) -> bool | None:
        v = self.get(key)
        return default if v is None else self._scalar(key, v, _to_bool)

    def str(self, key: str, default: str | None = None) -> str | None:
        v = self.get(key)
        return default if v is None else self._scalar(key, v, str)

    def strs(self, key: str) -> list[str]:
        return [self._scalar(key, v, str) for v in self.all(key)]

    def __repr__(self) -> str:
        return f"Message({', '.join(f'{k}×{len(v)}' for k, v in self.fields.items())})"


def _to_int(v) -> int:
    s = str(v).strip()
    if s.lower() in ("true", "false"):
        return int(s.lower() == "true")
    return int(s, 0) if not re.fullmatch(r"[-+]?\d+", s) else int(s)


def _to_float(v) -> float:
    s = str(v).strip().lower()
    if s.endswith("f") and not s.endswith("inf"):  # C-style 1.0f
        s = s[:-1]
    return float(s)


def _to_bool(v) -> bool:
    s = str(v).strip().lower()
    if s in ("true", "t", "1"):
        return True
    if s in ("false", "f", "0"):
        return False
    raise ValueError(v)


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[{}<>:\[\],;])
  | (?P<word>[-+]?0[xX][0-9a-fA-F]+
             | [-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?(?![A-Za-z0-9_])
             | [-+]?[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)


def _tokens(text: str, where: str) -> Iterator[tuple[str, str, int, int]]:
    pos, line, line_start = 0, 1, 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise CaffeFormatError(f"{where}:{line}:{pos - line_start + 1}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        tok = m.group()
        if kind != "ws":
            yield kind, tok, line, pos - line_start + 1
        nl = tok.count("\n")
        if nl:
            line += nl
            line_start = m.start() + tok.rfind("\n") + 1
        pos = m.end()


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse_prototxt(source: str | os.PathLike, where: str | None = None) -> Message:
    """Parse protobuf text format (a path or the text itself) into a :class:`Message`.

    Args:
        source: a path to a ``.prototxt`` file, or its text.
        where: name used in error messages (defaults to the path, or ``<prototxt>``).

    Raises:
        CaffeFormatError: with ``file:line:column`` when the text is malformed.
    """
    if isinstance(source, os.PathLike) or not any(c in source for c in '{\n"'):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CaffeFormatError(f"cannot read {path}: {e}") from e
        where = where or str(path)
    else:
        text = str(source)
        where = where or "<prototxt>"

    toks = list(_tokens(text, where))
    i = 0

    def err(msg: str, at: int | None = None) -> CaffeFormatError:
        if at is None:
            at = i
        if at < len(toks):
            _, tok, ln, col = toks[at]
            return CaffeFormatError(f"{where}:{ln}:{col}: {msg} (at {tok!r})")
        return CaffeFormatError(f"{where}: {msg} (at end of file)")

    def scalar() -> str:
        nonlocal i
        if i >= len(toks):
            raise err("expected a value")
        kind, tok, _, _ = toks[i]
        if kind == "str":
            parts = []
            while i < len(toks) and toks[i][0] == "str":  # adjacent strings concatenate
                parts.append(_unquote(toks[i][1]))
                i += 1
            return "".join(parts)
        if kind == "word":
            i += 1
            return Word(tok)
        raise err("expected a value")

    def block(msg: Message, close: str | None, opened: int = 0) -> None:
        nonlocal i
        while True:
            if i >= len(toks):
                if close is None:
                    return
                _, _, ln, col = toks[opened]
                raise CaffeFormatError(f"{where}:{ln}:{col}: unterminated block: missing {close!r} before the end of file")
            kind, tok, ln, _ = toks[i]
            if kind == "punct" and tok == close:
                i += 1
                return
            if kind == "punct" and tok in ",;":
                i += 1
                continue
            if kind != "word" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok):
                raise err("expected a field name")
            key = tok
            i += 1
            colon = i < len(toks) and toks[i][1] == ":" and toks[i][0] == "punct"
            if colon:
                i += 1
            if i < len(toks) and toks[i][0] == "punct" and toks[i][1] in "{<":
                end = "}" if toks[i][1] == "{" else ">"
                i += 1
                sub = Message(f"{where}:{ln} {key}")
                block(sub, end, i - 1)
                msg.add(key, sub)
            elif not colon:
                raise err(f"expected ':' or '{{' after {key!r}")
            elif i < len(toks) and toks[i][1] == "[" and toks[i][0] == "punct":
                i += 1
                while True:
                    if i < len(toks) and toks[i][1] == "]":
                        i += 1
                        break
                    if i < len(toks) and toks[i][0] == "punct" and toks[i][1] in "{<":
                        end = "}" if toks[i][1] == "{" else ">"
                        i += 1
                        sub = Message(f"{where}:{ln} {key}")
                        block(sub, end)
                        msg.add(key, sub)
                    else:
                        msg.add(key, scalar())
                    if i < len(toks) and toks[i][1] == ",":
                        i += 1
                    elif i < len(toks) and toks[i][1] == "]":
                        continue
                    else:
                        raise err(f"expected ',' or ']' in the list of {key!r}")
            else:
                msg.add(key, scalar())

    root = Message(where)
    block(root, None)
    return root


# --------------------------------------------------------------------------------------------
# Binary wire format
# --------------------------------------------------------------------------------------------

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5


class _Reader:
    """Iterates ``(field, wire_type, value)`` over one message held in a memoryview.

    ``value`` is an int for varints, a memoryview for length-delimited fields and for
    fixed32/fixed64 (4 or 8 raw bytes). Every read is bounds-checked: a truncated or corrupt
    buffer raises :class:`CaffeFormatError` naming the offset, never IndexError/struct.error.
    """

    def __init__(self, buf: memoryview, root: memoryview, what: str, source: str) -> None:
        self.buf, self.root, self.what, self.source = buf, root, what, source
        self.base = _abs(root, buf)

    def _fail(self, pos: int, msg: str) -> CaffeFormatError:
        return CaffeFormatError(
            f"{self.source}: truncated or corrupt caffemodel: {msg} in {self.what} at byte {self.base + pos} "
            f"(file has {self.base + len(self.buf)} bytes up to there); re-download or re-save the weights"
        )

    def varint(self, pos: int) -> tuple[int, int]:
        buf, n = self.buf, len(self.buf)
        result = shift = 0
        while True:
            if pos >= n:
                raise self._fail(pos, "varint runs past the end")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise self._fail(pos, "varint longer than 10 bytes")

    def __iter__(self) -> Iterator[tuple[int, int, object]]:
        pos, n = 0, len(self.buf)
        while pos < n:
            start = pos
            key, pos = self.varint(pos)
            field, wt = key >> 3, key & 7
            if field == 0:
                raise self._fail(start, "field number 0")
            if wt == _VARINT:
                value, pos = self.varint(pos)
            elif wt == _LEN:
                length, pos = self.varint(pos)
                if length > n - pos:
                    raise self._fail(start, f"field {field} declares {length} bytes but only {n - pos} remain")
                value = self.buf[pos:pos + length]
                pos += length
            elif wt in (_I32, _I64):
                size = 4 if wt == _I32 else 8
                if size > n - pos:
                    raise self._fail(start, f"field {field} needs {size} bytes but only {n - pos} remain")
                value = self.buf[pos:pos + size]
                pos += size
            elif wt == _SGROUP:  # deprecated groups: skip to the matching end-group
                depth, value = 1, None
                while depth:
                    k2, pos = self.varint(pos)
                    w2 = k2 & 7
                    if w2 == _SGROUP:
                        depth += 1
                    elif w2 == _EGROUP:
                        depth -= 1
                    elif w2 == _VARINT:
                        _, pos = self.varint(pos)
                    elif w2 == _LEN:
                        ln, pos = self.varint(pos)
                        pos += ln
                    elif w2 in (_I32, _I64):
                        pos += 4 if w2 == _I32 else 8
                    else:
                        raise self._fail(pos, f"unknown wire type {w2}")
                    if pos > n:
                        raise self._fail(start, "group runs past the end")
            else:
                raise self._fail(start, f"unknown wire type {wt} for field {field}")
            yield field, wt, value, start

    def sub(self, value: memoryview, what: str) -> _Reader:
        """A reader over a length-delimited field of this message (offsets stay absolute)."""
        return _Reader(value, self.root, what, self.source)


def _blob(r: _Reader) -> np.ndarray:
    """Decode one BlobProto into a float32 array of its shape."""
    shape: list[int] | None = None
    legacy = [0, 0, 0, 0]
    has_legacy = False
    chunks: list[np.ndarray] = []
    dchunks: list[np.ndarray] = []
    for field, wt, value, start in r:
        if field == 7 and wt == _LEN:  # BlobShape
            shape = []
            for f2, w2, v2, _s2 in r.sub(value, "BlobShape"):
                if f2 != 1:
                    continue
                if w2 == _LEN:  # packed
                    sr = r.sub(v2, "BlobShape.dim")
                    p = 0
                    while p < len(v2):
                        d, p = sr.varint(p)
                        shape.append(_int64(d))
                elif w2 == _VARINT:
                    shape.append(_int64(v2))
        elif field == 5:  # data, float
            if wt == _LEN:
                if len(value) % 4:
                    raise r._fail(start, f"packed float data of {len(value)} bytes (not a multiple of 4)")
                chunks.append(np.frombuffer(value, dtype="<f4"))
            elif wt == _I32:
                chunks.append(np.frombuffer(value, dtype="<f4"))
        elif field == 8:  # double_data
            if wt == _LEN:
                if len(value) % 8:
                    raise r._fail(start, f"packed double data of {len(value)} bytes (not a multiple of 8)")
                dchunks.append(np.frombuffer(value, dtype="<f8"))
            elif wt == _I64:
                dchunks.append(np.frombuffer(value, dtype="<f8"))
        elif field in (1, 2, 3, 4) and wt == _VARINT:
            legacy[field - 1] = _int64(value)
            has_legacy = True
    if chunks:
        data = np.concatenate(chunks) if len(chunks) > 1 else chunks[0].copy()
    elif dchunks:
        data = np.concatenate(dchunks).astype(np.float32)
    else:
        data = np.zeros(0, np.float32)
    if shape is None:
        shape = legacy if has_legacy else [data.size]
    count = int(np.prod(shape)) if shape else 1
    if any(d < 0 for d in shape) or count != data.size:
        raise CaffeFormatError(
            f"{r.source}: blob at byte {r.base} has shape {shape} ({count} values) but holds {data.size} values: "
            "truncated or corrupt caffemodel"
        )
    return data.astype(np.float32, copy=False).reshape(shape)


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read a binary ``.caffemodel``: ``{layer name: [blob arrays (float32)]}`` in file order.

    Layers without blobs are kept (with an empty list); both ``layer`` (field 100) and the
    legacy ``layers`` (field 2, V1LayerParameter) are read. Blob shapes come from ``BlobShape``
    or, for old files, from the legacy ``num/channels/height/width`` fields.

    Raises:
        CaffeFormatError: the file cannot be read, is truncated or corrupt, or holds no layers.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CaffeFormatError(f"cannot read {path}: {e.strerror or e}") from e
    if not data:
        raise CaffeFormatError(f"{path} is empty: not a caffemodel")
    buf = memoryview(data)
    net = _Reader(buf, buf, "NetParameter", str(path))
    layers: dict[str, list[np.ndarray]] = {}
    for field, wt, value, _ in net:
        if wt != _LEN or field not in (100, 2):
            continue
        v1 = field == 2
        lr = net.sub(value, "V1LayerParameter" if v1 else "LayerParameter")
        name, blobs = None, []
        for f2, w2, v2, _s2 in lr:
            if w2 != _LEN:
                continue
            if f2 == (4 if v1 else 1):
                try:
                    name = bytes(v2).decode("utf-8")
                except UnicodeDecodeError:
                    raise lr._fail(_s2, "layer name is not UTF-8") from None
            elif f2 == (6 if v1 else 7):
                blobs.append(_blob(lr.sub(v2, f"blob {len(blobs)} of layer {name or '?'}")))
        if name is None:
            raise CaffeFormatError(f"{path}: a layer at byte {lr.base} has no name: corrupt caffemodel")
        layers[name] = blobs
    if not layers:
        raise CaffeFormatError(f"{path} holds no layers (no NetParameter.layer fields): not a caffemodel")
    return layers


def _abs(parent: memoryview, child: memoryview) -> int:
    """Absolute offset of ``child`` (a slice of ``parent``) within the file."""
    if len(child) == 0 or len(parent) == 0:
        return 0
    p = np.frombuffer(parent, dtype=np.uint8)
    c = np.frombuffer(child, dtype=np.uint8)
    return int(c.__array_interface__["data"][0] - p.__array_interface__["data"][0])


# Writer ---------------------------------------------------------------------------------------


def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(field: int, payload: bytes | memoryview) -> list[bytes | memoryview]:
    return [_varint(field << 3 | _LEN), _varint(len(payload)), payload]


def _encode_blob(arr: np.ndarray) -> bytes:
    a = np.asarray(arr, dtype="<f4")  # not ascontiguousarray: it turns 0-D into 1-D; tobytes() is C order
    dims = b"".join(_varint(int(d)) for d in a.shape)
    shape = b"".join(_len_field(1, dims)) if a.shape else b""
    parts = _len_field(7, shape) + _len_field(5, a.tobytes())
    return b"".join(bytes(p) for p in parts)


def encode_caffemodel(
    layers: Mapping[str, Sequence[np.ndarray]],
    types: Mapping[str, str] | None = None,
    name: str | None = None,
) -> bytes:
    """Encode ``{layer name: [arrays]}`` as a binary ``NetParameter`` (``layer`` = field 100).

    Each array becomes a ``BlobProto`` with a ``BlobShape`` and packed float32 data; ``types``
    optionally gives each layer's ``type`` string (``Convolution``, ``PReLU`` ...).
    """
    out: list[bytes] = []
    if name:
        out += _len_field(1, name.encode())
    for lname, blobs in layers.items():
        body = _len_field(1, lname.encode())
        if types and lname in types:
            body += _len_field(2, types[lname].encode())
        for arr in blobs:
            body += _len_field(7, _encode_blob(np.asarray(arr)))
        out += _len_field(100, b"".join(bytes(p) for p in body))
    return b"".join(bytes(p) for p in out)


def write_caffemodel(
    path: str | os.PathLike,
    layers: Mapping[str, Sequence[np.ndarray]],
    types: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Path:
    """Write ``{layer name: [arrays]}`` as a binary ``.caffemodel`` readable by Caffe and OpenCV.

    Example:
        >>> import numpy as np, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "w.caffemodel")
        >>> _ = write_caffemodel(p, {"conv1": [np.ones((4, 3, 3, 3)), np.zeros(4)]}, {"conv1": "Convolution"})
        >>> [b.shape for b in read_caffemodel(p)["conv1"]]
        [(4, 3, 3, 3), (4,)]
    """
    path = Path(path)
    data = encode_caffemodel(layers, types, name)
    return write_bytes_atomic(path, data)


# Used only by callers that want a byte view of a layer's raw fields (tests, debugging).
def _iter_fields(data: bytes, source: str = "<bytes>") -> Iterator[tuple[int, int, object]]:
    buf = memoryview(data)
    for f, w, v, _ in _Reader(buf, buf, "message", source):
        yield f, w, v

