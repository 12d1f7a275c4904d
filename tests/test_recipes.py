"""Every recipe the repository ships loads, validates and plans from the repository root, as the README runs it:
a recipe edgesmith would refuse (a renamed setting, a keep count above the model's, a missing profile) fails here,
not on a user's first command. Planning reads the teacher's config and the data's files but trains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgesmith

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml")) + [ROOT / "pipeline" / "quickstart.yaml"]


def test_the_repository_ships_its_recipes():
    assert {"sst2.yaml", "sst2-fast.yaml", "minilm-sts.yaml", "quickstart.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_a_shipped_recipe_plans_every_stage(recipe, tmp_path, monkeypatch):
    if "../shared/" in recipe.read_text() and not (ROOT.parent / "shared").is_dir():
        pytest.skip("the benchmark teachers and data (../shared) are not beside this checkout")
    monkeypatch.chdir(ROOT)  # the recipes' paths are relative to the repository root, where the README runs them
    out = tmp_path / "run"
    plan = edgesmith.plan(recipe, out=out)
    names = [s.folder for s in plan.stages]
    assert names[0] == "00-data" and names[-1] == "09-report" and any(n.startswith("08-bundle-") for n in names)
    assert all(s.action == "run" for s in plan.stages)  # a fresh folder: nothing to reuse
    assert not out.exists()  # planning writes nothing
