"""Every subcommand answers --help, both as `edgepose` and as `python -m edgepose`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgepose.cli import COMMANDS
from edgepose.commands.convert import CONVERTERS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_subcommand(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0
    assert "usage: edgepose " + command in out


@pytest.mark.parametrize("converter", sorted(CONVERTERS))
def test_help_of_every_converter(cli, converter):
    code, out, _ = cli("convert", converter, "--help")
    assert code == 0
    assert f"edgepose convert {converter}" in out


def test_top_level_help_lists_subcommands(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out


def test_python_dash_m_and_console_script():
    out = subprocess.run([sys.executable, "-m", "edgepose", "--help"], capture_output=True, text=True, check=True).stdout
    assert "usage: edgepose" in out
    exe = str(Path(sys.executable).parent / "edgepose")
    script = subprocess.run([exe, "info", "--help"], capture_output=True, text=True)
    assert script.returncode == 0 and "usage: edgepose info" in script.stdout


def test_unknown_subcommand_is_an_error(cli):
    code, _, err = cli("frobnicate")
    assert code == 2
    assert "invalid choice" in err


def test_missing_model_is_one_clear_line(cli, tmp_path):
    code, _, err = cli("info", tmp_path / "nope.onnx")
    assert code == 2
    assert "make model" in err
