"""Caffe-converted models of every layout run through the same runtime, driven only by metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import IMAGES

pytestmark = pytest.mark.convert
caffe = pytest.importorskip("converters.caffe")
from test_caffe import make_caffemodel, tiny_prototxt  # noqa: E402

from edgepose.imageio import read_image  # noqa: E402
from edgepose.results import coco_results, to_coco17  # noqa: E402
from edgepose.runner import PoseEstimator  # noqa: E402


@pytest.mark.parametrize("layout,hm,paf", [("coco18", 19, 38), ("mpi15", 16, 28), ("body25", 26, 52)])
def test_layout_runs_end_to_end(tmp_path, layout, hm, paf):
    proto = tiny_prototxt(tmp_path, hm=hm, paf=paf, name=layout)
    weights = tmp_path / f"{layout}.caffemodel"
    make_caffemodel(proto, weights, seed=3)
    out = caffe.convert_caffe(proto, weights, tmp_path / f"{layout}.onnx")
    est = PoseEstimator(out, device="cpu", threads=2, size="184x184")
    assert est.layout.id == layout and est.meta.mean == 128.0 and est.meta.scale == pytest.approx(1 / 256)
    img, _ = read_image(IMAGES / "tfpose__p1.jpg")
    x, _ = est.preprocess(img)
    assert -0.51 <= x.min() and x.max() <= 0.5  # CMU normalisation (x - 128) / 256 from the metadata
    res = est.predict(img)
    k = est.layout.num_parts
    doc = res.to_openpose_json()
    assert all(len(p["pose_keypoints_2d"]) == 3 * k for p in doc["people"])
    json.dumps(doc)
    # maps with known people: drive the decoder through the layout from the model's metadata
    h, w = 23, 23
    heat = np.zeros((hm, h, w), np.float32)
    pafs = np.zeros((paf, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    pts = rng.uniform(3, 19, size=(k, 2))
    for i, (px, py) in enumerate(pts):
        heat[i] = np.maximum(heat[i], np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / 2.0))
    for (a, b), (cx, cy) in zip(est.layout.limbs, est.layout.paf_channels):
        v = pts[b] - pts[a]
        n = np.linalg.norm(v)
        u = v / n
        rel = np.stack([xx - pts[a][0], yy - pts[a][1]])
        along = u[0] * rel[0] + u[1] * rel[1]
        across = np.abs(-u[1] * rel[0] + u[0] * rel[1])
        on = (along >= -1) & (along <= n + 1) & (across <= 1.0)
        pafs[cx][on], pafs[cy][on] = u[0], u[1]
    from edgepose.runner import Letterbox

    people, _ = est.decode_maps(heat, pafs, Letterbox((184, 184), (184, 184), (184, 184)))
    assert len(people) >= 1
    best = people[0]
    assert best.num_parts >= k - 2
    if est.layout.to_coco17 is not None:
        k17 = to_coco17(best.keypoints, est.layout)
        assert k17.shape == (17, 3)
        res.people = people
        assert all(len(r["keypoints"]) == 51 for r in coco_results(res, 1))
