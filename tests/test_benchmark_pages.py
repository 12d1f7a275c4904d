"""Every benchmark page in docs/ is made from its benchmarks.json by benchmarks/report.py: rendered again, it has the
same verdicts and tables. The render is the last step of a harness run of up to hours, so a change that breaks it,
or that would make the committed pages say something their figures do not, is caught here and not at the end of one."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import render  # noqa: E402

PAGES = sorted(p.parent for p in (ROOT / "docs").rglob("benchmarks.json"))


def figures(page: Path) -> list[str]:
    """The lines that carry figures and verdicts: headings, target bullets and table rows (hand notes are prose)."""
    return [line for line in page.read_text().splitlines() if line.startswith(("#", "- ", "| "))]


def test_the_committed_pages_are_found():
    assert ROOT / "docs" in PAGES and len(PAGES) >= 2


@pytest.mark.parametrize("folder", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_page_renders_again_from_its_json(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    render(folder / "benchmarks.json", tmp_path)
    capsys.readouterr()  # render also prints the page
    assert (tmp_path / "benchmarks.png").stat().st_size > 0
    committed = [line for line in figures(folder / "benchmarks.md") if not line.startswith("- ") or "**" in line]
    rendered = [line for line in figures(tmp_path / "benchmarks.md") if not line.startswith("- ") or "**" in line]
    assert rendered == committed
