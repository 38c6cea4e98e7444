"""Subcommands of the ``edgepose`` CLI; each module has ``configure(parser)``."""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "models/mobilenet_thin.onnx"


def _pixels(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, not {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("the pixel cap must be >= 0 (0: no cap)")
    return n


def add_model_args(p: argparse.ArgumentParser, size: bool = True) -> None:
    """The options every model-running subcommand shares."""
    p.add_argument("--model", default=DEFAULT_MODEL, help="edgepose ONNX model (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda[:N], tensorrt[:N][+fp16], openvino (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    if size:
        p.add_argument("--size", default=None, help="input pixel budget: small, default, large, accurate (several scales "
                       "+ flip) or WxH (default: the model's preferred size)")
        p.add_argument("--scales", default=None, metavar="S,S,..", help="average the network over these scales of the "
                       "budget, e.g. 1,0.75,0.5 (default: one scale; the accurate preset's set with --size accurate)")
        p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="also average the mirrored frame (default: off; on with --size accurate)")
    p.add_argument("--matching", choices=["greedy", "hungarian"], default=None, help="limb assignment (default greedy)")
    p.add_argument("--max-pixels", type=_pixels, default=None, metavar="N",
                   help="refuse a picture or video larger than N pixels, read from its header before decoding where "
                        "the format allows (default 89478485, Pillow's; 0: no cap)")
    p.add_argument("--profile", default=None, metavar="JSON", help="run as `edgepose tune` chose: model, device, size, "
                   "scales, flip, threads, workers and decoder from its profile (explicit --threads/--size/... win)")


def apply_max_pixels(args: argparse.Namespace) -> None:
    """``--max-pixels``: the process's cap for decoded pictures and video frames (before any is read)."""
    if getattr(args, "max_pixels", None) is not None:
        from edgepose.imageio import set_max_pixels

        set_max_pixels(args.max_pixels)


def estimator_from_args(args: argparse.Namespace):
    """Build a :class:`edgepose.runner.PoseEstimator` from the shared options."""
    import dataclasses

    from edgepose.decode import DecoderConfig
    from edgepose.runner import PoseEstimator
    from edgepose.tune.profile import apply_to_args

    apply_max_pixels(args)
    prof = apply_to_args(args)  # fills args from --profile (once)
    cfg = DecoderConfig(**prof["decoder"]) if prof else DecoderConfig()
    if getattr(args, "matching", None):
        cfg = dataclasses.replace(cfg, matching=args.matching)
    return PoseEstimator(args.model, device=args.device, threads=args.threads, size=getattr(args, "size", None),
                         decoder=cfg, scales=getattr(args, "scales", None), flip=getattr(args, "flip", None))
