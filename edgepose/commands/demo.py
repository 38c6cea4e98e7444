"""``edgepose demo``: the default model on a sample picture -> a rendered image and OpenPose JSON.

The picture is scikit-image's public-domain ``astronaut.png`` (shipped inside its wheel: no
download) unless ``--image`` names your own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgepose.commands import add_model_args, estimator_from_args


def sample_image() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the demo picture comes with scikit-image: pip install 'edgepose[demo]', or pass --image")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", type=Path, help="your own picture (default: scikit-image's astronaut.png)")
    p.add_argument("--out-dir", type=Path, default=Path("demo_out"), help="where to write (default %(default)s)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgepose.imageio import read_image
    from edgepose.sinks import OpenPoseJsonDir, RenderSink

    path = args.image or sample_image()
    img, _ = read_image(path)
    est = estimator_from_args(args)
    res = est.predict(img, source=path.name)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rendered = args.out_dir / f"{path.stem}_rendered.jpg"
    RenderSink(rendered).write(img, res)
    js = OpenPoseJsonDir(args.out_dir).write(res)
    print(f"{path.name}: {len(res.people)} people; providers {', '.join(est.providers)}")
    for i, p in enumerate(res.people):
        print(f"  person {i}: score {p.score:.2f}, {p.num_parts} of {est.layout.num_parts} parts")
    t = res.timings
    print(f"  pre-process {t['preprocess']:.1f} ms, inference {t['inference']:.1f} ms, decode {t['decode']:.2f} ms")
    print(f"wrote {rendered} and {js}")
    return 0
