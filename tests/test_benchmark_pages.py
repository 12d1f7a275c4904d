"""Every benchmark page in docs/ is made from its benchmarks.json by benchmarks/report.py: rendered again, it has the
same verdicts and tables. The render is the last step of a harness run of hours: a change that breaks it on the
fields the committed pages carry, or that would make them say something their figures do not, is caught here (fields
newer than every committed page, such as the stage times below, have their own tests). The pages' last section
lists docs/distill_sweep.jsonl, so a row added there means re-rendering them."""

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


def test_the_time_page_adds_up_the_stages_whenever_they_were_built(tmp_path: Path) -> None:
    """A harness run that resumed from an earlier one's stages still says what its runs cost from nothing, from the
    seconds every stage manifest records, and calls the wall-time figure an estimate."""
    import levels as lv
    from report import _timing

    runs = []
    for name, distill in (("sst2-seed0", 3000.0), ("sst2-seed1", 2400.0)):
        out = tmp_path / name
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text("prune: {branches: [structured]}\n")
        for stage, seconds in (("00-data", 60.0), ("03-distill-structured", distill), ("07-bench-embedded", 120.0),
                               ("03-distill-sparse", 900.0), ("07-bench-mobile-cpu", 50.0)):  # the last two: left behind
            (out / stage).mkdir(parents=True)
            (out / stage / "manifest.json").write_text(f'{{"stage": "x", "seconds": {seconds}}}')
        for odd, text in (("notes", '{"seconds": 9999}'), ("08-bundle-embedded", "[1, 2]"), ("09-report", '{"seconds": null}')):
            (out / odd).mkdir()  # not a stage folder, and manifests that cannot be read: they count nothing
            (out / odd / "manifest.json").write_text(text)
        runs.append(lv.Run(lv.LEVELS["sst2"], int(name[-1]), recipe, out))
    built = lv.stage_seconds(runs)
    assert built == {"sst2-seed0": {"00-data": 60.0, "03-distill-structured": 3000.0, "07-bench-embedded": 120.0},
                     "sst2-seed1": {"00-data": 60.0, "03-distill-structured": 2400.0, "07-bench-embedded": 120.0}}
    meta = {"cpu": "test CPU", "jobs": 2, "stage_seconds": built,
            "timing": {"total": 600.0, "peers": 0.0, "measure": 480.0, "runs": {"sst2-seed0": 6.0, "sst2-seed1": 6.0}}}
    page = "\n".join(_timing(meta))
    assert "| sst2-seed0 | 0.1 | 53.0 | 50.0 |" in page and "| sst2-seed1 | 0.1 | 43.0 | 40.0 |" in page
    # two at a time: half the 96 run-minutes, but never less than the longest run (53)
    assert "add up to 96.0 run-minutes" in page and "about 53 min of wall time" in page and "estimated" in page
    assert "about 43 min" in "\n".join(_timing(meta | {"stage_seconds": {k: v for k, v in built.items() if k == "sst2-seed1"}}))
    # a page from a harness run that did not record them keeps its one-column table
    old = "\n".join(_timing({k: v for k, v in meta.items() if k != "stage_seconds"}))
    assert "| run | minutes |" in old and "run-minutes" not in old
