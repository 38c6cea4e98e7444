"""Shared fixtures: the real model and the real data beside the checkout (../shared/data)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEPOSE_DATA", ROOT.parent / "shared" / "data"))
MODEL = Path(os.environ.get("EDGEPOSE_MODEL", ROOT / "models" / "mobilenet_thin.onnx"))
COCO_MINI = DATA / "coco-val-mini"
IMAGES = DATA / "images"
VIDEO = DATA / "video" / "mmaction2__demo_skeleton.mp4"


def need_service(why: str) -> None:
    """A real server the test needs (mosquitto, GStreamer's RTSP server, tritonserver) is missing: a skip
    on a developer's machine, a failure under ``CI=true``, where `make test` installs them all."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why} (CI=true: a missing service fails the run instead of skipping)", pytrace=False)
    pytest.skip(why)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} missing at {path}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(DATA, "the shared data folder (../shared/data)")


@pytest.fixture(scope="session")
def model_path() -> Path:
    return _need(MODEL, "the default model: run `make model`")


@pytest.fixture(scope="session")
def estimator(model_path):
    from edgepose.runner import PoseEstimator

    return PoseEstimator(model_path, device="cpu", threads=2)


@pytest.fixture
def cli(capsys):
    """Run the edgepose CLI in-process; return (exit code, stdout, stderr)."""
    from edgepose.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
