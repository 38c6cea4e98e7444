"""Which int8 kernels pay on this CPU (issue #14): the fp32 model against the int8 model with its
weights stored as int8 (ONNX Runtime's u8s8 kernels) and as uint8 (u8u8: the same numbers), and
optionally other int8 models (an s8s8 build, ``--extra NAME=PATH``). Interleaved rounds on real
pictures, 2 threads, median per model; AP on coco-val-mini with ``--ap``.

The two weight types come from one calibration: the script converts the given int8 model's weights
to the other type losslessly (``converters.variants.weights_to_u8`` and its inverse), so only the
kernels differ. ``--u8-only REGEX`` also tries models whose weights are uint8 only in the convs
whose names match (which part of the network needs the exact kernels?).

Usage::

    .venv/bin/python benchmarks/int8_kernels.py --ap --out benchmarks/results/int8-kernels-DATE.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def retype(src: Path, dest: Path, to: str, pattern: str | None = None) -> int:
    """Write ``src`` with its per-channel weights as ``to``: ``u8`` by the converter's own
    :func:`converters.variants.weights_to_u8` (only in convs whose name matches ``pattern`` when
    given), ``s8`` by its inverse. Returns how many convs' weights changed."""
    import numpy as np
    import onnx
    from onnx import numpy_helper as nh

    from converters.variants import weights_to_u8

    m = onnx.load(str(src))
    if to == "u8":
        n = len(weights_to_u8(m, [pattern] if pattern else None))
    else:
        inits = {i.name: i for i in m.graph.initializer}
        n = 0
        for node in m.graph.node:
            if node.op_type != "DequantizeLinear" or node.input[0] not in inits or len(node.input) < 3:
                continue
            w, z = inits[node.input[0]], inits.get(node.input[2])
            zp = None if z is None else nh.to_array(z)
            if w.data_type != onnx.TensorProto.UINT8 or zp is None or not (zp == 128).all():
                continue
            w.CopyFrom(nh.from_array((nh.to_array(w).astype(np.int16) - 128).astype(np.int8), w.name))
            z.CopyFrom(nh.from_array(np.zeros(zp.shape, np.int8), z.name))
            n += 1
    onnx.save(m, str(dest))
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "mobilenet_thin.onnx")
    ap.add_argument("--int8", type=Path, default=None, help="the int8 model (default: MODEL's .int8.onnx)")
    ap.add_argument("--extra", nargs="*", default=[], metavar="NAME=PATH", help="more models to time")
    ap.add_argument("--u8-only", nargs="*", default=[], metavar="REGEX", help="mixed models: u8 weights only there")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ap", action="store_true", help="also AP on coco-val-mini (one thread, every model)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import cv2
    import onnxruntime as ort

    from edgepose import PoseEstimator
    from edgepose.bench.machine import machine_info
    from edgepose.fileio import write_json_atomic
    from edgepose.session import session_options

    int8 = args.int8 or args.model.with_suffix(".int8.onnx")
    tmp = Path(tempfile.mkdtemp(prefix="edgepose-int8k-"))
    models = {"fp32": args.model}
    s8, u8 = tmp / "u8s8.onnx", tmp / "u8u8.onnx"
    retype(int8, s8, "s8")
    retype(s8, u8, "u8")
    models["int8 u8s8 (int8 weights)"] = s8
    models["int8 u8u8 (uint8 weights)"] = u8
    for pat in args.u8_only:
        p = tmp / f"mixed{len(models)}.onnx"
        n = retype(s8, p, "u8", pat)
        models[f"int8 u8u8 only in /{pat}/ ({n} convs)"] = p
    for spec in args.extra:
        name, _, path = spec.partition("=")
        models[name] = Path(path)
    est = PoseEstimator(args.model, threads=args.threads)
    pics = sorted((DATA / "images").iterdir())[:4]
    xs = [est.preprocess(cv2.imread(str(p)))[0][None].copy() for p in pics]
    xs = [x for x in xs if x.shape == xs[0].shape]
    sess = {k: ort.InferenceSession(str(p), session_options(args.threads), providers=["CPUExecutionProvider"])
            for k, p in models.items()}  # fmt: skip
    for s in sess.values():
        for x in xs[:2]:
            s.run(None, {"image": x})
    times: dict[str, list[float]] = {k: [] for k in sess}
    for r in range(args.rounds):
        for k in (list(sess) if r % 2 == 0 else list(reversed(list(sess)))):
            t0 = time.perf_counter()
            sess[k].run(None, {"image": xs[r % len(xs)]})
            times[k].append((time.perf_counter() - t0) * 1e3)
    base = statistics.median(times["fp32"])
    rows = {k: {"ms_median": round(statistics.median(v), 1), "x_fp32": round(base / statistics.median(v), 2)}
            for k, v in times.items()}  # fmt: skip
    if args.ap:
        from edgepose.evaluate import evaluate

        for k, p in models.items():
            rows[k]["AP"] = round(evaluate(PoseEstimator(p, threads=1), DATA / "coco-val-mini" / "person_keypoints.json",
                                           DATA / "coco-val-mini" / "images", progress=False)["AP"], 4)  # fmt: skip
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "input": list(xs[0].shape),
           "threads": args.threads, "rounds": args.rounds, "models": rows}  # fmt: skip
    for k, v in rows.items():
        print(f"{k:48s} {v['ms_median']:7.1f} ms  {v['x_fp32']:.2f}x fp32" + (f"  AP {v['AP']:.3f}" if "AP" in v else ""))
    if args.out:
        write_json_atomic(args.out, res, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
