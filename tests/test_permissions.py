"""Files edgepose writes get the mode the umask gives any new file (0644 under umask 022), still atomically."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgepose.fileio import atomic_path, write_bytes_atomic, write_json_atomic


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*partial*"))


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writers_follow_the_umask(tmp_path, mask, expected):
    with umask(mask):
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        write_bytes_atomic(tmp_path / "sub" / "b.bin", b"\0\1")
        with atomic_path(tmp_path / "c.txt") as tmp:
            tmp.write_text("c")
    for name in ("a.json", "sub/b.bin", "c.txt"):
        assert mode(tmp_path / name) == expected, name
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.json"
    write_json_atomic(target, {"old": True})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert target.read_text() == '{"old": true}'
    assert leftovers(tmp_path) == []


def test_exported_model_is_0644(tmp_path):
    from tiny_models import tiny_model

    from converters.common import save_atomic

    src = tiny_model(tmp_path / "src.onnx")
    import onnx

    with umask(0o022):
        save_atomic(onnx.load(src), tmp_path / "out" / "model.onnx")
    assert mode(tmp_path / "out" / "model.onnx") == 0o644
    assert leftovers(tmp_path) == []


def test_run_outputs_are_0644(cli, model_path, data_dir, tmp_path):
    picture = sorted((data_dir / "images").glob("*.jpg"))[0]
    out = tmp_path / "out"
    with umask(0o022):
        code, _, err = cli("run", picture, "--model", model_path, "--device", "cpu", "--json-dir", out / "json",
                           "--coco-out", out / "coco.json", "--render", out / "render", "--stats-json", out / "stats.json")
    assert code == 0, err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".json", ".jpg"}
    assert len(files) >= 4
    for p in files:
        assert mode(p) == 0o644, p
    assert leftovers(out) == []
