"""tools/check_boards.py and its package tools/boards/ without emulation: the keypoint comparison and
its verdicts, the pictures picked, and the command line.

The emulated runs themselves (``make check-arm64``, ``make check-x86-haswell``) take minutes to
hours and need root; see docs/boards.md.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
TOOL = TOOLS / "check_boards.py"


def _boards(name: str):
    """``boards.<name>`` imported as the CLI imports it: the package beside tools/check_boards.py."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(f"boards.{name}")


@pytest.fixture(scope="module")
def judge():
    return _boards("judge")


@pytest.fixture(scope="module")
def checks():
    return _boards("checks")


def _person(x0: float, y0: float, missing: tuple[int, ...] = ()) -> list[float]:
    kp = []
    for k in range(18):
        kp += [0.0, 0.0, 0.0] if k in missing else [x0 + 3 * k, y0 + 2 * k, 0.8]
    return kp


def _write(folder: Path, frames: dict[str, list[list[float]]]) -> Path:
    folder.mkdir(parents=True)
    for name, people in frames.items():
        (folder / name).write_text(json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": p} for p in people]}))
    return folder


def test_same_people_in_another_order_match(judge, tmp_path):
    a = _write(tmp_path / "a", {"f_keypoints.json": [_person(10, 10), _person(200, 50)]})
    b = _write(tmp_path / "b", {"f_keypoints.json": [_person(200.01, 50), _person(10, 10.02)]})
    c = judge.compare_keypoints(a, b)
    assert c["matched"] == 2 and c["parts"] == 36 and c["parts_one_side"] == 0
    assert c["max_px"] == pytest.approx(0.02, abs=1e-6)
    assert judge.fp32_ok(c)


def test_fp32_verdict_fails_on_distance_missing_parts_people_and_frames(judge, tmp_path):
    a = _write(tmp_path / "a", {"f_keypoints.json": [_person(10, 10)], "g_keypoints.json": []})
    far = _write(tmp_path / "far", {"f_keypoints.json": [_person(10.1, 10)], "g_keypoints.json": []})
    part = _write(tmp_path / "part", {"f_keypoints.json": [_person(10, 10, missing=(4,))], "g_keypoints.json": []})
    extra = _write(tmp_path / "extra", {"f_keypoints.json": [_person(10, 10), _person(300, 300)],
                                         "g_keypoints.json": []})  # fmt: skip
    frame = _write(tmp_path / "frame", {"f_keypoints.json": [_person(10, 10)]})
    for cand in (far, part, extra, frame):
        assert not judge.fp32_ok(judge.compare_keypoints(a, cand)), cand.name
    assert judge.compare_keypoints(a, part)["parts_one_side"] == 1
    assert judge.compare_keypoints(a, frame)["missing_frames"] == ["g_keypoints.json"]


def test_pictures_are_spread_over_the_folder(checks, tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    for i in range(10):
        (tmp_path / "images" / f"{i:02d}.jpg").write_bytes(b"")
    monkeypatch.setattr(_boards("common"), "DATA", tmp_path)  # what --data sets
    assert [p.name for p in checks.pick_pictures(3)] == ["00.jpg", "04.jpg", "09.jpg"]
    assert len(checks.pick_pictures(50)) == 10


def test_cpuinfo_models_are_known():
    cpus = _boards("root").CPUS
    assert {"cortex-a76", "cortex-a72"} <= set(cpus)
    assert "asimddp" in cpus["cortex-a76"]["features"] and "asimddp" not in cpus["cortex-a72"]["features"]


# -- the package's layout and the command line -----------------------------------------------------
#: modules of tools/boards/ -> the sibling modules each may import
LAYERS = {"common": set(), "judge": set(), "root": {"common"}, "checks": {"common", "judge", "root"}}
#: the options of tools/check_boards.py, recorded before the split into tools/boards/
OPTIONS = {"-h", "--help", "--model", "--data", "--root", "--cpu", "--pictures", "--video-frames", "--eval-size",
           "--threads", "--work", "--json-out"}  # fmt: skip
CHECKS = {"arm64", "smoke", "haswell"}


def _imports(path: Path) -> set[str]:
    """Module names imported anywhere in ``path`` (relative ones as ``.name``)."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            out |= {base} if node.module else {f"{base}{a.name}" for a in node.names}
    return out


def test_every_module_of_the_package_is_known():
    assert {p.stem for p in (TOOLS / "boards").glob("*.py")} == set(LAYERS) | {"__init__"}


def test_judge_runs_no_command_and_needs_no_other_module():
    imported = _imports(TOOLS / "boards" / "judge.py")
    assert not {m for m in imported if m.split(".")[0] in ("subprocess", "shutil")}, imported
    assert not {m for m in imported if m.startswith(".")}, imported


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_module_imports_alone_without_the_others_heavy_work(name, tmp_path):
    """Importing a module loads only the siblings it needs, and neither numpy nor edgepose (their users
    import them when they run), from any working directory."""
    import subprocess

    assert {m[1:] for m in _imports(TOOLS / "boards" / f"{name}.py") if m.startswith(".")} <= LAYERS[name]
    code = (f"import sys; sys.path.insert(0, {str(TOOLS)!r}); import boards.{name}; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('boards.', 'numpy', 'edgepose')))))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert loaded == {f"boards.{m}" for m in LAYERS[name] | {name}}, loaded


def _cli(*args: str, cwd: Path):
    import subprocess

    return subprocess.run([sys.executable, str(TOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"})  # fmt: skip


@pytest.mark.parametrize("args", [["--help"], ["arm64", "--help"]], ids=["help", "arm64-help"])
def test_help_lists_the_same_options_as_before_the_split(args, tmp_path):
    import re

    p = _cli(*args, cwd=tmp_path)  # not the repository: the package is found beside the script
    assert p.returncode == 0, p.stderr
    assert "Proof on the boards' own platforms, by emulation (issue #14)." in p.stdout
    assert set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", p.stdout)) == OPTIONS
    assert "{arm64,smoke,haswell}" in p.stdout and "{cortex-a72,cortex-a76}" in p.stdout


def test_an_unknown_check_is_refused_by_argparse(tmp_path):
    p = _cli("arm65", cwd=tmp_path)
    assert p.returncode == 2 and not p.stdout
    assert "error: argument check: invalid choice: 'arm65' (choose from 'arm64', 'smoke', 'haswell')" in p.stderr


def test_main_fills_the_defaults_and_turns_a_check_error_into_status_2(checks, tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("check_boards_cli", TOOL)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    common = _boards("common")
    seen = []
    monkeypatch.setattr(common, "DATA", common.DATA)  # main rebinds it: restored after the test
    monkeypatch.setattr(checks, "run_haswell", lambda a: seen.append(("haswell", a)) or 0)
    monkeypatch.setattr(checks, "run_arm64", lambda a: seen.append(("arm64", a)) or 1)
    assert cli.main(["haswell", "--data", str(tmp_path)]) == 0
    assert cli.main(["smoke"]) == 1
    (h, ha), (s, sa) = seen
    assert (h, ha.smoke, ha.pictures, ha.eval_size) == ("haswell", False, 2, "small")
    assert (s, sa.smoke, sa.pictures, sa.eval_size, sa.cpu, sa.threads) == ("arm64", True, 4, "default", "cortex-a76", 2)
    assert common.DATA == Path(sa.data).resolve()

    def fail(a):
        raise common.CheckError("install qemu-user-static")

    monkeypatch.setattr(checks, "run_arm64", fail)
    assert cli.main(["arm64", "--data", str(tmp_path)]) == 2
    assert common.DATA == tmp_path.resolve()
    assert "check-arm64: ERROR: install qemu-user-static" in capsys.readouterr().err


def test_the_board_versions_probe_reports_a_package_the_extras_left_out_as_null():
    """``smoke`` installs the ``cpu`` extra only, so PyAV is absent on the board: the probe must not fail
    (it did: PackageNotFoundError ended make check-arm64-smoke after the root build)."""
    import subprocess

    probe = _boards("root").VERSIONS.replace('"av"', '"no-such-package-for-edgepose"')
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["no-such-package-for-edgepose"] is None and got["numpy"] and got["python"]
