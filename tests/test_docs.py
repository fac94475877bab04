"""The project's documentation is in the repository: what the code cites exists.

Comments and docstrings cite pages of `docs/` by section ("docs/contracts.md §4"); a citation of a
page or section that does not exist, or of notes that never were part of the repository, sends a
reader nowhere. These tests read the files as a contributor would and fail on such a citation.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCANNED_DIRS = ("app", "tests", "bench", "scripts", "migrations", ".ci")
SCANNED_FILES = ("README.md", "Makefile", "pyproject.toml", "Dockerfile", "docker-compose.yml")

# Working notes outside the repository. Spelled as patterns so this file does not match itself.
OUTSIDE_NOTES = re.compile(r"\b(?:DESIGN|FACTS|STYLE)\.md\b|(?:\.\./|/work/)shared\b")
# `docs/<page>.md`, then any section marks right after it: "§4", "§3, §4", "§11 and §12".
CITATION = re.compile(
    r"(?<![\w./-])docs/(?P<page>[\w./-]+?\.md)(?P<sections>(?:\s*(?:,|and)?\s*§\s*\d+)*)"
)
SECTION = re.compile(r"§\s*(\d+)")
NUMBERED_HEADING = re.compile(r"^#{2,3} (\d+)\. ", re.MULTILINE)
# Relative Markdown links inside docs/: [text](target) or [text](target#anchor).
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _text_files() -> list[Path]:
    files = [ROOT / name for name in SCANNED_FILES if (ROOT / name).is_file()]
    for name in SCANNED_DIRS:
        for path in sorted((ROOT / name).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files.append(path)
    readable = []
    for path in files:
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary test fixtures (spreadsheets) cite nothing
        readable.append(path)
    return readable


def _sections(page: Path) -> set[int]:
    return {int(n) for n in NUMBERED_HEADING.findall(page.read_text(encoding="utf-8"))}


def _citations() -> list[tuple[str, int, str, list[int]]]:
    """(file, line, cited page, cited section numbers) for every docs/ citation in the code."""
    found = []
    for path in _text_files():
        text = path.read_text(encoding="utf-8")
        for match in CITATION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            numbers = [int(n) for n in SECTION.findall(match.group("sections"))]
            found.append((str(path.relative_to(ROOT)), line, match.group("page"), numbers))
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
    return {_slug(h) for h in headings}


def test_no_file_cites_notes_outside_the_repository() -> None:
    offenders = []
    for path in _text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE_NOTES.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "cite docs/ or a public URL instead:\n" + "\n".join(offenders)


def test_every_cited_docs_page_exists() -> None:
    citations = _citations()
    # The code cites the docs in dozens of places; finding none would mean the scan is broken.
    assert len(citations) >= 20
    missing = [f"{f}:{line}: docs/{page}" for f, line, page, _ in citations
               if not (DOCS / page).is_file()]  # fmt: skip
    assert missing == [], "cited pages that do not exist:\n" + "\n".join(missing)


def test_every_cited_section_exists_in_its_page() -> None:
    wrong = []
    for f, line, page, numbers in _citations():
        if not numbers or not (DOCS / page).is_file():
            continue
        have = _sections(DOCS / page)
        wrong += [f"{f}:{line}: docs/{page} §{n}" for n in numbers if n not in have]
    assert wrong == [], "cited sections that do not exist:\n" + "\n".join(wrong)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_links_between_docs_pages_resolve(page: str) -> None:
    """Relative links in docs/ name existing files, and their #anchors existing headings."""
    source = DOCS / page
    broken = []
    for match in LINK.finditer(source.read_text(encoding="utf-8")):
        target = match.group("target")
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: public documentation
            continue
        path_part, _, anchor = target.partition("#")
        linked = (source.parent / path_part).resolve() if path_part else source
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading with this anchor")
    assert broken == [], f"broken links in docs/{page}:\n" + "\n".join(broken)


def test_docs_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    unlisted = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.name not in index]
    assert unlisted == []
