"""The PAF decoder, stage by stage and end to end, on hand-made and synthetic maps with known answers.

Synthetic maps (edgepose.decode.synthetic) are rendered like OpenPose's training targets: exact
Gaussians (sigma 1 cell) and PAF rectangles, so the decoder must recover the figures to the cell.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from edgepose.decode import (
    Connections,
    DecoderConfig,
    Peaks,
    Workspace,
    assign_connections,
    assign_greedy,
    assign_hungarian,
    decode,
    find_peaks,
    group_people,
    limb_pairs,
    paf_scores,
    refine_peaks,
    sample_pafs,
    smooth_heatmaps,
)
from edgepose.decode.synthetic import render_maps, stick_figure
from edgepose.layouts import get_layout

SHAPE = (46, 54)  # a 368x432 input at stride 8
LAYOUT_IDS = ("coco18", "mpi15", "body25")


def scene(layout_id: str, figures: list[tuple[tuple[float, float], float]], shape=SHAPE):
    """Layout, true keypoints (M, P, 2) and rendered maps for figures given as (centre, height)."""
    lay = get_layout(layout_id)
    truth = [stick_figure(lay, c, ht) for c, ht in figures]
    hm, paf = render_maps(lay, truth, shape)
    return lay, np.stack(truth), hm, paf


def match(kps: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true person, the index of the decoded person nearest to it (mean over parts)."""
    d = np.linalg.norm(kps[None, :, :, :2] - truth[:, None], axis=-1).mean(axis=-1)
    return d.argmin(axis=1)


def assert_recovered(kps: np.ndarray, truth: np.ndarray, tol: float = 0.1, margin: float = 1.0) -> None:
    """Every true person is found exactly once, with every part within ``tol`` cells.

    Parts within ``margin`` of the map border are allowed 0.5 cell (no refinement across a border).
    """
    assert kps.shape[0] == truth.shape[0], f"{kps.shape[0]} people decoded, {truth.shape[0]} expected"
    idx = match(kps, truth)
    assert sorted(idx.tolist()) == list(range(truth.shape[0])), "two true people matched one decoded person"
    h, w = SHAPE
    for t, i in zip(truth, idx, strict=True):
        assert (kps[i, :, 2] > 0).all(), "a part is missing"
        err = np.abs(kps[i, :, :2] - t).max(axis=1)
        near_border = (t[:, 0] > w - 1 - margin) | (t[:, 0] < margin) | (t[:, 1] > h - 1 - margin) | (t[:, 1] < margin)
        assert (err[~near_border] < tol).all(), err
        assert (err[near_border] <= 0.5 + 1e-6).all(), err


THREE = [((10.3, 23.2), 34.0), ((27.6, 22.1), 30.0), ((43.1, 24.7), 36.0)]


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout_id", LAYOUT_IDS)
def test_recovers_people_for_each_layout(layout_id):
    lay, truth, hm, paf = scene(layout_id, THREE)
    kps, scores = decode(hm, paf, lay)
    assert kps.dtype == np.float32 and scores.dtype == np.float32
    assert kps.shape == (3, lay.num_parts, 3) and scores.shape == (3,)
    assert_recovered(kps, truth)
    assert (np.diff(scores) <= 0).all()


@pytest.mark.parametrize("layout_id", LAYOUT_IDS)
def test_background_channel_is_optional(layout_id):
    lay, truth, hm, paf = scene(layout_id, THREE[:1])
    with_bg = decode(hm, paf, lay)
    without = decode(hm[: lay.num_parts], paf, lay)
    np.testing.assert_array_equal(with_bg[0], without[0])


def test_two_people_crossing_limbs():
    """Two people whose left forearms cross in an X: the same PAF channel, averaged at the crossing."""
    lay = get_layout("coco18")
    a = stick_figure(lay, (20.0, 24.0), 34.0)
    b = stick_figure(lay, (33.0, 24.0), 34.0)
    n = lay.names.index
    a[n("LElbow")], a[n("LWrist")] = (27.0, 12.0), (35.0, 20.0)  # a reaches right, down
    b[n("LElbow")], b[n("LWrist")] = (40.0, 12.0), (30.0, 20.0)  # b reaches left, down: they cross
    truth = np.stack([a, b])
    hm, paf = render_maps(lay, truth, SHAPE)
    cx, cy = lay.paf_channels[lay.limbs.index((n("LElbow"), n("LWrist")))]
    assert abs(paf[cx, 18, 32]) < 0.1 and paf[cy, 18, 32] > 0.5  # the two directions average at the X
    for matching in ("greedy", "hungarian"):
        kps, _ = decode(hm, paf, lay, DecoderConfig(matching=matching))
        assert_recovered(kps, truth)


def test_empty_maps_give_no_people():
    lay = get_layout("coco18")
    kps, scores = decode(np.zeros((19, *SHAPE), np.float32), np.zeros((38, *SHAPE), np.float32), lay)
    assert kps.shape == (0, 18, 3) and kps.dtype == np.float32
    assert scores.shape == (0,) and scores.dtype == np.float32


def test_single_part_is_filtered_unless_min_parts_is_1():
    lay = get_layout("coco18")
    hm = np.zeros((19, *SHAPE), np.float32)
    hm[1, 20, 30] = 0.8  # a lone neck
    paf = np.zeros((38, *SHAPE), np.float32)
    assert decode(hm, paf, lay)[0].shape[0] == 0
    kps, scores = decode(hm, paf, lay, DecoderConfig(min_parts=1))
    assert kps.shape == (1, 18, 3)
    np.testing.assert_allclose(kps[0, 1], [30.0, 20.0, 0.8])
    assert (kps[0, [0] + list(range(2, 18))] == 0).all()
    np.testing.assert_allclose(scores, [0.8])


def test_lone_limb_kept_only_with_min_parts_2():
    lay = get_layout("coco18")
    fig = np.full((18, 2), np.nan, np.float32)
    fig[2], fig[3] = (20.0, 20.0), (24.0, 26.0)  # right shoulder -> right elbow only
    hm, paf = render_maps(lay, [fig], SHAPE)
    assert decode(hm, paf, lay)[0].shape[0] == 0
    kps, _ = decode(hm, paf, lay, DecoderConfig(min_parts=2))
    assert kps.shape[0] == 1 and (kps[0, :, 2] > 0).sum() == 2


def test_nan_and_inf_are_zero():
    lay, truth, hm, paf = scene("coco18", THREE)
    clean = decode(hm, paf, lay)
    hm2, paf2 = hm.copy(), paf.copy()
    hm2[:, 0:3, 0:3] = np.nan  # far from everyone
    hm2[5, 40:, 50:] = np.inf
    hm2[6, 40:, 50:] = -np.inf
    paf2[:, 0:2, :] = np.nan
    paf2[3, 44:, :] = np.inf
    kps, scores = decode(hm2, paf2, lay)
    np.testing.assert_array_equal(kps, clean[0])
    np.testing.assert_array_equal(scores, clean[1])
    # all NaN: no crash, nobody
    kps, scores = decode(np.full_like(hm, np.nan), np.full_like(paf, np.nan), lay)
    assert kps.shape == (0, 18, 3)


def test_nan_on_a_peak_never_leaks():
    lay, truth, hm, paf = scene("coco18", THREE)
    x, y = np.rint(truth[0, 1]).astype(int)
    hm[1, y, x] = np.nan  # the neck's own peak cell
    paf[:, y - 2 : y + 3, x - 2 : x + 3] = np.nan
    kps, scores = decode(hm, paf, lay)
    assert np.isfinite(kps).all() and np.isfinite(scores).all()
    assert kps.shape[0] >= 2


def test_huge_finite_values_do_not_overflow():
    lay, truth, hm, paf = scene("coco18", THREE)
    hm[3] *= np.float32(3e38)
    paf[0] *= np.float32(-3e38)
    kps, scores = decode(hm, paf, lay, DecoderConfig(smooth=True))
    assert np.isfinite(kps).all() and np.isfinite(scores).all()


def test_float16_and_strided_maps():
    lay, truth, hm, paf = scene("coco18", THREE)
    ref = decode(hm, paf, lay)
    k16, s16 = decode(hm.astype(np.float16), paf.astype(np.float16), lay)
    assert_recovered(k16, truth, tol=0.15)
    np.testing.assert_allclose(s16, ref[1], rtol=1e-2)
    # a slice of a batch, and maps stored (h, w, C) then transposed: non-contiguous views
    batch_hm = np.stack([hm, hm * 0])
    hwc = np.ascontiguousarray(paf.transpose(1, 2, 0)).transpose(2, 0, 1)
    assert not hwc.flags.c_contiguous
    ks, ss = decode(batch_hm[0], hwc, lay)
    np.testing.assert_array_equal(ks, ref[0])
    np.testing.assert_array_equal(ss, ref[1])


def test_workspace_is_reused_and_follows_shape_changes():
    lay, truth, hm, paf = scene("coco18", THREE)
    ws = Workspace()
    ref = decode(hm, paf, lay)
    out = decode(hm, paf, lay, workspace=ws)
    buf = ws.padded
    assert ws.shape == (18, *SHAPE)
    for _ in range(3):
        out = decode(hm, paf, lay, workspace=ws)
        assert ws.padded is buf  # no reallocation for the same shape
    np.testing.assert_array_equal(out[0], ref[0])
    # another shape, then back
    lay2, truth2, hm2, paf2 = scene("coco18", THREE[:1], shape=(40, 30))
    decode(hm2, paf2, lay2, workspace=ws)
    assert ws.shape == (18, 40, 30)
    np.testing.assert_array_equal(decode(hm, paf, lay, workspace=ws)[0], ref[0])
    ws16 = Workspace((18, *SHAPE))
    decode(hm.astype(np.float16), paf.astype(np.float16), lay, workspace=ws16)
    assert ws16.nbytes < 1_000_000


def test_threads_with_their_own_workspaces():
    lay, truth, hm, paf = scene("body25", THREE)
    ref = decode(hm, paf, lay)
    errors = []

    def work():
        ws = Workspace()
        for _ in range(20):
            k, s = decode(hm, paf, lay, workspace=ws)
            if not (np.array_equal(k, ref[0]) and np.array_equal(s, ref[1])):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_people_never_share_a_peak_in_a_crowd():
    rng = np.random.default_rng(3)
    lay = get_layout("coco18")
    figs = [stick_figure(lay, (rng.uniform(8, 46), rng.uniform(18, 28)), rng.uniform(20, 34)) for _ in range(7)]
    hm, paf = render_maps(lay, figs, SHAPE)
    kps, _ = decode(hm, paf, lay, DecoderConfig(min_parts=1))
    vis = kps[:, :, 2] > 0
    pts = {(p, float(x), float(y)) for m in range(len(kps)) for p in range(18) if vis[m, p] for x, y in [kps[m, p, :2]]}
    assert len(pts) == vis.sum()


def test_max_people_and_filters():
    lay, truth, hm, paf = scene("coco18", THREE)
    kps, scores = decode(hm, paf, lay, DecoderConfig(max_people=2))
    full = decode(hm, paf, lay)
    np.testing.assert_array_equal(kps, full[0][:2])
    assert decode(hm, paf, lay, DecoderConfig(min_parts=19))[0].shape[0] == 0
    assert decode(hm, paf, lay, DecoderConfig(min_mean_score=5.0))[0].shape[0] == 0


def test_person_score_modes_rank_differently():
    """A complete but faint person and a strong half person: 'total' and 'keypoint_mean' disagree."""
    lay = get_layout("coco18")
    faint = stick_figure(lay, (14.0, 23.0), 34.0)
    strong = stick_figure(lay, (40.0, 23.0), 34.0)
    strong[8:] = np.nan  # no legs, no face
    hm_f, paf_f = render_maps(lay, [faint], SHAPE, peak=0.5)
    hm_s, paf_s = render_maps(lay, [strong], SHAPE, peak=1.0)
    hm, paf = np.maximum(hm_f, hm_s), paf_f + paf_s
    order = {}
    for mode in ("total", "mean", "keypoint_mean", "keypoint_coverage"):
        kps, scores = decode(hm, paf, lay, DecoderConfig(person_score=mode))
        assert kps.shape[0] == 2 and (np.diff(scores) <= 0).all()
        order[mode] = int((kps[0, :, 2] > 0).sum())  # parts of the best-ranked person
    assert order["total"] == 18 and order["keypoint_coverage"] == 18
    assert order["keypoint_mean"] == 8 and order["mean"] == 8
    kps, scores = decode(hm, paf, lay, DecoderConfig(person_score="keypoint_mean"))
    # peak-cell values: a little under the Gaussians' heights (1.0 and 0.5) at sub-cell centres
    assert 0.85 < scores[0] <= 1.0 and 0.42 < scores[1] <= 0.5


def test_smoothing_merges_a_split_peak():
    lay = get_layout("coco18")
    hm = np.zeros((19, *SHAPE), np.float32)
    hm[0, 20, 20] = hm[0, 20, 22] = 0.9  # one blurry part with a dip in the middle
    hm[0, 20, 21] = 0.85
    assert len(find_peaks(hm[:18])) == 2
    assert len(find_peaks(hm[:18], smooth_sigma=1.0)) == 1
    paf = np.zeros((38, *SHAPE), np.float32)
    k, _ = decode(hm, paf, lay, DecoderConfig(smooth=True, min_parts=1, peak_threshold=0.05))
    assert k.shape[0] == 1
    np.testing.assert_allclose(k[0, 0, :2], [21.0, 20.0], atol=1e-4)


# -- stage 1: peaks -----------------------------------------------------------------------------------
def test_plateau_gives_one_peak():
    hm = np.zeros((1, 12, 12), np.float32)
    hm[0, 3:6, 4:8] = 0.7  # flat 3x4 top
    p = find_peaks(hm, 0.1)
    assert len(p) == 1 and p.xy.tolist() == [[4.0, 3.0]]
    # an irregular (U-shaped) plateau: the local rule alone would keep two cells
    hm = np.zeros((1, 12, 12), np.float32)
    for y, x in [(2, 2), (3, 3), (4, 4), (3, 5), (2, 6)]:
        hm[0, y, x] = 0.5
    p = find_peaks(hm, 0.1)
    assert len(p) == 1 and p.xy.tolist() == [[2.0, 2.0]]
    # two separate plateaus of the same value: two peaks
    hm[0, 9, 9:11] = 0.5
    assert len(find_peaks(hm, 0.1)) == 2


def test_peaks_threshold_is_strict_and_max_per_part_keeps_the_strongest():
    hm = np.zeros((2, 10, 10), np.float32)
    hm[0, 1, 1] = 0.1
    hm[0, 5, 5] = 0.1001
    vals = [0.2, 0.9, 0.5, 0.7, 0.3]
    for i, v in enumerate(vals):
        hm[1, 1 + 2 * i, 8] = v
    p = find_peaks(hm, threshold=0.1, max_per_part=3)
    assert p.offsets.tolist() == [0, 1, 4]
    assert p.xy[0].tolist() == [5.0, 5.0]
    np.testing.assert_allclose(p.score[1:], [0.9, 0.7, 0.5])
    assert p.part.dtype == np.int32 and p.xy.dtype == np.float32


def test_peaks_at_the_border_and_on_tiny_maps():
    hm = np.zeros((1, 1, 1), np.float32)
    hm[0, 0, 0] = 1.0
    assert find_peaks(hm).xy.tolist() == [[0.0, 0.0]]
    hm = np.zeros((1, 4, 5), np.float32)
    hm[0, 3, 4] = 0.9
    hm[0, 3, 3] = 0.8
    p = refine_peaks(hm, find_peaks(hm))
    assert p.xy.tolist() == [[4.0, 3.0]]  # no refinement across the border


@pytest.mark.parametrize("cx,cy", [(10.0, 8.0), (10.3, 8.45), (9.61, 7.52), (10.49, 8.01), (9.82, 7.77)])
def test_refine_recovers_a_fractional_gaussian_centre(cx, cy):
    yy, xx = np.mgrid[0:18, 0:20]
    for sigma in (0.8, 1.0, 1.5):
        hm = (0.8 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)))[None].astype(np.float32)
        p = refine_peaks(hm, find_peaks(hm))
        assert len(p) == 1
        assert np.abs(p.xy[0] - [cx, cy]).max() < 0.1
    # a non-Gaussian (triangular) blob still lands within half a cell
    hm = np.maximum(0, 1 - 0.3 * np.hypot(xx - cx, yy - cy))[None].astype(np.float32)
    p = refine_peaks(hm, find_peaks(hm))
    assert np.abs(p.xy[0] - [cx, cy]).max() < 0.5


def test_smooth_heatmaps_keeps_mass_and_centre():
    hm = np.zeros((2, 15, 17), np.float32)
    hm[0, 7, 8] = 1.0
    s = smooth_heatmaps(hm, 1.0)
    assert s.shape == hm.shape and s.dtype == np.float32
    np.testing.assert_allclose(s.sum(), 1.0, rtol=1e-5)
    assert np.unravel_index(s[0].argmax(), s[0].shape) == (7, 8)
    np.testing.assert_allclose(s[0], s[0][::-1, ::-1], atol=1e-7)
    with pytest.raises(ValueError):
        smooth_heatmaps(hm, 0.0)


# -- stage 3: PAF scores --------------------------------------------------------------------------
def test_limb_pairs_enumerates_every_pair_of_every_limb():
    p = Peaks.from_lists([[(0, 0, 1), (1, 1, 1)], [(2, 2, 1), (3, 3, 1), (4, 4, 1)], []])
    limb, a, b = limb_pairs(p, np.array([[0, 1], [1, 2], [1, 0]]))
    got = set(zip(limb.tolist(), a.tolist(), b.tolist(), strict=True))
    want = {(0, i, j) for i in (0, 1) for j in (2, 3, 4)} | {(2, j, i) for i in (0, 1) for j in (2, 3, 4)}
    assert got == want and len(limb) == 12


def test_bilinear_sampling():
    f = np.zeros((2, 3, 3), np.float32)
    f[0] = [[0, 1, 2], [0, 1, 2], [0, 1, 2]]  # x component = column index
    dots, length = sample_pafs(f, np.array([[0.25, 1.0]]), np.array([[1.75, 1.0]]), np.array([[0, 1]]), 3)
    np.testing.assert_allclose(dots, [[0.25, 1.0, 1.75]], atol=1e-6)
    np.testing.assert_allclose(length, [1.5])


def test_paf_score_rules():
    h, w = 40, 60
    paf = np.zeros((2, h, w), np.float32)
    paf[0, 10, :] = 1.0  # a horizontal field along row 10
    peaks = Peaks.from_lists(
        [
            [(5.0, 10.0, 0.9), (5.0, 30.0, 0.9)],
            [(15.0, 10.0, 0.9), (45.0, 10.0, 0.9), (15.0, 30.0, 0.9)],
        ]
    )
    c = paf_scores(paf, peaks, limbs=[(0, 1)], channels=[(0, 1)])
    pairs = {(int(a), int(b)): float(s) for a, b, s in zip(c.a, c.b, c.score, strict=True)}
    # (0 -> 2): length 10 <= h/2, no penalty; (0 -> 3): length 40, prior 0.5*40/40 - 1 = -0.5
    assert pairs == pytest.approx({(0, 2): 1.0, (0, 3): 0.5})
    assert c.score[0] >= c.score[1]  # best first
    # the fraction of inliers must reach 0.8: a field covering 70% of the segment is not enough
    paf[0, 10, 12:] = 0.0
    c = paf_scores(paf, peaks, limbs=[(0, 1)], channels=[(0, 1)], min_inlier_fraction=0.8)
    assert (0, 2) not in set(zip(c.a.tolist(), c.b.tolist(), strict=True))
    c = paf_scores(paf, peaks, limbs=[(0, 1)], channels=[(0, 1)], min_inlier_fraction=0.6)
    assert (0, 2) in set(zip(c.a.tolist(), c.b.tolist(), strict=True))
    # a field pointing the other way never scores
    paf[0] = -1.0
    assert len(paf_scores(paf, peaks, limbs=[(0, 1)], channels=[(0, 1)])) == 0


@pytest.mark.parametrize("fraction", [0.8, 0.5, 1.0])
def test_paf_prefilter_is_exact(monkeypatch, fraction):
    """The two-pass pre-filter (crowds) gives exactly the candidates of one pass over all samples."""
    import edgepose.decode.paf as paf_module

    lay, truth, hm, paf = scene("coco18", [((6 + 7 * i, 23.0), 30.0) for i in range(7)])
    peaks = refine_peaks(hm[:18], find_peaks(hm[:18]))
    kw = {"min_inlier_fraction": fraction}
    monkeypatch.setattr(paf_module, "_PROBE_MIN_PAIRS", 10**9)
    one = paf_scores(paf, peaks, lay, **kw)
    monkeypatch.setattr(paf_module, "_PROBE_MIN_PAIRS", 0)
    two = paf_scores(paf, peaks, lay, **kw)
    assert len(one) > 7 * 17
    for x, y in zip(dataclasses.astuple(one), dataclasses.astuple(two), strict=True):
        np.testing.assert_array_equal(x, y)


# -- stage 4: assignment --------------------------------------------------------------------------
conns = Connections.from_rows


def chosen(c):
    return sorted(zip(c.limb.tolist(), c.a.tolist(), c.b.tolist(), strict=True))


def test_greedy_and_hungarian_agree_on_a_simple_case():
    c = conns([(0, 0, 2, 0.9), (0, 0, 3, 0.2), (0, 1, 2, 0.3), (0, 1, 3, 0.8), (1, 2, 4, 0.7), (1, 3, 5, 0.6)])
    g, h = assign_greedy(c), assign_hungarian(c)
    assert chosen(g) == chosen(h) == [(0, 0, 2), (0, 1, 3), (1, 2, 4), (1, 3, 5)]


def test_hungarian_beats_greedy_when_greedy_is_short_sighted():
    # greedy takes 0-2 (0.9) and then nothing fits; 0-3 + 1-2 = 1.5 is better
    c = conns([(0, 0, 2, 0.9), (0, 0, 3, 0.8), (0, 1, 2, 0.7)])
    g, h = assign_greedy(c), assign_hungarian(c)
    assert chosen(g) == [(0, 0, 2)]
    assert chosen(h) == [(0, 0, 3), (0, 1, 2)]
    assert h.score.sum() > g.score.sum()
    assert chosen(assign_connections(c, "hungarian")) == chosen(h)
    with pytest.raises(ValueError):
        assign_connections(c, "auction")


def test_greedy_handles_limbs_independently_and_empty_input():
    # the same peaks in two limbs do not block each other
    c = conns([(0, 0, 1, 0.5), (1, 0, 1, 0.4), (1, 0, 2, 0.9)])
    assert chosen(assign_greedy(c)) == [(0, 0, 1), (1, 0, 2)]
    assert len(assign_greedy(Connections.empty())) == 0
    assert len(assign_hungarian(Connections.empty())) == 0


def test_hungarian_on_a_decoded_crowd_matches_greedy():
    lay, truth, hm, paf = scene("body25", THREE)
    g = decode(hm, paf, lay, DecoderConfig(matching="greedy"))
    h = decode(hm, paf, lay, DecoderConfig(matching="hungarian"))
    np.testing.assert_array_equal(g[0], h[0])


# -- stage 5: grouping ----------------------------------------------------------------------------
LIMBS = [(0, 1), (1, 2), (2, 3), (0, 3)]  # a 4-part ring: limb 3 is redundant


def line_peaks(n_people=2):
    return Peaks.from_lists([[(10.0 * i, float(p), 0.5) for i in range(n_people)] for p in range(4)])


def test_group_builds_people_and_ignores_redundant_limbs():
    peaks = line_peaks()  # peak id = 2 * part + person
    c = conns(
        [(0, 0, 2, 0.5), (0, 1, 3, 0.5), (1, 2, 4, 0.5), (1, 3, 5, 0.5), (2, 4, 6, 0.5), (2, 5, 7, 0.5), (3, 0, 6, 0.9)]
    )
    people = group_people(peaks, c, limbs=LIMBS, min_parts=2, min_mean_score=0.0)
    assert people.parts.tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    # the redundant limb 3 (both ends already in person 0) added nothing: 4 * 0.5 + 3 * 0.5
    np.testing.assert_allclose(people.total, [3.5, 3.5])
    np.testing.assert_array_equal(people.count, [4, 4])


def test_group_merges_disjoint_people_only():
    peaks = line_peaks()
    # A = parts 0, 1 and B = parts 2, 3 of person 0; limb 1 joins them: disjoint, merged
    c = conns([(0, 0, 2, 0.5), (2, 4, 6, 0.5), (1, 2, 4, 0.5)])
    p = group_people(peaks, c, limbs=LIMBS, min_parts=2, min_mean_score=0.0)
    assert p.parts.tolist() == [[0, 2, 4, 6]]
    np.testing.assert_allclose(p.total, [4 * 0.5 + 3 * 0.5])
    # A = {part 0: 0, part 1: 2}, B = {part 1: 3, part 2: 5}: both hold a part 1, never merged
    c = conns([(0, 0, 2, 0.5), (1, 3, 5, 0.5), (1, 2, 5, 0.9)])
    p = group_people(peaks, c, limbs=LIMBS, min_parts=2, min_mean_score=0.0)
    assert sorted(p.parts.tolist()) == sorted([[0, 2, -1, -1], [-1, 3, 5, -1]])
    # a redundant limb between two complete people changes nothing
    c = conns(
        [(0, 0, 2, 0.5), (0, 1, 3, 0.5), (1, 2, 4, 0.5), (1, 3, 5, 0.5), (2, 4, 7, 0.5), (2, 5, 6, 0.5), (3, 0, 6, 0.9)]
    )
    p = group_people(peaks, c, limbs=LIMBS, min_parts=2, min_mean_score=0.0)
    assert sorted(p.parts.tolist()) == sorted([[0, 2, 4, 7], [1, 3, 5, 6]])
    np.testing.assert_allclose(p.total, [3.5, 3.5])


def test_group_never_overwrites_a_filled_slot():
    peaks = line_peaks()
    # person = parts 0-1 (peaks 0, 2); a second limb-0 connection from peak 0 to peak 3 cannot
    # replace peak 2 (OpenPose's Python demo overwrites here)
    c = conns([(0, 0, 2, 0.9), (0, 0, 3, 0.5)])
    p = group_people(peaks, c, limbs=LIMBS, min_parts=2, min_mean_score=0.0)
    assert [0, 2, -1, -1] in p.parts.tolist()
    owned = p.parts[p.parts >= 0]
    assert len(owned) == len(set(owned.tolist()))


# -- config and errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        {"peak_threshold": -0.1},
        {"peak_threshold": float("nan")},
        {"smooth_sigma": 0.0},
        {"max_peaks_per_part": 0},
        {"max_peaks_per_part": 2.5},
        {"paf_samples": 1},
        {"paf_min_inlier_fraction": 1.5},
        {"paf_min_score": -1.0},
        {"matching": "auction"},
        {"min_parts": 0},
        {"max_people": 0},
        {"person_score": "median"},
        {"refine": "yes"},
        {"smooth": 1},
    ],
)
def test_config_rejects_bad_values(kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        DecoderConfig(**kw)


def test_config_defaults_and_round_trip():
    cfg = DecoderConfig()
    assert (cfg.peak_threshold, cfg.max_peaks_per_part, cfg.paf_samples, cfg.max_people) == (0.05, 32, 10, 64)
    assert (cfg.paf_inlier_threshold, cfg.paf_min_inlier_fraction, cfg.matching) == (0.05, 0.8, "greedy")
    assert DecoderConfig.from_dict(cfg.to_dict()) == cfg
    assert DecoderConfig(max_people=np.int64(5)).max_people == 5
    with pytest.raises(ValueError, match="unknown"):
        DecoderConfig.from_dict({"peak_thresh": 0.2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.peak_threshold = 0.5  # type: ignore[misc]


def test_decode_rejects_maps_that_do_not_fit_the_layout():
    lay = get_layout("coco18")
    hm, paf = np.zeros((19, 10, 12), np.float32), np.zeros((38, 10, 12), np.float32)
    with pytest.raises(ValueError, match="heatmap channels"):
        decode(hm[:10], paf, lay)
    with pytest.raises(ValueError, match="PAF channels"):
        decode(hm, paf[:20], lay)
    with pytest.raises(ValueError, match="differ"):
        decode(hm, paf[:, :9], lay)
    with pytest.raises(ValueError, match="one image"):
        decode(hm[None], paf[None], lay)
    with pytest.raises(ValueError, match="no PAF"):
        decode(hm[:17], paf, get_layout("coco17"))
