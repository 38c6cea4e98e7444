"""No import circle in edgepose/: every import (module level, inside functions and under TYPE_CHECKING
alike) of one edgepose module by another is an edge; a cycle fails with its modules named."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "edgepose"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the edgepose modules it imports (``from edgepose import x`` counts as ``edgepose.x``;
    the package ``edgepose`` itself, a parent every submodule import initialises, is left out)."""
    mods = _modules()

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        out: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                out |= {resolve(a.name) for a in node.names if a.name.startswith("edgepose")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                if base.startswith("edgepose"):
                    out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else resolve(base) for a in node.names}
        graph[m] = out - {m, "edgepose", ""}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_edgepose():
    graph = import_graph()
    assert "edgepose.stream" in graph["edgepose.runner"]  # the walker sees imports inside functions
    assert cycles(graph) == []


# ------------------------------------------------------------------------------------------------
# The package map of docs/development.md: what each part may import, kept true here
# ------------------------------------------------------------------------------------------------

DOC = ROOT / "docs" / "development.md"
STAGES = {"capture", "infer", "decoding", "sink", "opening"}


def package_map(text: str) -> dict[str, set[str]]:
    """The "Package map" table: part -> the parts it may import (``-``: none)."""
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = {n.strip().strip("`") for n in cells[2].split(",")} - {"-", ""}
        table[cells[0].strip("`")] = names
    return table


def part_of(module: str, parts: set[str]) -> str:
    """The table's part for ``edgepose.a.b``: the longest listed ``a.b`` or ``a`` (``edgepose`` itself)."""
    name = module.removeprefix("edgepose").lstrip(".")
    while name and name not in parts:
        name = name.rpartition(".")[0]
    return name or "edgepose"


def part_graph(graph: dict[str, set[str]], parts: set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        p = part_of(m, parts)
        out.setdefault(p, set()).update(part_of(d, parts) for d in deps)
        out[p].discard(p)
    return out


def test_the_map_reader_and_the_part_names():
    doc = "## Package map\n\n| part | owns | may import |\n|---|---|---|\n| `a` | x | - |\n| `a.b` | y | `a`, `c` |\n"
    assert package_map(doc) == {"a": set(), "a.b": {"a", "c"}}
    parts = {"tune", "tune.profile", "stream"}
    assert part_of("edgepose.tune.profile", parts) == "tune.profile"
    assert part_of("edgepose.tune.core", parts) == "tune"
    assert part_of("edgepose.stream.infer", parts) == "stream"
    assert part_of("edgepose", parts) == "edgepose"


def test_every_import_is_in_the_package_map_and_the_map_is_current():
    table = package_map(DOC.read_text())
    actual = part_graph(import_graph(), set(table))
    unlisted = sorted(set(actual) - set(table))
    assert not unlisted, f"parts of edgepose/ missing from docs/development.md's package map: {unlisted}"
    new = {p: sorted(d - table[p]) for p, d in actual.items() if d - table[p]}
    assert not new, f"imports the package map does not allow (part: parts it now imports): {new}"
    stale = {p: sorted(table[p] - actual.get(p, set())) for p in table if table[p] - actual.get(p, set())}
    assert not stale, f"the package map allows imports that no longer exist (drop them): {stale}"
    gone = sorted(p for p in table if p not in actual)
    assert not gone, f"the package map lists parts that no longer exist: {gone}"


def test_only_the_pipeline_composes_the_stream_stages():
    graph = import_graph()
    for m, deps in graph.items():
        for d in deps:
            stage = d.removeprefix("edgepose.stream.")
            if d.startswith("edgepose.stream.") and stage in STAGES and m != "edgepose.stream.pipeline":
                assert (m, stage) == ("edgepose.stream.infer", "decoding"), f"{m} imports the stage {d}"
