"""Writing the metadata contract (:mod:`edgepose.meta`) into ONNX models."""

from __future__ import annotations

import hashlib

from converters import __version__
from edgepose.fileio import sha256_file  # noqa: F401 - re-exported for the converters
from edgepose.meta import ModelMeta


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def set_metadata(model, meta: ModelMeta, **extra: str) -> None:
    """Replace the model's ``metadata_props`` with ``meta`` plus ``extra`` (converter version added).

    Args:
        model: an ``onnx.ModelProto``, changed in place.
        meta: the metadata to write.
        extra: more string properties (e.g. ``source_name``, calibration details).
    """
    props = meta.to_props()
    props.setdefault("converter_version", f"edgepose-converters {__version__}")
    for k, v in extra.items():
        props[k] = str(v)
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def get_props(model) -> dict[str, str]:
    """``metadata_props`` of an ``onnx.ModelProto`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}
