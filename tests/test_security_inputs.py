"""Pictures and frames with bounded memory (issue 24, item 2): a picture above the pixel cap is refused
from its header before it is decoded, every decode error of one input is that input's one-line skip,
and a folder run with a 30000x30000 PNG bomb stays within 400 MB."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import IMAGES, MODEL, VIDEO

from edgepose.imageio import DEFAULT_MAX_PIXELS, ImageError, decode_image, header_size, read_image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that says ``w x h`` and holds no pixels (65 bytes): OpenCV raises cv2.error on it."""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")  # fmt: skip


def png_bomb(path: Path, side: int = 30000) -> Path:
    """A real, valid grayscale PNG of ``side x side`` black pixels: about 1 MB on disk, 2.7 GB as BGR."""
    comp = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    parts = []
    block = row * 64
    for _ in range(side // 64):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * (side % 64)))
    parts.append(comp.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))  # fmt: skip
    return path


def test_the_header_is_read_before_decoding():
    data = png_header_only(50000, 50000)
    assert len(data) == 65 and header_size(data) == (50000, 50000)
    with pytest.raises(ImageError, match=r"50000x50000 = 2500000000 pixels is above the cap of 89478485"):
        decode_image(data, "bomb.png")
    # under the cap OpenCV's own error (no pixels in the file) is the picture's one-line ImageError
    with pytest.raises(ImageError) as e:
        decode_image(png_header_only(100, 100), "empty.png")
    assert "\n" not in str(e.value)


def test_the_cap_can_be_set_and_switched_off():
    pic = IMAGES / "tfpose__p1.jpg"
    img, _ = read_image(pic)
    n = img.shape[0] * img.shape[1]
    with pytest.raises(ImageError, match="above the cap"):
        read_image(pic, max_pixels=n - 1)
    assert read_image(pic, max_pixels=n)[0].shape == img.shape
    assert read_image(pic, max_pixels=0)[0].shape == img.shape
    # a format whose header we do not read (TIFF) is checked once decoded
    tif = cv2.imencode(".tiff", img)[1].tobytes()
    assert header_size(tif) is None
    with pytest.raises(ImageError, match="decodes to"):
        decode_image(tif, "p.tif", max_pixels=n - 1)
    with pytest.raises(ImageError, match="not a JPEG, PNG, BMP or WebP"):
        decode_image(tif, "p.tif", known_formats_only=True)
    assert DEFAULT_MAX_PIXELS == 89_478_485


def test_a_header_bomb_is_one_skipped_picture_in_a_folder_run(tmp_path, cli):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(IMAGES / "tfpose__p1.jpg", folder / "a.jpg")
    (folder / "b_bomb.png").write_bytes(png_header_only(50000, 50000))
    (folder / "c_empty.png").write_bytes(png_header_only(64, 64))
    shutil.copy(IMAGES / "tfpose__p2.jpg", folder / "d.jpg")
    out = tmp_path / "json"
    code, stdout, err = cli("run", folder, "--model", MODEL, "--device", "cpu", "--threads", "2", "--json-dir", out)
    assert code == 1, err  # something failed; the run went on
    text = stdout + err
    assert "b_bomb.png" in text and "above the cap" in text and "Traceback" not in text
    people = {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(people) == {"a_keypoints.json", "b_bomb_keypoints.json", "c_empty_keypoints.json", "d_keypoints.json"}
    assert people["a_keypoints.json"]["people"] and people["d_keypoints.json"]["people"]
    assert "above the cap" in people["b_bomb_keypoints.json"]["error"]  # recorded in its output, as bad inputs are


def test_a_picture_above_the_cap_set_on_the_command_line(tmp_path, cli):
    code, stdout, err = cli("run", IMAGES / "tfpose__p1.jpg", "--model", MODEL, "--device", "cpu", "--max-pixels", "1000")
    assert code == 1 and "above the cap of 1000 pixels" in stdout + err
    code, _, err = cli("run", IMAGES / "tfpose__p1.jpg", "--model", MODEL, "--device", "cpu", "--max-pixels", "-3")
    assert code == 2 and "--max-pixels" in err


def test_a_video_above_the_cap_is_refused_with_one_message(cli, tmp_path):
    code, stdout, err = cli("run", VIDEO, "--model", MODEL, "--device", "cpu", "--max-pixels", str(1920 * 1080 - 1),
                            "--jsonl", tmp_path / "o.jsonl")  # fmt: skip
    assert code != 0 and "1920x1080" in stdout + err and "above the cap" in stdout + err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_png_bomb_in_a_folder_run_stays_under_400_mb(tmp_path, python):
    folder = tmp_path / "in"
    folder.mkdir()
    bomb = png_bomb(folder / "bomb.png")
    assert bomb.stat().st_size < 2_000_000
    shutil.copy(IMAGES / "tfpose__p1.jpg", folder / "a.jpg")
    out = tmp_path / "json"
    # the child reports its own peak RSS: VmHWM (ru_maxrss would carry pytest's peak across the exec)
    code = ("import sys, runpy\n"
            f"sys.argv = ['edgepose', 'run', {str(folder)!r}, '--model', {str(MODEL)!r}, '--device', 'cpu',"
            f" '--threads', '2', '--json-dir', {str(out)!r}]\n"
            "try:\n    runpy.run_module('edgepose', run_name='__main__')\n"
            "finally:\n    hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "    print('PEAK_KB', hwm, file=sys.stderr)\n")
    p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    peak_mb = int(p.stderr.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024
    assert p.returncode == 1, p.stderr[-2000:]
    assert "bomb.png" in p.stdout + p.stderr and "above the cap" in p.stdout + p.stderr
    assert len(list(out.glob("a*.json"))) == 1
    assert peak_mb <= 400, f"peak RSS {peak_mb:.0f} MB"
    print(f"peak RSS of the folder run with a 30000x30000 PNG bomb: {peak_mb:.0f} MB")
    assert np.isfinite(peak_mb)


@pytest.mark.parametrize("key,value,message", [
    ("stride", "0", "stride must be 1..64"),
    ("stride", "-8", "stride must be 1..64"),
    ("stride", "100000", "stride must be 1..64"),
    ("preferred_input_size", "100000x8", "outside 16..16384"),
    ("keypoint_names", "[" * 100000 + "]" * 100000, "nested too deeply"),
    ("limbs", '"not a list"', "malformed"),
])  # fmt: skip
def test_model_metadata_is_validated_with_one_message(key, value, message):
    import onnx

    from edgepose.meta import MetadataError, ModelMeta

    props = {p.key: p.value for p in onnx.load(str(MODEL), load_external_data=False).metadata_props}
    assert ModelMeta.from_props(props).stride == 8
    with pytest.raises(MetadataError, match=message) as e:
        ModelMeta.from_props({**props, key: value})
    assert "\n" not in str(e.value)


def test_info_on_a_file_that_is_not_onnx(cli, tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("hello")
    code, out, err = cli("info", bad)
    assert code == 2 and "not an ONNX model" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_service_fails_under_ci(monkeypatch):
    import conftest

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        conftest.need_service("mosquitto is not installed")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        conftest.need_service("mosquitto is not installed")


def test_external_weights_resolve_beside_the_model_not_the_working_directory(tmp_path, monkeypatch):
    import onnx

    from edgepose.runner import PoseEstimator

    d = tmp_path / "model"
    d.mkdir()
    onnx.save_model(onnx.load(str(MODEL)), str(d / "m.onnx"), save_as_external_data=True, location="m.weights",
                    all_tensors_to_one_file=True, size_threshold=1024)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "m.weights").write_bytes(b"planted")  # what the working directory would have offered
    monkeypatch.chdir(elsewhere)
    est = PoseEstimator(d / "m.onnx", device="cpu", threads=2)
    assert est.predict(cv2.imread(str(IMAGES / "tfpose__p1.jpg"))).people
