"""Multi-scale and flip inference end to end: the real model on real pictures, the presets, bad scale sets."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgepose.layouts import Layout, get_layout
from edgepose.multiscale import ACCURATE, ScalePlan, parse_scales


@pytest.fixture(scope="module")
def picture(data_dir):
    return cv2.imread(str(sorted((data_dir / "images").glob("*.jpg"))[-1]))


def test_parse_scales():
    assert parse_scales("0.5,1,0.75,1") == (1.0, 0.75, 0.5)
    assert parse_scales([1, 0.5]) == (1.0, 0.5)
    for bad in ("", "a,b", "1,-0.5", "0"):
        with pytest.raises(ValueError):
            parse_scales(bad)


def test_scale_plans_and_their_errors():
    lay = get_layout("coco18")
    plan = ScalePlan.make((432, 368), (1, 0.5), True, lay)
    assert plan.budgets == ((432, 368), (216, 184)) and plan.runs == 4 and not plan.single
    assert ScalePlan.make((432, 368), (1,), False, lay).single
    with pytest.raises(ValueError, match="too small"):
        ScalePlan.make((432, 368), (1, 0.02), False, lay)
    with pytest.raises(ValueError, match="megapixel"):
        ScalePlan.make((432, 368), (12,), False, lay)
    blob = Layout(id="blob", names=("a", "b"), limbs=((0, 1),), paf_channels=((0, 1),))
    with pytest.raises(ValueError, match="no left/right"):
        ScalePlan.make((432, 368), (1,), True, blob)


def test_the_accurate_preset(model_path):
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cpu", threads=2, size="accurate")
    assert est.plan.scales == tuple(sorted(ACCURATE["scales"], reverse=True))
    assert est.plan.flip == ACCURATE["flip"]
    assert est.budget == est.plan.budgets[0]
    assert est.infer_people is not None
    # explicit options override the preset's
    est = PoseEstimator(model_path, device="cpu", threads=2, size="accurate", scales=(1,), flip=False)
    assert est.plan.single and est.infer_people is None


def test_multi_scale_flip_on_a_real_picture(model_path, picture):
    from edgepose.runner import PoseEstimator

    single = PoseEstimator(model_path, device="cpu", threads=2, size="default")
    multi = PoseEstimator(model_path, device="cpu", threads=2, size="default", scales="1,0.75", flip=True)
    a, b = single.predict(picture), multi.predict(picture)
    assert len(b.people) >= 1
    h, w = picture.shape[:2]
    for p in b.people:
        vis = p.keypoints[:, 2] > 0
        assert vis.sum() >= 5
        assert (p.keypoints[vis, 0] >= -1).all() and (p.keypoints[vis, 0] <= w).all()
        assert (p.keypoints[vis, 1] >= -1).all() and (p.keypoints[vis, 1] <= h).all()
    # the same people, found in about the same places (the best person's joints within a few pixels)
    best_a = max(a.people, key=lambda p: p.score)
    best_b = max(b.people, key=lambda p: p.score)
    both = (best_a.keypoints[:, 2] > 0) & (best_b.keypoints[:, 2] > 0)
    assert both.sum() >= 5
    d = np.linalg.norm(best_a.keypoints[both, :2] - best_b.keypoints[both, :2], axis=1)
    assert np.median(d) < 0.03 * max(h, w)


def test_flip_of_a_mirrored_picture_finds_the_mirrored_person(model_path, picture):
    """Flip averaging is symmetric: the mirrored picture gives the mirrored keypoints, left and right swapped."""
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cpu", threads=2, size="default", flip=True)
    h, w = picture.shape[:2]
    w8 = w - w % 16  # a width whose network size is a whole number of cells, so the grids coincide
    img = np.ascontiguousarray(picture[:, :w8])
    a = max(est.predict(img).people, key=lambda p: p.score)
    b = max(est.predict(img[:, ::-1].copy()).people, key=lambda p: p.score)
    m = np.array(est.layout.mirror_parts())
    mirrored = np.empty_like(b.keypoints)
    mirrored[m] = b.keypoints  # part p of the mirror image is part m[p] here
    mirrored[:, 0] = (w8 - 1) - mirrored[:, 0]
    both = (a.keypoints[:, 2] > 0) & (mirrored[:, 2] > 0)
    assert both.sum() >= 8
    d = np.linalg.norm(a.keypoints[both, :2] - mirrored[both, :2], axis=1)
    assert np.median(d) < 3.0, d


def test_stream_and_predict_agree_with_multi_scale(model_path, data_dir):
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cpu", threads=1, size="small", scales="1,0.75", flip=True)
    files = sorted((data_dir / "images").glob("*.jpg"))[:3]
    frames = [cv2.imread(str(f)) for f in files]
    streamed = list(est.stream(frames, workers=2))
    assert [r.ok for r in streamed] == [True] * 3
    for img, r in zip(frames, streamed):
        ref = est.predict(img)
        assert len(ref.people) == len(r.people)
        for p, q in zip(sorted(ref.people, key=lambda p: -p.score), sorted(r.people, key=lambda p: -p.score)):
            np.testing.assert_allclose(p.keypoints, q.keypoints, atol=1e-3)


def test_averaged_maps_do_not_grow_with_the_image(model_path, picture):
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cpu", threads=2, size="small", scales="1,0.5", flip=True)
    sizes = set()
    for scale in (0.5, 2.0, 4.0):
        img = cv2.resize(picture, None, fx=scale, fy=scale)
        est.predict(img)
        st = est._ms_local.state
        sizes.add((st.acc[0].nbytes, st.acc[1].nbytes, sum(x.nbytes for x in st.inputs.values())))
    assert len(sizes) == 1


def test_cli_accurate_and_bad_scales(cli, model_path, data_dir, tmp_path):
    picture = sorted((data_dir / "images").glob("*.jpg"))[-1]
    code, out, err = cli("run", picture, "--model", model_path, "--device", "cpu", "--size", "small",
                         "--scales", "1,0.75", "--flip", "--json-dir", tmp_path)
    assert code == 0, err
    (js,) = tmp_path.glob("*_keypoints.json")
    assert len(json.loads(js.read_text())["people"]) >= 1
    code, out, err = cli("run", picture, "--model", model_path, "--device", "cpu", "--scales", "1,0.001")
    assert code == 2
    assert "too small" in err
