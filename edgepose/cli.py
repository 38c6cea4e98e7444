"""The ``edgepose`` command: one script, argparse subcommands (also ``python -m edgepose``).

Subcommands live in the modules named in :data:`COMMANDS`; each module has
``configure(parser)`` (adds its arguments and sets ``func``). Modules are imported lazily, so
``edgepose --help`` is fast and a missing optional extra only breaks the subcommand needing it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("edgepose.commands.info", "show a model's metadata, inputs/outputs and this machine's providers"),
    "run": ("edgepose.commands.run", "estimate poses in an image, a folder, a video, a camera or a stream"),
    "eval": ("edgepose.commands.evaluate", "score a model on a COCO keypoint set (AP, AR, stage timings)"),
    "demo": ("edgepose.commands.demo", "run the model on a sample picture and write a rendered image and JSON"),
    "convert": ("edgepose.commands.convert", "export models to ONNX (tfpose, caffe) and build variants"),
    "report-variants": ("edgepose.commands.report_variants", "accuracy/speed/size report of a model's fp16 and int8 variants"),
    "triton": ("edgepose.commands.triton", "export a Triton model repository, or serve one on this machine (development)"),
    "bench": ("edgepose.commands.bench", "benchmark providers x variants x threads x sizes, with baselines"),
    "tune": ("edgepose.commands.tune", "measure this device on your frames and write the profile to run with"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgepose", description="Multi-person pose estimation with ONNX Runtime.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(_module=module)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Two passes: find the subcommand, then let its module add its arguments.
    known = [a for a in argv if a not in ("-h", "--help")]
    pre, _ = parser.parse_known_args(known) if any(a in COMMANDS for a in known) else (argparse.Namespace(command=None), None)
    if pre.command is None:
        parser.parse_args(argv)  # --help, or an error for an unknown command
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[pre.command][0])
    sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    module.configure(sub_action.choices[pre.command])
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose == 0 and not args.quiet:
        logging.getLogger("edgepose").setLevel(logging.WARNING)
    # --max-pixels holds for this command only (main() may run again in the same process)
    im = sys.modules.get("edgepose.imageio")
    cap = im.MAX_PIXELS if im is not None else None
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line for the errors we raise on purpose
        if args.verbose > 1 or not _is_user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        im = sys.modules.get("edgepose.imageio")
        if im is not None:
            im.set_max_pixels(im.DEFAULT_MAX_PIXELS if cap is None else cap)


def _is_user_error(e: Exception) -> bool:
    names = {"ExportError", "ModelError", "MetadataError", "ProviderUnavailable", "SourceError", "ImageError",
             "CalibrationError", "PreviewError", "ServerError", "RequestError", "FileNotFoundError", "ValueError", "ImportError", "ModuleNotFoundError"}  # fmt: skip
    return any(c.__name__ in names for c in type(e).__mro__)


if __name__ == "__main__":
    sys.exit(main())
