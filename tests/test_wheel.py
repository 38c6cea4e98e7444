"""edgepose as a user installs it: a wheel with only the `cpu` extra, in a fresh venv, run outside the checkout.

Builds the wheel from a copy of the package sources (nothing is written into the checkout), installs
``edgepose[cpu]`` into a new virtual environment (pip's cache makes this quick after the first time),
and from a folder outside the checkout runs ``edgepose bench --quick`` (JSON written and schema-valid,
no baselines and no plots, each said once) and ``edgepose run`` on a real picture (keypoints JSON).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, IMAGES, MODEL, ROOT

from edgepose.bench.schema import validate

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's bin folder, a working folder outside the checkout)."""
    if not MODEL.is_file():
        pytest.fail(f"the default model is missing at {MODEL}: run `make model`", pytrace=False)
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("edgepose", "converters"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", dist, src], tmp))
    (wheel,) = dist.glob("edgepose-*.whl")
    venv = tmp / "venv"
    _ok(_run([sys.executable, "-m", "venv", venv], tmp))
    bin_ = venv / "bin"
    _ok(_run([bin_ / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{wheel}[cpu]"], tmp,
             timeout=600))  # fmt: skip
    work = tmp / "work"
    work.mkdir()
    return bin_, work


def test_the_wheel_has_only_the_runtime(installed):
    bin_, work = installed
    probe = ("import importlib.util as u, edgepose; print(edgepose.__file__); "
             "print([m for m in ('benchmarks', 'matplotlib', 'psutil', 'pycocotools', 'tensorflow') if u.find_spec(m)])")  # fmt: skip
    out = _ok(_run([bin_ / "python", "-c", probe], work)).stdout.splitlines()
    assert not out[0].startswith(str(ROOT)), out[0]
    assert out[1] == "[]"  # the bench below really runs without the optional extras and without the checkout


def test_bench_quick_from_the_wheel(installed):
    bin_, work = installed
    proc = _ok(_run([bin_ / "edgepose", "bench", "--quick", "--model", MODEL, "--data", DATA, "--no-progress"], work))
    out = proc.stdout
    wrote = [ln.removeprefix("wrote ") for ln in out.splitlines() if ln.startswith("wrote ")]
    assert len(wrote) == 1, out
    path = work / wrote[0]
    assert path.parent == work / "edgepose-bench" and path.name.endswith("-quick.json")
    r = json.loads(path.read_text())
    assert validate(r) == [] and r["mode"] == "quick"
    (c,) = r["configs"]
    assert c["role"] == "edgepose" and c["active_providers"][0] == "CPUExecutionProvider"
    assert c["stages_ms"]["inference"]["p50"] > 0 and c["peak_rss_mb"] > 50  # memory from /proc, no psutil
    assert r["ratios"] == [] and r["decoders"] is None and r["session_study"] is None
    assert r["machine"]["git"] is None and r["machine"]["cores"]["physical"] >= 1
    # what is missing is said once each, naming what to do
    assert (out + proc.stderr).count("baselines need a checkout") == 1
    assert any("baselines need a checkout" in s["why"] for s in r["skipped"])
    skipped = [ln for ln in out.splitlines() if ln.startswith("plots skipped")]
    assert len(skipped) == 1 and "edgepose[bench]" in skipped[0], out
    assert not list(path.parent.glob("*.png"))
    assert "Traceback" not in proc.stderr


def test_bench_errors_from_the_wheel(installed):
    bin_, work = installed
    proc = _run([bin_ / "edgepose", "bench", "--quick", "--model", MODEL, "--data", DATA, "--accuracy"], work)
    assert proc.returncode == 2 and "edgepose[eval]" in proc.stderr, proc.stderr
    proc = _run([bin_ / "edgepose", "bench", "--quick", "--model", MODEL], work)
    assert proc.returncode == 2 and "--source" in proc.stderr and "--data" in proc.stderr, proc.stderr


def test_run_from_the_wheel(installed):
    bin_, work = installed
    picture = sorted(IMAGES.glob("*.jpg"))[0]
    out = work / "json"
    _ok(_run([bin_ / "edgepose", "run", picture, "--model", MODEL, "--json-dir", out, "--threads", "2"], work))
    (f,) = out.glob("*_keypoints.json")
    people = json.loads(f.read_text())["people"]
    assert people and all(len(p["pose_keypoints_2d"]) == 18 * 3 for p in people)
    assert any(max(p["pose_keypoints_2d"][2::3]) > 0.5 for p in people)
