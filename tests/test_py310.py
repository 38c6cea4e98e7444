"""``requires-python >= 3.10`` stays true: JetPack 6 ships Python 3.10 (issue #14).

Every module of the installed packages (``edgepose``, ``converters``) must parse with Python 3.10's
grammar and must not use standard-library names added in 3.11 or later. ruff's ``py310`` target
(pyproject.toml) covers the upgrade rules; this test covers what ruff does not: grammar and new
stdlib names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edgepose", "converters")

#: (module, name) pairs added to the standard library in Python 3.11+
NEW_NAMES: set[tuple[str, str]] = {
    ("asyncio", "TaskGroup"), ("asyncio", "timeout"), ("asyncio", "timeout_at"), ("asyncio", "Runner"),
    ("contextlib", "chdir"), ("datetime", "UTC"), ("enum", "StrEnum"), ("enum", "ReprEnum"), ("enum", "verify"),
    ("enum", "EnumCheck"), ("enum", "global_enum"), ("enum", "member"), ("enum", "nonmember"),
    ("hashlib", "file_digest"), ("inspect", "getmembers_static"), ("itertools", "batched"),
    ("logging", "getLevelNamesMapping"), ("math", "cbrt"), ("math", "exp2"), ("operator", "call"),
    ("sys", "exception"), ("typing", "Self"), ("typing", "LiteralString"), ("typing", "Never"),
    ("typing", "assert_never"), ("typing", "assert_type"), ("typing", "reveal_type"), ("typing", "NotRequired"),
    ("typing", "Required"), ("typing", "TypeVarTuple"), ("typing", "Unpack"), ("typing", "dataclass_transform"),
    ("typing", "override"), ("typing", "TypeAliasType"), ("typing", "get_overloads"), ("typing", "clear_overloads"),
    ("shutil", "move_to_trash"), ("pathlib", "UnsupportedOperation"),
}  # fmt: skip
#: modules added in 3.11+
NEW_MODULES = {"tomllib", "wsgiref.types"}
#: builtins added in 3.11+
NEW_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup"}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def _violations(tree: ast.AST) -> list[str]:
    alias: dict[str, str] = {}  # local name -> module
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in NEW_MODULES:
                    found.append(f"line {node.lineno}: import {a.name} (3.11+)")
                alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEW_MODULES:
                found.append(f"line {node.lineno}: from {node.module} import ... (3.11+)")
            for a in node.names:
                if (node.module, a.name) in NEW_NAMES:
                    found.append(f"line {node.lineno}: from {node.module} import {a.name} (3.11+)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            mod = alias.get(node.value.id)
            if mod and (mod, node.attr) in NEW_NAMES:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr} (3.11+)")
        elif isinstance(node, ast.Name) and node.id in NEW_BUILTINS:
            found.append(f"line {node.lineno}: {node.id} (3.11+)")
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_runtime_module_is_python310(path: Path) -> None:
    src = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(src, filename=str(path), feature_version=(3, 10))
    except SyntaxError as e:
        pytest.fail(f"{path.relative_to(REPO)} does not parse as Python 3.10: {e}")
    bad = _violations(tree)
    assert not bad, f"{path.relative_to(REPO)} uses Python 3.11+ names: " + "; ".join(bad)


def test_checker_finds_new_names() -> None:
    src = (
        "import tomllib\nimport datetime as d\nfrom typing import Self\nimport enum\n"
        "x = d.UTC\nclass A(enum.StrEnum): pass\ntry:\n    pass\nexcept ExceptionGroup:\n    pass\n"
    )
    bad = _violations(ast.parse(src))
    assert len(bad) == 5, bad
    with pytest.raises(SyntaxError):
        ast.parse("try:\n    pass\nexcept* ValueError:\n    pass\n", feature_version=(3, 10))


def test_pyproject_promises_310() -> None:
    tomllib = pytest.importorskip("tomllib")  # 3.11+; the runtime itself must not use it
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert doc["project"]["requires-python"] == ">=3.10"
    assert doc["tool"]["ruff"]["target-version"] == "py310"
