"""Property tests for the decoder: random (and hostile) maps never crash and always give well-formed people."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgepose.decode.paf as paf_module
from edgepose.decode import (
    Connections,
    DecoderConfig,
    Peaks,
    Workspace,
    assign_greedy,
    assign_hungarian,
    decode,
    find_peaks,
    group_people,
    refine_peaks,
)
from edgepose.decode.synthetic import render_maps, stick_figure
from edgepose.layouts import get_layout

ndimage = pytest.importorskip("scipy.ndimage")

LAYOUTS = [get_layout(i) for i in ("coco18", "mpi15", "body25")]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

configs = st.builds(
    DecoderConfig,
    peak_threshold=st.sampled_from([0.0, 0.05, 0.1, 0.3]),
    smooth=st.booleans(),
    smooth_sigma=st.sampled_from([0.5, 1.0, 2.0]),
    max_peaks_per_part=st.sampled_from([1, 3, 32]),
    refine=st.booleans(),
    paf_samples=st.sampled_from([2, 5, 10]),
    paf_min_inlier_fraction=st.sampled_from([0.0, 0.5, 0.8, 1.0]),
    matching=st.sampled_from(["greedy", "hungarian"]),
    min_parts=st.sampled_from([1, 2, 3]),
    min_mean_score=st.sampled_from([-1.0, 0.0, 0.2]),
    max_people=st.sampled_from([1, 4, 64]),
    person_score=st.sampled_from(["total", "mean", "keypoint_mean", "keypoint_coverage"]),
)


def check_well_formed(kps, scores, layout, cfg, h, w):
    p = layout.num_parts
    assert kps.dtype == np.float32 and scores.dtype == np.float32
    assert kps.ndim == 3 and kps.shape[1:] == (p, 3) and scores.shape == (kps.shape[0],)
    assert kps.shape[0] <= cfg.max_people
    assert np.isfinite(kps).all() and np.isfinite(scores).all()
    assert (np.diff(scores) <= 0).all()
    assert (scores > 0).all()
    present = kps[:, :, 2] > 0
    assert (kps[~present] == 0).all(), "a missing part must be (0, 0, 0)"
    assert (kps[:, :, 2][present] > cfg.peak_threshold).all()
    assert (present.sum(axis=1) >= cfg.min_parts).all()
    x, y = kps[:, :, 0][present], kps[:, :, 1][present]
    assert (x >= 0).all() and (x <= w - 1).all() and (y >= 0).all() and (y <= h - 1).all()
    # no peak in two people: (part, x, y) of present keypoints are unique
    rows = {(j, float(kps[i, j, 0]), float(kps[i, j, 1])) for i, j in zip(*np.nonzero(present), strict=True)}
    assert len(rows) == int(present.sum())


@st.composite
def hostile_maps(draw):
    """Random maps of a random small size: noise, blobs, constant patches, NaN / inf / huge values."""
    layout = draw(st.sampled_from(LAYOUTS))
    h, w = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "sparse", "quantized", "constant"]))
    nh, npaf = layout.num_parts + draw(st.sampled_from([0, 1])), 2 * layout.num_limbs
    if kind == "uniform":
        hm = rng.uniform(-0.2, 1.2, (nh, h, w))
    elif kind == "sparse":
        hm = (rng.uniform(size=(nh, h, w)) > 0.9) * rng.uniform(0, 1, (nh, h, w))
    elif kind == "quantized":  # many ties and plateaus
        hm = rng.integers(0, 3, (nh, h, w)) / 2.0
    else:
        hm = np.full((nh, h, w), rng.uniform(0, 1))
    paf = rng.uniform(-1, 1, (npaf, h, w)) * draw(st.sampled_from([0.0, 1.0, 1e3]))
    for arr in (hm, paf):
        for _ in range(draw(st.integers(0, 4))):
            v = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e6]))
            arr[tuple(rng.integers(0, s) for s in arr.shape)] = v
    dtype = draw(st.sampled_from([np.float32, np.float16, np.float64]))
    with np.errstate(over="ignore"):
        return layout, hm.astype(dtype), paf.astype(dtype)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@FAST
@given(hostile_maps(), configs, st.booleans())
def test_random_maps_never_crash_and_are_well_formed(maps, cfg, prefilter):
    layout, hm, paf = maps
    # prefilter: force the two-pass PAF sampling that normally only crowds get
    with mock.patch.object(paf_module, "_PROBE_MIN_PAIRS", 0 if prefilter else paf_module._PROBE_MIN_PAIRS):
        kps, scores = decode(hm, paf, layout, cfg)
    check_well_formed(kps, scores, layout, cfg, hm.shape[1], hm.shape[2])


@FAST
@given(
    layout=st.sampled_from(LAYOUTS),
    n=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
    cfg=configs,
)
def test_random_crowds_are_well_formed(layout, n, seed, cfg):
    rng = np.random.default_rng(seed)
    h, w = 46, 54
    figs = [
        stick_figure(layout, (rng.uniform(5, w - 5), rng.uniform(15, h - 15)), rng.uniform(12, 34)) for _ in range(n)
    ]
    hm, paf = render_maps(layout, figs, (h, w), sigma=float(rng.uniform(0.7, 1.5)))
    hm += rng.uniform(0, 0.05, hm.shape).astype(np.float32)
    kps, scores = decode(hm, paf, layout, cfg)
    check_well_formed(kps, scores, layout, cfg, h, w)


@FAST
@given(
    shapes=st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), min_size=1, max_size=4), seed=st.integers(0, 999)
)
def test_a_reused_workspace_gives_the_same_answer(shapes, seed):
    layout = LAYOUTS[0]
    rng = np.random.default_rng(seed)
    ws = Workspace()
    for h, w in shapes:
        hm = rng.uniform(0, 1, (19, h, w)).astype(np.float32) ** 4
        paf = rng.uniform(-1, 1, (38, h, w)).astype(np.float32)
        cfg = DecoderConfig(min_parts=2, smooth=bool(rng.integers(2)))
        a = decode(hm, paf, layout, cfg, ws)
        b = decode(hm, paf, layout, cfg)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


# -- peaks --------------------------------------------------------------------------------------------
@FAST
@given(
    hm=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
        elements=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    ),
    thr=st.sampled_from([0.0, 0.2, 0.6]),
)
def test_peaks_are_maxima_and_each_plateau_gives_one(hm, thr):
    peaks = find_peaks(hm, thr, max_per_part=1000)
    p, h, w = hm.shape
    pad = np.pad(hm, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    got = {(int(k), int(x), int(y)) for k, (x, y) in zip(peaks.part, peaks.xy, strict=True)}
    assert len(got) == len(peaks)
    eight = np.ones((3, 3), bool)
    for k in range(p):
        for x, y in [(x, y) for kk, x, y in got if kk == k]:
            v = hm[k, y, x]
            assert v > thr and v >= pad[k, y : y + 3, x : x + 3].max()
        # every flat region (8-connected, equal values) holds at most one peak, and one exactly when
        # it is a regional maximum above the threshold: at its first cell in raster order
        for v in np.unique(hm[k]):
            labels, n = ndimage.label(hm[k] == v, structure=eight)
            for lab in range(1, n + 1):
                region = labels == lab
                cells = [(x, y) for y, x in zip(*np.nonzero(region), strict=True)]
                inside = [c for c in cells if (k, *c) in got]
                assert len(inside) <= 1
                ring = ndimage.binary_dilation(region, structure=eight) & ~region
                if v > thr and (hm[k][ring] < v).all():
                    assert inside == [min(cells, key=lambda c: (c[1], c[0]))]


@settings(max_examples=100, deadline=None)
@given(
    cx=st.floats(3.0, 12.0),
    cy=st.floats(3.0, 10.0),
    sigma=st.floats(0.7, 2.5),
    amp=st.floats(0.2, 5.0),
)
def test_refine_recovers_gaussian_centres(cx, cy, sigma, amp):
    yy, xx = np.mgrid[0:14, 0:16]
    hm = (amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)))[None].astype(np.float32)
    peaks = find_peaks(hm, 0.01)
    assert len(peaks) == 1
    xy = refine_peaks(hm, peaks).xy[0]
    assert abs(xy[0] - cx) < 0.1 and abs(xy[1] - cy) < 0.1


# -- assignment and grouping ----------------------------------------------------------------------
@st.composite
def candidate_sets(draw):
    """Random candidates over a few limbs, scores with ties, sorted by limb then best first."""
    rows = []
    for limb in range(draw(st.integers(1, 3))):
        na, nb = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        for a in range(na):
            for b in range(nb):
                if draw(st.booleans()):
                    rows.append(
                        (limb, 10 * limb + a, 10 * limb + 5 + b, draw(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9])))
                    )
    rows.sort(key=lambda r: (r[0], -r[3]))  # stable: ties keep their order
    return Connections.from_rows(rows)


def greedy_reference(c: Connections) -> set:
    """OpenPose's loop, one connection at a time."""
    out, used = set(), set()
    for k, a, b in zip(c.limb.tolist(), c.a.tolist(), c.b.tolist(), strict=True):
        if (k, "a", a) not in used and (k, "b", b) not in used:
            out.add((k, a, b))
            used |= {(k, "a", a), (k, "b", b)}
    return out


@settings(max_examples=150, deadline=None)
@given(candidate_sets())
def test_vectorized_greedy_equals_the_sequential_loop(c):
    g = assign_greedy(c)
    assert set(zip(g.limb.tolist(), g.a.tolist(), g.b.tolist(), strict=True)) == greedy_reference(c)


@settings(max_examples=100, deadline=None)
@given(candidate_sets())
def test_hungarian_is_a_matching_at_least_as_good_as_greedy(c):
    g, h = assign_greedy(c), assign_hungarian(c)
    for k in set(c.limb.tolist()):
        hk = h.take(h.limb == k)
        assert len(set(hk.a.tolist())) == len(hk) and len(set(hk.b.tolist())) == len(hk)
        assert hk.score.sum() >= g.take(g.limb == k).score.sum() - 1e-5


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_grouping_never_shares_a_peak(data):
    """Arbitrary connections (even ones no assignment would give) never put a peak in two people."""
    layout = data.draw(st.sampled_from(LAYOUTS))
    per_part = [
        [(float(i), float(j), 0.5) for i in range(data.draw(st.integers(0, 3)))] for j in range(layout.num_parts)
    ]
    peaks = Peaks.from_lists(per_part)
    rows = []
    for k, (pa, pb) in enumerate(layout.limbs):
        na, nb = len(per_part[pa]), len(per_part[pb])
        for _ in range(data.draw(st.integers(0, 3)) if na and nb else 0):
            i, j = data.draw(st.integers(0, na - 1)), data.draw(st.integers(0, nb - 1))
            rows.append((k, peaks.offsets[pa] + i, peaks.offsets[pb] + j, data.draw(st.floats(0.01, 1.0))))
    people = group_people(
        peaks, Connections.from_rows(rows), layout, min_parts=1, min_mean_score=0.0, max_people=10_000
    )
    owned = people.parts[people.parts >= 0]
    assert len(owned) == len(set(owned.tolist())) == len(peaks)  # min_parts=1: every peak, once
    for row in people.parts:
        for part, pk in enumerate(row):
            assert pk < 0 or peaks.part[pk] == part
