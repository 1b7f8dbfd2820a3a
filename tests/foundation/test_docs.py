"""The README and docs/ point only at files (and headings) that are in the repository: a reader of a fresh
clone can follow every reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE_PATH = re.compile(r"`([\w./-]+\.md)`")  # a document named in code spans, e.g. `../x/design.md`


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", doc.read_text(encoding="utf-8"), re.M)}


def _references(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    links = [t for t in _LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    return links + _CODE_PATH.findall(text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_reference_resolves_inside_the_repository(doc: Path) -> None:
    broken = []
    for ref in _references(doc):
        target, _, anchor = ref.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        inside = path == ROOT or ROOT in path.parents
        missing_heading = (
            bool(anchor) and path.suffix == ".md" and path.exists() and anchor not in _anchors(path)
        )
        if not inside or not path.exists() or missing_heading:
            broken.append(ref)
    assert not broken, f"{doc.relative_to(ROOT)} points at what the repository does not have: {broken}"
