"""Device words -> providers: the one table, auto preference, clear errors."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import DATA

from edgepose import providers as P


def test_cpu_always_last_and_available():
    spec = P.resolve("cpu")
    assert spec.providers == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in ort.get_available_providers()


def test_auto_prefers_the_best_available():
    have = ort.get_available_providers()
    spec = P.resolve("auto")
    order = [P.TRT, P.CUDA, P.OPENVINO, P.CPU]
    expected = next(p for p in order if p in have)
    assert spec.providers[0] == expected
    assert spec.providers[-1] == P.CPU


@pytest.mark.parametrize("word", ["cuda", "cuda:1", "tensorrt", "tensorrt:0+fp16", "trt+fp16", "openvino"])
def test_unavailable_provider_is_a_clear_error(word):
    need = P.TABLE["tensorrt" if word.startswith("t") else word.split(":")[0]]
    if need in ort.get_available_providers():
        pytest.skip(f"{need} is available here")
    with pytest.raises(P.ProviderUnavailable) as e:
        P.resolve(word)
    msg = str(e.value)
    assert need in msg and "CPUExecutionProvider" in msg and "onnxruntime-gpu" in msg


@pytest.mark.parametrize("word", ["gpu", "cuda:x:y", "", "cpu+fp16"])
def test_bad_words(word):
    with pytest.raises(ValueError):
        P.resolve(word)


def test_tensorrt_cache_key_changes_with_model_and_precision(tmp_path):
    a = P.trt_cache_dir("a" * 64, False, tmp_path)
    b = P.trt_cache_dir("b" * 64, False, tmp_path)
    c = P.trt_cache_dir("a" * 64, True, tmp_path)
    assert len({a, b, c}) == 3
    assert ort.__version__ in a.name


def test_tensorrt_options_when_available(tmp_path, monkeypatch):
    # Exercise the option table itself by pretending the GPU build is present: the options are data.
    monkeypatch.setattr(P, "available", lambda: [P.TRT, P.CUDA, P.CPU])
    spec = P.resolve("tensorrt:1+fp16", model_sha="f" * 64, cache_root=tmp_path)
    assert spec.providers == [P.TRT, P.CUDA, P.CPU]
    opts = spec.provider_options[0]
    assert opts["device_id"] == 1 and opts["trt_fp16_enable"] is True
    assert opts["trt_engine_cache_enable"] and opts["trt_timing_cache_enable"]
    assert opts["trt_engine_cache_path"].startswith(str(tmp_path))
    assert spec.provider_options[1] == {"device_id": 1}


@pytest.mark.gpu
def test_cuda_session_runs(model_path):
    if P.CUDA not in ort.get_available_providers():
        pytest.skip("no CUDA execution provider in this onnxruntime build")
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="cuda")
    assert est.providers[0] == P.CUDA


@pytest.mark.tensorrt
def test_tensorrt_session_runs(model_path, tmp_path, monkeypatch):
    if P.TRT not in ort.get_available_providers():
        pytest.skip("no TensorRT execution provider in this onnxruntime build")
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path))
    from edgepose.runner import PoseEstimator

    est = PoseEstimator(model_path, device="tensorrt")
    assert est.providers[0] == P.TRT


def test_openvino_options_when_available(monkeypatch):
    monkeypatch.setattr(P, "available", lambda: [P.OPENVINO, P.CPU])
    spec = P.resolve("openvino", threads=2)
    assert spec.providers == [P.OPENVINO, P.CPU]
    assert spec.provider_options[0] == {"device_type": "CPU", "num_of_threads": "2"}
    assert P.resolve("auto").providers[0] == P.OPENVINO  # auto prefers OpenVINO over the plain CPU provider
    assert P.resolve("openvino:gpu", threads=2).provider_options[0] == {"device_type": "GPU"}


@pytest.mark.skipif(P.OPENVINO not in ort.get_available_providers(), reason="no OpenVINO provider (onnxruntime-openvino)")
def test_openvino_runs_the_real_model(model_path):
    from edgepose.imageio import read_image
    from edgepose.runner import PoseEstimator

    img, _ = read_image(DATA / "images" / "tfpose__apink1.jpg")
    ov = PoseEstimator(model_path, device="openvino", threads=2)
    assert ov.providers[0] == P.OPENVINO
    ref = PoseEstimator(model_path, device="cpu", threads=2).predict(img)
    got = ov.predict(img)
    assert len(got.people) == len(ref.people) >= 1
    a, b = got.keypoints(), ref.keypoints()
    both = (a[..., 2] > 0) & (b[..., 2] > 0)
    assert both.sum() >= 0.9 * (b[..., 2] > 0).sum()
    assert np.abs(a[..., :2] - b[..., :2])[both].max() < 2.0  # pixels
