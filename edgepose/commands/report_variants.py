"""``edgepose report-variants``: accuracy, size and speed of a model's variants against fp32.

Example:
    $ edgepose report-variants models/mobilenet_thin.onnx \\
        --annotations ../shared/data/coco-val-mini/person_keypoints.json \\
        --images ../shared/data/coco-val-mini/images --out-dir reports/variants
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _default_variants(model: Path) -> list[Path]:
    stem = model.name.removesuffix(".onnx")
    return [p for p in (model.with_name(f"{stem}.{v}.onnx") for v in ("fp16", "int8")) if p.is_file()]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="the fp32 model (e.g. models/mobilenet_thin.onnx)")
    p.add_argument("--variants", type=Path, nargs="+",
                   help="variant models (default: MODEL's .fp16.onnx and .int8.onnx next to it)")  # fmt: skip
    p.add_argument("--annotations", required=True, type=Path, help="COCO person_keypoints JSON")
    p.add_argument("--images", required=True, type=Path, help="folder with the images it names")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path("reports/variants"),
        help="where report.md and report.json go (default %(default)s)",
    )
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every session (default %(default)s)")
    p.add_argument("--device", default="cpu",
                   help="execution provider of every session: cpu, openvino, cuda, tensorrt (default %(default)s)")  # fmt: skip
    p.add_argument(
        "--size", default="432x368", help="input pixel budget WxH, the same for all models (default %(default)s)"
    )
    p.add_argument("--rounds", type=int, default=40, help="interleaved timing rounds (default %(default)s)")
    p.add_argument("--profile", action="store_true", help="add ORT's time per operator type")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgepose.bench.variants import to_markdown, variant_report
    from edgepose.fileio import write_json_atomic, write_text_atomic
    from edgepose.runner import parse_size

    if not args.model.is_file():
        raise FileNotFoundError(f"no model at {args.model}; build it with `make model`")
    if not args.annotations.is_file():
        raise FileNotFoundError(f"no annotation file {args.annotations}")
    if not args.images.is_dir():
        raise FileNotFoundError(f"no image folder {args.images}")
    variants = args.variants or _default_variants(args.model)
    if not variants:
        raise FileNotFoundError(f"no variants of {args.model} found next to it; build them with `make variants` "
                                "or pass --variants")  # fmt: skip
    size = parse_size(args.size, (432, 368))
    rep = variant_report(args.model, variants, annotations=args.annotations, images=args.images, threads=args.threads,
                         size=size, rounds=args.rounds, profile=args.profile, progress=not args.no_progress,
                         device=args.device)  # fmt: skip
    md = to_markdown(rep)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out_dir / "report.json", rep)
    write_text_atomic(args.out_dir / "report.md", md)
    print(md)
    print(f"wrote {args.out_dir / 'report.md'} and {args.out_dir / 'report.json'}")
    return 0
