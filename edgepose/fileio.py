"""Atomic file writing with ordinary permissions.

Every file edgepose writes (models, JSON, renders, reports, profiles) goes to a temporary name in
the destination folder first and is renamed over the target only once it is complete, so a crash
or a full disk never leaves a half-written file under the real name.

:func:`tempfile.mkstemp` creates its file with mode 0600, which made the exported models readable
by their owner only. Here the temporary file is created with ``os.open(..., 0o666)`` and the
kernel applies the process umask, so the result has the mode any other new file would get
(0644 with the usual umask 022), and nothing reads or changes the process-wide umask.

Example:
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "out.json")
    >>> _ = write_json_atomic(p, {"a": 1})
    >>> open(p).read()
    '{"a": 1}'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "sha256_file"]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def plain_path(path: Path) -> tuple[Path, str | None]:
    """``path`` for OpenCV, whose readers and writers crash the process on names that are not valid
    UTF-8: such a folder is reached through a symlink with a plain name in a private temporary folder
    (returned second: remove it when done). ``path``'s own name must be plain already."""
    if _utf8(str(path)):
        return path, None
    import tempfile

    link_dir = tempfile.mkdtemp(prefix="edgepose-out-")
    os.symlink(os.fsencode(path.parent.resolve()), os.fsencode(os.path.join(link_dir, "d")))
    return Path(link_dir, "d", path.name), link_dir


def _reserve(path: Path, suffix: str) -> Path:
    """Create an empty, uniquely named file beside ``path`` (mode 0666 minus the umask)."""
    for _ in range(100):
        # the temporary name holds no undecodable bytes (OpenCV crashes on them): the final name may
        name = path.name if _utf8(path.name) else "out"
        tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.partial{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot find a free temporary name beside {path}")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Args:
        path: the final file. Its folder is created if missing.
        keep_suffix: end the temporary name with ``path``'s suffix (for writers that choose the
            format by extension, such as ``cv2.imwrite``).

    Example:
        >>> import tempfile, os
        >>> out = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("done")
        >>> open(out).read()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _reserve(path, path.suffix if keep_suffix else ".tmp")
    handed, link_dir = plain_path(tmp)
    try:
        yield handed
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        if link_dir is not None:
            import shutil

            shutil.rmtree(link_dir, ignore_errors=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, obj, **dump_kw) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (``dump_kw`` go to :func:`json.dumps`)."""
    return write_text_atomic(path, json.dumps(obj, **dump_kw))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (models are identified by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
