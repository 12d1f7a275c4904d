"""benchmarks/sts_split.py: the in-domain STS experiment never distils on a sentence it scores."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sts_split  # noqa: E402

from edgesmith.config import load_recipe  # noqa: E402


def test_no_held_out_sentence_is_distilled_on_and_each_sentence_comes_once():
    pairs = [["a", "b", "5"], ["c", "a", "1"], ["d", "d", "4"], ["e", "f", "2"], ["g", "h", "3"], ["f", "i", "0"]]
    held_out, text = sts_split.split(pairs)
    assert held_out == [["a", "b", "5"], ["d", "d", "4"], ["g", "h", "3"]]
    assert text == ["c", "e", "f", "i"]  # "a" is held out; "f" comes once


def test_the_real_split_and_its_recipe(tmp_path, monkeypatch):
    stsb = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsb" / "dev.tsv"
    if not stsb.exists():
        pytest.skip("../shared/data/stsb is not beside the repo")
    monkeypatch.setattr(sys, "argv", ["sts_split.py", str(tmp_path), "--seed", "2", "--stsb", str(stsb)])
    sts_split.main()
    scored = (tmp_path / "eval.tsv").read_text(encoding="utf-8").splitlines()
    text = (tmp_path / "indomain.tsv").read_text(encoding="utf-8").splitlines()
    assert scored[0] == "sentence1\tsentence2\tscore" and len(scored) == 751
    assert text[0] == "sentence" and len(text) == 1432 == len(set(text))
    assert not {s for row in scored[1:] for s in row.split("\t")[:2]} & set(text[1:])
    recipe = yaml.safe_load((tmp_path / "minilm-sts-indomain.yaml").read_text())
    load_recipe(tmp_path / "minilm-sts-indomain.yaml", {})  # the product accepts it as written
    assert recipe["data"]["source"] == str(tmp_path / "indomain.tsv")
    assert "min_words" not in recipe["data"] and "max_train_samples" not in recipe["data"]
    assert recipe["distill"]["epochs"] == 10 and recipe["distill"]["seed"] == 2
