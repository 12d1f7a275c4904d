import json

import pytest

from edgesmith.data import encode_labels, load_splits, normalize, pydoc_sentences
from edgesmith.errors import EdgesmithError


def test_folder_with_train_and_dev_tsv(tiny_data):
    splits = load_splits(str(tiny_data), 0.1)
    rows, cols = normalize(splits["eval"], None, "label", "dev")
    assert cols == ("sentence",) and len(rows) == 40
    assert encode_labels(rows, None, "dev") == ["0", "1"]
    assert {r["label"] for r in rows} <= {0, 1}


def test_csv_jsonl_and_sentence_pairs(tmp_path):
    (tmp_path / "pairs.csv").write_text('premise,hypothesis,label\n' + '"a cat, sitting",a cat,entail\nthe dog,a bird,contra\n' * 10)
    splits = load_splits(str(tmp_path / "pairs.csv"), 0.2)
    rows, cols = normalize(splits["train"], None, "label", "csv")
    assert cols == ("premise", "hypothesis") and len(rows[0]["text"]) == 2
    assert encode_labels(rows, None, "csv") == ["contra", "entail"]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": f"row {i}", "label": i % 2}) + "\n" for i in range(20)))
    splits = load_splits(str(tmp_path / "d.jsonl"), 0.25)
    assert len(splits["eval"]) == 5 and len(splits["train"]) == 15


def test_missing_label_column_is_named(tiny_data):
    rows, _ = normalize(load_splits(str(tiny_data), 0.1)["eval"], None, "target", "dev")
    with pytest.raises(EdgesmithError, match="label column missing"):
        encode_labels(rows, None, "dev")


def test_empty_and_missing_sources(tmp_path):
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(EdgesmithError, match="no rows"):
        normalize(load_splits(str(tmp_path / "empty.tsv"), 0.1)["train"], None, "label", "empty")
    with pytest.raises(EdgesmithError, match="not found"):
        load_splits(str(tmp_path / "nope.tsv"), 0.1)
    (tmp_path / "folder").mkdir()
    with pytest.raises(EdgesmithError, match="no train file"):
        load_splits(str(tmp_path / "folder"), 0.1)


def test_pydoc_sentences_are_real_english_prose():
    rows = pydoc_sentences()
    assert len(rows) > 500
    texts = [r["text"][0] if isinstance(r["text"], list) else r["text"] for r in rows]
    assert all(t[-1] in ".!?" for t in texts)
    assert sum(t[0].isupper() for t in texts) > 0.9 * len(texts)
    assert sum(" the " in t for t in texts) > len(texts) / 3
