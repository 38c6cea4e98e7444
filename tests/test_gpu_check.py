"""The one-shot GPU check (benchmarks/gpu_check.py): refuses cleanly without a GPU, and its machinery runs on the CPU."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))
gpu_check = pytest.importorskip("benchmarks.gpu_check")


def test_without_a_gpu_provider_it_refuses_with_the_install_hint(capsys):
    from edgepose._ort import ort

    if set(gpu_check.GPU_PROVIDERS) & set(ort.get_available_providers()):
        pytest.skip("this onnxruntime build has a GPU provider")
    assert gpu_check.main(["--devices", "cuda", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime-gpu" in err and "pip uninstall -y onnxruntime onnxruntime-gpu" in err


@pytest.mark.slow
def test_the_machinery_on_the_cpu(tmp_path, model_path, data_dir, capsys):
    out = tmp_path / "gpu.json"
    code = gpu_check.main(["--devices", "cpu", "tensorrt+int8", "--quick", "--images", "2", "--model", str(model_path),
                           "--data", str(data_dir), "--out", str(out)])
    assert code == 0, capsys.readouterr()
    res = json.loads(out.read_text())
    cpu = res["configs"][0]
    assert cpu["device"] == "cpu"
    assert cpu["placement"]["nodes"].get("CPUExecutionProvider", 0) > 50 and not cpu["placement"]["all_on_gpu"]
    assert cpu["max_diff"]["heatmaps"] == 0.0 and cpu["keypoints_within_1px"] == 1.0
    assert set(cpu["latency_ms"]) == {"small/b1", "small/b2"}
    assert "skipped" in res["configs"][1]  # no GPU provider (or no int8 variant): skipped with the reason
    assert res["run"]["offline"]["exit"] == 0 and res["run"]["offline"]["stats"]["processed"] > 0
    assert "| cpu |" in capsys.readouterr().out
