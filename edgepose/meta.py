"""The metadata contract: what every edgepose model carries in its ONNX ``metadata_props``.

The runtime reads only these properties; it has no per-model branches and no side-car files.
All values are strings (ONNX metadata is string to string); lists and dicts are JSON.

Example:
    >>> meta = ModelMeta.from_props({"edgepose_format": "1", "layout": "coco18", ...})  # doctest: +SKIP
    >>> meta.layout.num_parts  # doctest: +SKIP
    18
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from edgepose.layouts import Layout

__all__ = ["FORMAT_VERSION", "MetadataError", "ModelMeta", "HEATMAPS", "PAFS", "INPUT"]

FORMAT_VERSION = "1"
HEATMAPS = "heatmaps"
PAFS = "pafs"
INPUT = "image"


class MetadataError(ValueError):
    """The model lacks edgepose metadata or carries inconsistent metadata."""


@dataclass(frozen=True)
class ModelMeta:
    """Everything the runtime needs to know about a model.

    Attributes:
        layout: keypoint layout (names, limbs, PAF channels, COCO-17 mapping).
        stride: output stride of the maps relative to the network input.
        channel_order: ``"BGR"`` or ``"RGB"``: order of the input's colour channels.
        scale, mean: the network input is ``(pixel - mean) * scale`` with pixels in 0..255.
        input_size: preferred ``(width, height)`` of the network input.
        variant: ``fp32``, ``fp16`` or ``int8``.
        source_sha256: sha256 of the file the model was converted from.
        extra: every other property (converter version, calibration details, ...).
    """

    layout: Layout
    stride: int = 8
    channel_order: str = "BGR"
    scale: float = 1.0
    mean: float = 0.0
    input_size: tuple[int, int] = (432, 368)
    variant: str = "fp32"
    source_sha256: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """Serialise to ``metadata_props`` key/value strings."""
        lay = self.layout
        props = {
            "edgepose_format": FORMAT_VERSION,
            "layout": lay.id,
            "keypoint_names": json.dumps(list(lay.names)),
            "limbs": json.dumps([list(x) for x in lay.limbs]),
            "paf_channels": json.dumps([list(x) for x in lay.paf_channels]),
            "coco17_map": json.dumps(None if lay.to_coco17 is None else list(lay.to_coco17)),
            "render_limbs": json.dumps(None if lay.render_limbs is None else list(lay.render_limbs)),
            "stride": str(self.stride),
            "input_channel_order": self.channel_order,
            "input_scale": repr(float(self.scale)),
            "input_mean": repr(float(self.mean)),
            "input_layout": "NCHW",
            "preferred_input_size": f"{self.input_size[0]}x{self.input_size[1]}",
            "variant": self.variant,
            "source_sha256": self.source_sha256,
            "outputs": json.dumps([HEATMAPS, PAFS]),
        }
        if lay.mirror is not None:  # only layouts whose names do not say left/right carry it
            props["mirror_parts"] = json.dumps(list(lay.mirror))
        for k, v in self.extra.items():
            props.setdefault(k, str(v))
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "model") -> ModelMeta:
        """Parse ``metadata_props``.

        Raises:
            MetadataError: when the edgepose properties are missing or malformed.
        """
        if "edgepose_format" not in props or "layout" not in props:
            raise MetadataError(
                f"{where} has no edgepose metadata (metadata_props lacks 'edgepose_format'/'layout'); "
                "export it with `edgepose convert ...` so that it describes its layout, stride and input"
            )
        try:
            layout = Layout.from_dict(
                {
                    "id": props["layout"],
                    "names": json.loads(props["keypoint_names"]),
                    "limbs": json.loads(props["limbs"]),
                    "paf_channels": json.loads(props["paf_channels"]),
                    "to_coco17": json.loads(props.get("coco17_map", "null")),
                    "render_limbs": json.loads(props.get("render_limbs", "null")),
                    "mirror": json.loads(props.get("mirror_parts", "null")),
                }
            )
            w, h = (int(v) for v in props.get("preferred_input_size", "432x368").lower().split("x"))
            if not (16 <= w <= 16384 and 16 <= h <= 16384):
                raise ValueError(f"preferred_input_size {w}x{h} is outside 16..16384 pixels a side")
            stride = int(props.get("stride", "8"))
            if not 1 <= stride <= 64:
                raise ValueError(f"stride must be 1..64 (the maps' step in input pixels), not {stride}")
            order = props.get("input_channel_order", "BGR").upper()
            if order not in ("BGR", "RGB"):
                raise ValueError(f"input_channel_order must be BGR or RGB, not {order!r}")
            known = {
                "edgepose_format", "layout", "keypoint_names", "limbs", "paf_channels", "coco17_map",
                "render_limbs", "stride", "input_channel_order", "input_scale", "input_mean",
                "input_layout", "preferred_input_size", "variant", "source_sha256", "outputs", "mirror_parts",
            }  # fmt: skip
            return cls(
                layout=layout,
                stride=stride,
                channel_order=order,
                scale=float(props.get("input_scale", "1.0")),
                mean=float(props.get("input_mean", "0.0")),
                input_size=(w, h),
                variant=props.get("variant", "fp32"),
                source_sha256=props.get("source_sha256", ""),
                extra={k: v for k, v in props.items() if k not in known},
            )
        except RecursionError:
            raise MetadataError(f"{where} has malformed edgepose metadata: JSON nested too deeply") from None
        except (KeyError, ValueError, TypeError) as e:
            raise MetadataError(f"{where} has malformed edgepose metadata: {e}") from e
