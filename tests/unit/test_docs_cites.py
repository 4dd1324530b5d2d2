"""Code cites the method by section (`docs/method.md §n`): every cited section exists, and no code
cites a file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("adakd", "analysis", "app", "tests", "scripts", "benchmarks")
CITE = re.compile(r"docs/method\.md §(\d+(?:\.\d+)?)")


def _sources() -> list[Path]:
    return [p for folder in FOLDERS for p in sorted((REPO / folder).rglob("*")) if p.suffix in (".py", ".sh")]


def _sections() -> set[str]:
    headings = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", (REPO / "docs" / "method.md").read_text(), re.M)
    return set(headings)


def test_every_cited_section_of_method_md_exists():
    sections = _sections()
    assert {"1", "1.1", "2", "3", "4", "5"} <= sections  # the page's own numbering is read
    missing = [
        f"{path.relative_to(REPO)}: §{number}"
        for path in _sources()
        for number in CITE.findall(path.read_text(encoding="utf-8"))
        if number not in sections
    ]
    assert missing == []


def test_no_code_cites_a_method_file_outside_the_repository():
    this = Path(__file__).resolve()
    offenders = [str(p.relative_to(REPO)) for p in _sources() if p != this and "METHOD.md" in p.read_text()]
    assert offenders == []
