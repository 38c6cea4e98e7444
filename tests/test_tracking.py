"""Tracking and smoothing with hand-made poses: OKS, Hungarian matching, memory, One-Euro."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepose.layouts import get_layout
from edgepose.results import Person
from edgepose.tracking import COCO17_SIGMAS, OneEuroFilter, Smoothing, Tracker, keypoint_sigmas, oks

pytest.importorskip("scipy", reason="tracking needs scipy (extra 'track')")

LAY = get_layout("coco18")
RNG = np.random.default_rng(0)
#: a standing person's shape, 18 parts, about 60 x 170 px
SHAPE = np.c_[RNG.uniform(-30, 30, 18), RNG.uniform(-85, 85, 18)]


def pose(cx: float, cy: float, missing: tuple[int, ...] = (), jitter: float = 0.0, rng=RNG) -> np.ndarray:
    kp = np.zeros((18, 3), np.float32)
    kp[:, :2] = SHAPE + (cx, cy) + (rng.normal(0, jitter, (18, 2)) if jitter else 0)
    kp[:, 2] = 0.8
    kp[list(missing)] = 0
    return kp


def people(*kps: np.ndarray) -> list[Person]:
    return [Person(k.copy(), 1.0) for k in kps]


# -- OKS ------------------------------------------------------------------------------------------
def test_sigmas_follow_the_coco17_mapping():
    s = keypoint_sigmas(LAY)
    assert s.shape == (18,)
    assert s[0] == COCO17_SIGMAS[0]  # nose
    assert s[2] == COCO17_SIGMAS[6]  # RShoulder -> right_shoulder
    assert s[1] == pytest.approx(0.079)  # the neck is not in COCO-17


def test_oks_basic_properties():
    a, b = pose(100, 200), pose(400, 200)
    sim = oks(np.stack([a, b]), np.stack([a, b]), keypoint_sigmas(LAY), 60 * 170)
    assert sim.shape == (2, 2)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert sim[0, 1] < 1e-6 and sim[1, 0] < 1e-6
    near = oks(a[None], pose(105, 203)[None], keypoint_sigmas(LAY), 60 * 170)[0, 0]
    assert 0.3 < near < 1.0
    # no part in common -> 0, not NaN
    c = a.copy()
    c[:, 2] = 0
    assert oks(a[None], c[None], keypoint_sigmas(LAY), 100.0)[0, 0] == 0.0


# -- tracker ---------------------------------------------------------------------------------------
def test_ids_follow_people_when_detection_order_changes():
    tr = Tracker(LAY)
    for f in range(20):
        a, b = pose(100 + 5 * f, 200), pose(500 - 5 * f, 220)
        out = tr.update(people(a, b) if f % 2 == 0 else people(b, a), f / 25)
        got = {("a" if np.array_equal(p.keypoints, a) else "b"): p.id for p in out}
        assert got == {"a": 0, "b": 1}, f


def test_people_crossing_keep_their_ids():
    """Two people walk through each other: velocity prediction keeps the ids on the right people."""
    tr = Tracker(LAY)
    for f in range(30):
        xa, xb = 100 + 12 * f, 460 - 12 * f
        out = tr.update(people(pose(xa, 200), pose(xb, 200)), f / 25)
        assert [p.id for p in out] == [0, 1], f


def test_a_person_hidden_for_a_few_frames_gets_the_same_id_back():
    tr = Tracker(LAY, max_age=5)
    for f in range(5):
        tr.update(people(pose(100 + 4 * f, 200), pose(600, 300)), f / 25)
    for f in range(5, 9):  # person 0 hidden for 4 frames, still walking
        assert [p.id for p in tr.update(people(pose(600, 300)), f / 25)] == [1]
    out = tr.update(people(pose(100 + 4 * 9, 200), pose(600, 300)), 9 / 25)
    assert [p.id for p in out] == [0, 1]


def test_a_track_gone_longer_than_max_age_is_retired():
    tr = Tracker(LAY, max_age=2)
    tr.update(people(pose(100, 200)), 0.0)
    for f in range(1, 5):
        tr.update([], f / 25)
    assert tr.tracks == []
    assert [p.id for p in tr.update(people(pose(100, 200)), 0.2)] == [1]  # ids are never reused


def test_a_new_person_far_away_gets_a_new_id():
    tr = Tracker(LAY)
    tr.update(people(pose(100, 200)), 0.0)
    out = tr.update(people(pose(100, 200), pose(900, 200)), 0.04)
    assert [p.id for p in out] == [0, 1]


def test_partial_poses_still_match():
    tr = Tracker(LAY)
    tr.update(people(pose(100, 200)), 0.0)
    out = tr.update(people(pose(103, 201, missing=tuple(range(8, 18)))), 0.04)
    assert out[0].id == 0


def test_empty_frames_and_empty_people():
    tr = Tracker(LAY)
    assert tr.update([], 0.0) == []
    empty = np.zeros((18, 3), np.float32)
    out = tr.update(people(empty), 0.04)
    assert out[0].id == 0  # a person with no parts still gets an id (it cannot match anything)


@settings(max_examples=30, deadline=None)
@given(perm_seed=st.integers(0, 10_000), n=st.integers(1, 5))
def test_ids_do_not_depend_on_detection_order(perm_seed, n):
    rng = np.random.default_rng(perm_seed)
    centers = [(150 + 250 * i, 200 + 30 * (i % 2)) for i in range(n)]
    tr = Tracker(LAY)
    first = tr.update(people(*[pose(*c) for c in centers]), 0.0)
    want = {round(float(p.keypoints[1, 0])): p.id for p in first}
    for f in range(1, 4):
        order = rng.permutation(n)
        dets = people(*[pose(centers[i][0] + 2 * f, centers[i][1], jitter=1.5, rng=rng) for i in order])
        out = tr.update(dets, f / 25)
        for p, i in zip(out, order, strict=True):
            assert p.id == want[round(float(SHAPE[1, 0] + centers[i][0]))]


def test_bad_arguments():
    with pytest.raises(ValueError):
        Tracker(LAY, max_age=-1)


# -- One-Euro ---------------------------------------------------------------------------------------
def test_one_euro_removes_jitter_from_a_still_point():
    rng = np.random.default_rng(1)
    f = OneEuroFilter(Smoothing(min_cutoff=1.0, beta=0.0))
    raw = 100 + rng.normal(0, 3, (200, 1, 2))
    out = np.array([f(raw[i], np.array([True]), i / 30) for i in range(200)])
    assert out[50:].std() < 0.4 * raw[50:].std()
    assert abs(out[50:].mean() - 100) < 1.0


def test_one_euro_follows_fast_motion_with_beta():
    t = np.arange(60) / 30
    x = (600 * t)[:, None, None] * np.ones((1, 1, 2))  # 600 px/s
    lag = {}
    for beta in (0.0, 0.05):
        f = OneEuroFilter(Smoothing(min_cutoff=1.0, beta=beta))
        out = np.array([f(x[i], np.array([True]), t[i]) for i in range(60)])
        lag[beta] = float(np.abs(out[-1] - x[-1]).max())
    assert lag[0.05] < 0.3 * lag[0.0]
    assert lag[0.05] < 15


def test_one_euro_absent_points_pass_through_and_restart():
    f = OneEuroFilter(Smoothing(min_cutoff=1.0, beta=0.0))
    f(np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([True, True]), 0.0)
    out = f(np.array([[10.0, 10.0], [50.0, 50.0]]), np.array([True, False]), 0.1)
    assert 0 < out[0, 0] < 10 and out[1, 0] == 50.0
    out = f(np.array([[10.0, 10.0], [80.0, 80.0]]), np.array([True, True]), 0.2)
    assert out[1, 0] == 80.0  # restarted: no pull towards its old position


def test_tracker_smoothing_keeps_missing_parts_missing_and_reduces_jitter():
    rng = np.random.default_rng(2)
    raw_tr, smooth_tr = Tracker(LAY), Tracker(LAY, smoothing=Smoothing(min_cutoff=0.5, beta=0.0))
    raw, smooth = [], []
    for f in range(60):
        kp = pose(300, 300, missing=(17,), jitter=2.0, rng=rng)
        raw.append(raw_tr.update(people(kp), f / 30)[0].keypoints[:17, :2])
        p = smooth_tr.update(people(kp), f / 30)[0]
        assert p.keypoints[17].tolist() == [0, 0, 0] and p.id == 0 and p.keypoints.dtype == np.float32
        smooth.append(p.keypoints[:17, :2])
    assert np.std(smooth[20:], axis=0).mean() < 0.6 * np.std(raw[20:], axis=0).mean()
