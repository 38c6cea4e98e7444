"""Scale and flip averaging of maps (edgepose.decode.merge) on hand-made maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.decode import DecoderConfig, Workspace, decode
from edgepose.decode.merge import MapAverager, flip_channels
from edgepose.decode.synthetic import render_maps, stick_figure
from edgepose.layouts import get_layout

STRIDE = 8


def mirrored_person(layout, kp: np.ndarray, w_cells: int) -> np.ndarray:
    """The same person in the mirrored frame: x -> (w-1) - x, and left/right parts swap names."""
    m = np.array(layout.mirror_parts())
    out = np.empty_like(kp)
    out[m] = kp  # the part that was p is now called m[p]
    out[:, 0] = (w_cells - 1) - out[:, 0]
    return out


@pytest.mark.parametrize("layout_id", ["coco18", "mpi15", "body25"])
def test_a_flipped_run_mirrored_back_matches_the_unflipped_maps(layout_id):
    lay = get_layout(layout_id)
    h, w = 40, 48
    person = stick_figure(lay, (17.0, 21.0), 30.0)
    hm, paf = render_maps(lay, [person], (h, w))
    hm_f, paf_f = render_maps(lay, [mirrored_person(lay, person, w)], (h, w))
    acc = MapAverager(lay, ref_resized=(w * STRIDE, h * STRIDE), src=(w * STRIDE, h * STRIDE), stride=STRIDE)
    acc.add(hm_f, paf_f, resized=(w * STRIDE, h * STRIDE), flipped=True)
    got_hm, got_paf = acc.result()
    np.testing.assert_allclose(got_hm, hm, atol=1e-5)
    np.testing.assert_allclose(got_paf, paf, atol=1e-5)


def test_flip_averaging_of_a_map_and_its_mirror_is_symmetric():
    lay = get_layout("coco18")
    rng = np.random.default_rng(1)
    h, w = 12, 16
    hm = rng.random((lay.heatmap_channel_count, h, w), dtype=np.float32)
    paf = rng.standard_normal((lay.paf_channel_count, h, w)).astype(np.float32)
    size = (w * STRIDE, h * STRIDE)
    acc = MapAverager(lay, size, size, STRIDE)
    acc.add(hm, paf, size)
    acc.add(hm, paf, size, flipped=True)
    avg_hm, avg_paf = (a.copy() for a in acc.result())
    # Averaging the result with its own flip changes nothing: it is mirror-symmetric.
    again = MapAverager(lay, size, size, STRIDE)
    again.add(avg_hm, avg_paf, size)
    again.add(avg_hm, avg_paf, size, flipped=True)
    sym_hm, sym_paf = again.result()
    np.testing.assert_allclose(sym_hm, avg_hm, atol=1e-5)
    np.testing.assert_allclose(sym_paf, avg_paf, atol=1e-5)
    # and concretely: Neck (central) is symmetric in x; RShoulder is LShoulder mirrored
    np.testing.assert_allclose(avg_hm[1], avg_hm[1][:, ::-1], atol=1e-5)
    np.testing.assert_allclose(avg_hm[2], avg_hm[5][:, ::-1], atol=1e-5)


def test_the_pair_swap_moves_the_right_channels_and_paf_x_changes_sign():
    lay = get_layout("coco18")
    hm_src, paf_src, sign = flip_channels(lay)
    names = lay.names
    for q, p in enumerate(hm_src[: lay.num_parts]):
        a, b = names[q], names[p]
        if a[0] in "LR" and a[1].isupper():
            assert b == ("R" if a[0] == "L" else "L") + a[1:]
        else:
            assert a == b
    assert hm_src[-1] == lay.heatmap_channel_count - 1  # background
    # limb 0 is Neck->RShoulder; its field comes from Neck->LShoulder (limb 1) with x negated
    (cx0, cy0), (cx1, cy1) = lay.paf_channels[0], lay.paf_channels[1]
    assert (paf_src[cx0], paf_src[cy0]) == (cx1, cy1)
    assert (sign[cx0], sign[cy0]) == (-1.0, 1.0)
    # a central limb (Neck->Nose) keeps its channels, x still negated
    j = lay.limbs.index((1, 0))
    cx, cy = lay.paf_channels[j]
    assert (paf_src[cx], paf_src[cy], sign[cx], sign[cy]) == (cx, cy, -1.0, 1.0)


def test_a_reversed_mirror_limb_negates_both_components():
    lay = get_layout("coco17")  # its limb list stores (left_eye, nose)-style pairs in mixed directions
    idx, sgn = lay.mirror_limbs()
    j = sgn.index(-1)
    _, paf_src, sign = flip_channels(lay)
    cx, cy = lay.paf_channels[j] if lay.paf_channels else (None, None)
    if cx is None:  # coco17 has no PAFs; the limb table is what is checked
        a, b = lay.limbs[j]
        m = lay.mirror_parts()
        assert lay.limbs[idx[j]] == (m[b], m[a])
    else:  # pragma: no cover
        assert (sign[cx], sign[cy]) == (1.0, -1.0)


def test_a_flip_on_a_layout_without_left_right_pairs_is_a_clear_error():
    from edgepose.layouts import Layout

    lay = Layout(id="blob", names=("a", "b"), limbs=((0, 1),), paf_channels=((0, 1),))
    with pytest.raises(ValueError, match="no left/right part pairs"):
        flip_channels(lay)


def test_scales_are_resampled_to_the_reference_grid_and_decode_to_the_same_person():
    lay = get_layout("coco18")
    src = (480, 400)  # frame (w, h) in pixels
    ref = (480, 400)  # reference run at full size: 60 x 50 cells
    half = (240, 200)  # a second run at half the size: 30 x 25 cells
    person = stick_figure(lay, (30.0, 26.0), 40.0)  # in reference cells
    hm, paf = render_maps(lay, [person], (50, 60), sigma=2.0, paf_width=2.0)
    # the same person in the half-size run's cells: pixel = cell*8+3.5 at 1x; at 0.5x pixel/2
    p_half = person.copy()
    p_half[:, :2] = ((person[:, :2] * STRIDE + 3.5 + 0.5) * 0.5 - 0.5 - 3.5) / STRIDE
    hm2, paf2 = render_maps(lay, [p_half], (25, 30), sigma=1.0, paf_width=1.0)
    acc = MapAverager(lay, ref, src, STRIDE)
    acc.add(hm, paf, ref)
    acc.add(hm2, paf2, half)
    avg_hm, avg_paf = acc.result()
    assert avg_hm.shape == (19, 50, 60) and avg_paf.shape == (38, 50, 60)
    kps, scores = decode(avg_hm, avg_paf, lay, DecoderConfig(), Workspace())
    assert len(scores) == 1
    found = kps[0, :, 2] > 0
    assert found.sum() == lay.num_parts
    assert np.abs(kps[0, found, :2] - person[found, :2]).max() < 0.35  # cells


def test_accumulator_size_depends_on_the_budget_not_the_frame():
    lay = get_layout("coco18")
    shapes = set()
    for src in ((640, 480), (1920, 1440), (8000, 6000)):
        ref = (432, 324)  # the frame fitted to the same budget
        acc = MapAverager(lay, ref, src, STRIDE)
        shapes.add((acc.hm.nbytes, acc.paf.nbytes))
    assert len(shapes) == 1


def test_buffers_are_reused_across_frames():
    lay = get_layout("coco18")
    first = MapAverager(lay, (64, 48), (64, 48), STRIDE)
    first.add(np.ones((19, 6, 8), np.float32), np.ones((38, 6, 8), np.float32), (64, 48))
    bufs = first.result()
    second = MapAverager(lay, (64, 48), (128, 96), STRIDE, buffers=bufs)
    assert second.hm is bufs[0] and not second.hm.any()
    with pytest.raises(ValueError, match="no run"):
        second.result()
