"""README.md and docs/*.md: relative links resolve, anchors exist, the README stays a short front door.

Links are checked against the files git would put in a fresh clone (tracked, or new and not ignored),
so a link to an ignored build output (most of ``benchmarks/results/*.png``) fails here as it would
on GitHub. Absolute links (http, https, mailto, ...) are not fetched.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_CHARS = 10_500
SETUP_LINES = 40
SETUP_COMMANDS = ("make demo", "make test", "pip install 'edgepose[cpu]'")

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def links(text: str) -> list[tuple[int, str]]:
    """Link and image targets of a markdown text, with their line numbers (code is skipped).

    Example:
        >>> links("see [a `b`](docs/x.md#y) and `[not](a link)`\\n```\\n[no](t.md)\\n```")
        [(1, 'docs/x.md#y')]
    """
    found = []
    for n, line in _prose_lines(text):
        line = _CODE_SPAN.sub(lambda m: "code", line)
        targets = [m.group(1) for m in _INLINE.finditer(line)]
        targets += [m.group(1) for m in _REFDEF.finditer(line)]
        targets += [m.group(1) for m in _HTML.finditer(line)]
        found += [(n, t[1:-1] if t.startswith("<") else t) for t in targets]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text.

    Example:
        >>> slug("CMU OpenPose Caffe models (COCO-18, MPI-15, BODY_25)")
        'cmu-openpose-caffe-models-coco-18-mpi-15-body_25'
        >>> slug("Variants: fp16 and `int8`")
        'variants-fp16-and-int8'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images -> their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub makes for a page's headings (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(2))
        k = seen.get(s, 0)
        seen[s] = k + 1
        out.add(s if k == 0 else f"{s}-{k}")
    return out


@pytest.fixture(scope="module")
def repo_files() -> set[str]:
    """Paths a fresh clone would have: tracked, or untracked and not ignored (new, not yet committed)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell tracked files from build outputs")
    return {p for p in out.decode("utf-8").split("\0") if p and (ROOT / p).exists()}


def _resolve(page: Path, target: str, files: set[str]) -> tuple[Path | None, str]:
    """The file or folder a relative link names, or None and why."""
    path, _, _ = unquote(target).partition("#")
    dest = (page.parent / path).resolve() if path else page
    try:
        rel = dest.relative_to(ROOT).as_posix()
    except ValueError:
        return None, "points outside the repository"
    if rel in files or (rel == "." and files):
        return dest, ""
    if any(f.startswith(rel.rstrip("/") + "/") for f in files):
        return dest, ""  # a folder with tracked files in it
    if dest.exists():
        return None, "exists here but is not in the repository (ignored or untracked build output?)"
    return None, "does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path, repo_files: set[str]) -> None:
    bad = []
    for n, target in links(page.read_text(encoding="utf-8")):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # absolute: not fetched
        dest, why = _resolve(page, target, repo_files)
        if dest is None:
            bad.append(f"line {n}: {target}: {why}")
            continue
        _, _, anchor = target.partition("#")
        if anchor and dest.suffix == ".md" and dest.is_file():
            if unquote(anchor).lower() not in anchors(dest):
                bad.append(f"line {n}: {target}: no heading with anchor #{anchor} in {dest.name}")
    assert not bad, f"{page.relative_to(ROOT)}:\n" + "\n".join(bad)


def test_links_are_found() -> None:
    # guards the regexes: the README links to the docs, and the docs to results
    assert any(t.startswith("docs/") for _, t in links(README.read_text(encoding="utf-8")))
    perf = ROOT / "docs" / "performance.md"
    assert any(t.endswith(".png") for _, t in links(perf.read_text(encoding="utf-8")))


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8"))
    assert n < README_MAX_CHARS, f"README.md has {n} characters; move detail to docs/ (limit {README_MAX_CHARS})"


def test_readme_starts_with_setup() -> None:
    head = "\n".join(README.read_text(encoding="utf-8").splitlines()[:SETUP_LINES])
    missing = [c for c in SETUP_COMMANDS if c not in head]
    assert not missing, f"not in the README's first {SETUP_LINES} lines: {missing}"


def test_every_docs_page_is_in_the_index() -> None:
    index = ROOT / "docs" / "README.md"
    listed = {Path(unquote(t).partition("#")[0]).name for _, t in links(index.read_text(encoding="utf-8"))}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= listed, f"docs pages missing from docs/README.md: {sorted(pages - listed)}"


def test_slugs() -> None:
    assert slug("Accuracy, decoder speed and memory") == "accuracy-decoder-speed-and-memory"
    assert slug("JSON lines, exit codes and network streams") == "json-lines-exit-codes-and-network-streams"
    assert slug("Throughput: stream against the model alone") == "throughput-stream-against-the-model-alone"
    assert slug("Parity with OpenCV's Caffe importer") == "parity-with-opencvs-caffe-importer"
