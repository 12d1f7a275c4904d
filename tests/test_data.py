import json

import pytest

from edgesmith.config import DataConfig
from edgesmith.data import load_splits, normalize, pydoc_sentences, read_table, read_task_data, read_unlabeled
from edgesmith.errors import EdgesmithError
from edgesmith.labels import encode_labels, label_ids
from edgesmith.stages.common import read_rows, write_rows


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
    with pytest.raises(EdgesmithError, match="no values in the label column 'target'"):
        read_task_data(DataConfig(source=str(tiny_data), label_column="target"), "classification")


def _rows(*labels):
    return [{"text": [f"row {i}"], "label": label} for i, label in enumerate(labels)]


@pytest.mark.parametrize("labels, names", [
    (("1", "2", "2", "1"), ["1", "2"]),
    (("-1", "1", "1", "-1"), ["-1", "1"]),
    (("3", "1", "2", "1"), ["1", "2", "3"]),
    (("10", "2", "1"), ["1", "2", "10"]),  # numerically, not as text
])
def test_numeric_labels_get_distinct_ids_in_numeric_order(labels, names):
    rows = _rows(*labels)
    assert encode_labels(rows, None, "data") == names
    assert [r["label"] for r in rows] == [names.index(label) for label in labels]


def test_a_trained_heads_label_names_decide_the_ids():
    assert label_ids(["negative", "positive"], ["positive", "negative"]) == {"positive": 0, "negative": 1}
    assert label_ids(["0", "1"], ["1", "0"]) == {"1": 0, "0": 1}  # names that read as numbers are names
    assert label_ids(["0", "1"], ["LABEL_0", "LABEL_1"]) == {"0": 0, "1": 1}
    assert label_ids(["0", "1"], ["negative", "positive"]) == {"0": 0, "1": 1}  # GLUE ids against named classes
    # data naming some of a trained head's classes: by name, the head's other classes kept (the report names them)
    assert label_ids(["negative", "positive"], ["negative", "neutral", "positive"]) == {"negative": 0, "positive": 2}
    assert label_ids(["B-PER", "O"], ["O", "B-PER", "I-PER", "B-MISC"]) == {"B-PER": 1, "O": 0}


def test_a_new_head_is_numbered_in_data_label_order():
    assert label_ids(["-1", "1"], None) == {"-1": 0, "1": 1}
    assert label_ids(["entail", "neutral"], None) == {"entail": 0, "neutral": 1}


def test_a_head_that_names_two_classes_alike_is_not_matched_by_that_name():
    """Break-it case: a 3-class head whose id2label repeats 'a' took the data's 'a' to the last of them, silently
    (before data subsets were matched by name, the count mismatch had refused it)."""
    with pytest.raises(EdgesmithError) as err:
        label_ids(["a", "b"], ["a", "a", "b"])
    assert "names two classes 'a' (ids [0, 1])" in str(err.value) and "reinit_head" in str(err.value), str(err.value)
    assert label_ids(["b", "c"], ["a", "a", "b", "c"]) == {"b": 2, "c": 3}  # the repeated name is not the data's


@pytest.mark.parametrize("labels, head, needles", [
    (["bad", "good"], ["positive", "negative"], ["['bad', 'good']", "['positive', 'negative']"]),
    (["1", "2"], ["LABEL_0", "LABEL_1"], ["['1', '2']", "['LABEL_0', 'LABEL_1']"]),
    (["0", "1"], ["LABEL_0", "LABEL_1", "LABEL_2"], ["3 labels", "has 2", "reinit_head"]),
])
def test_labels_the_head_does_not_know_are_refused_naming_both_sets(labels, head, needles):
    with pytest.raises(EdgesmithError) as err:
        label_ids(labels, head)
    assert all(n in str(err.value) for n in needles), str(err.value)


def test_label_set_comes_from_every_row_not_the_capped_eval(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "good film\t2\nbad film\t1\n" * 10)
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\n" + "bad film\t1\n" * 4 + "good film\t2\n" * 4)
    data = read_task_data(DataConfig(source=str(tmp_path), max_eval_samples=4), "classification")
    assert data.labels == ["1", "2"] and {r["label"] for r in data.evals} == {"1"} and data.train_labelled


def test_training_rows_are_all_labelled_or_none(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "good film\t1\n" * 5 + "bad film\t\n" + "bad\t0\n" * 5)
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\n" + "good film\t1\nbad film\t0\n" * 3)
    with pytest.raises(EdgesmithError, match=r"\(train\): 1 of 11 rows have no label"):
        read_task_data(DataConfig(source=str(tmp_path)), "classification")
    (tmp_path / "train.tsv").write_text("sentence\n" + "good film\nbad film\n" * 5)
    data = read_task_data(DataConfig(source=str(tmp_path)), "classification")
    assert not data.train_labelled and data.labels == ["0", "1"] and all(r["label"] is None for r in data.train)


def test_bad_lines_are_named_by_their_line_number(tmp_path):
    good = json.dumps({"text": "a row", "label": 1}) + "\n"
    (tmp_path / "a.jsonl").write_text(good * 3 + "\n" + "[1, 2]\n")
    with pytest.raises(EdgesmithError, match="line 5 is an array, not an object"):
        read_table(tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").write_text(good * 6 + '{"text": oops}\n')
    with pytest.raises(EdgesmithError, match="line 7 is not valid JSON"):
        read_table(tmp_path / "b.jsonl")
    (tmp_path / "c.csv").write_text("text,label\na,1\nb,0,extra\n")
    with pytest.raises(EdgesmithError, match="line 3 has 3 fields but the header has 2"):
        read_table(tmp_path / "c.csv")


def test_one_data_row_is_too_few_to_split(tmp_path):
    (tmp_path / "one.tsv").write_text("sentence\tlabel\ngood film\t1\n")
    with pytest.raises(EdgesmithError, match="1 data row, too few for a held-out split"):
        load_splits(str(tmp_path / "one.tsv"), 0.1)


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


def test_a_datasets_sources_class_names_decide_against_a_trained_head(monkeypatch):
    """GLUE MNLI's ids (0 entailment, 1 neutral, 2 contradiction) against roberta-large-mnli's head (0 CONTRADICTION,
    1 NEUTRAL, 2 ENTAILMENT): matched by name, never by position, which would swap entailment and contradiction."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])})
    split = datasets.Dataset.from_dict({"premise": ["a b c"] * 6, "hypothesis": ["d e f"] * 6, "label": [0, 1, 2] * 2},
                                       features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict(train=split, validation=split))
    data = read_task_data(DataConfig(source="glue/mnli"), "classification")
    assert data.declared_labels == ["entailment", "neutral", "contradiction"]
    assert label_ids(data.labels, ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"], data.declared_labels) == {"0": 2, "1": 1, "2": 0}
    # a head without names (LABEL_i) or with other names keeps the dataset's ids, as before
    assert label_ids(data.labels, ["LABEL_0", "LABEL_1", "LABEL_2"], data.declared_labels) == {"0": 0, "1": 1, "2": 2}
    # a local file declares nothing: its bare ids are ids
    assert label_ids(["0", "1", "2"], ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]) == {"0": 0, "1": 1, "2": 2}


@pytest.mark.parametrize(("labels", "says"), [
    ([0, 1, 0.0, 1.0], "'0' and '0.0' are one number written two ways"),  # pandas' 1.0 after a blank, beside 1
    (["01", "1", "0"], "'01' and '1' are one number written two ways"),
    ([True, 1, False, 0], "is a JSON boolean"),  # True would have been a class apart from 1
])
def test_one_label_written_two_ways_is_refused_never_split_into_two_classes(tmp_path, labels, says):
    """A 2-class file with 0/1 in some rows and 0.0/1.0 in others had trained and shipped a 4-class head."""
    rows = "".join(json.dumps({"text": f"row {i}", "label": labels[i % len(labels)]}) + "\n" for i in range(24))
    (tmp_path / "train.jsonl").write_text(rows)
    (tmp_path / "dev.jsonl").write_text(rows)
    with pytest.raises(EdgesmithError, match=says):
        read_task_data(DataConfig(source=str(tmp_path)), "classification")


@pytest.mark.parametrize(("name", "text"), [
    ("d.tsv", "label\tsentence\tlabel\n0\ta good film\tx\n1\ta bad film\ty\n"),
    ("d.tsv", "sentence\tsentence\tlabel\na good film\tignored\t1\n"),
    ("d.jsonl", '{"text": "a good film", "label": 1, "label": "x"}\n'),
])
def test_a_column_named_twice_is_refused_never_last_one_wins(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(EdgesmithError, match="twice; rename or remove one"):
        read_table(tmp_path / name)


def test_a_separate_eval_file_reads_the_recipes_text_columns_and_never_guesses(tmp_path):
    """`eval_source` with `genre, premise, hypothesis, label` had been read as the pair (genre, premise): the wrong
    text scored, and the bundle chosen on it."""
    pair = "premise\thypothesis\tlabel\n" + "".join(f"the cat sat {i}\ta cat sat\t{i % 2}\n" for i in range(40))
    (tmp_path / "train.tsv").write_text(pair)
    (tmp_path / "eval.tsv").write_text("genre\tpremise\thypothesis\tlabel\n"
                                       + "".join(f"fiction\tthe dog ran {i}\ta dog ran\t{i % 2}\n" for i in range(40)))
    source, held_out = str(tmp_path / "train.tsv"), str(tmp_path / "eval.tsv")
    data = read_task_data(DataConfig(source=source, eval_source=held_out, text_columns=("premise", "hypothesis")),
                          "classification")
    assert data.evals[0]["text"] == ["the dog ran 0", "a dog ran"]
    with pytest.raises(EdgesmithError, match=r"3 columns could hold the text \['genre', 'premise', 'hypothesis'\]"):
        read_task_data(DataConfig(source=source, eval_source=held_out), "classification")
    (tmp_path / "single.tsv").write_text("sentence\tlabel\n" + "".join(f"the dog ran {i}\t{i % 2}\n" for i in range(40)))
    with pytest.raises(EdgesmithError, match="not as many as the training data's"):  # pairs trained, singles scored
        read_task_data(DataConfig(source=source, eval_source=str(tmp_path / "single.tsv")), "classification")


def test_declared_names_that_differ_only_in_case_never_merge_two_classes():
    """A source declaring "A" and "a" against a head with "a": matching by folded name would send ids 0 and 1 both to
    class 0. Such names decide nothing; the ids keep the old rule (ids are ids), so no two labels share a class."""
    ids = label_ids(["0", "1"], ["a", "b"], ["A", "a", "b"])
    assert ids == {"0": 0, "1": 1}
    assert len(set(ids.values())) == len(ids)
    assert label_ids(["0", "1"], ["a", "b"], ["B", "A"]) == {"0": 1, "1": 0}  # distinct names still decide


@pytest.mark.parametrize("task, train, held_out, missing", [
    ("classification", ["good", "bad", "good"], ["good", "bad", "meh"], "'meh'"),
    ("token-classification", [["O", "B-PER"], ["B-LOC"]], [["O", "B-PRE"], ["B-LOC", "I-LOC"]], "'B-PRE', 'I-LOC'"),
])
def test_held_out_labels_no_training_row_holds_are_named_when_a_new_head_learns(tmp_path, task, train, held_out, missing):
    """A new head gets a class for a label only the held-out rows hold (a typo there, or a rare class the training
    cap cut), which no row teaches it: the report names those labels instead of letting the score fall silently."""
    from edgesmith.stages.common import write_rows
    from edgesmith.stages.notes import label_notes

    write_rows(tmp_path / "train.jsonl", [{"text": ["a"], "label": label} for label in train])
    write_rows(tmp_path / "eval.jsonl", [{"text": ["a"], "label": label} for label in held_out])
    names = sorted({n for label in train + held_out for n in (label if isinstance(label, list) else [label])})
    facts = {"label_names": names, "label_ids": {n: i for i, n in enumerate(names)}, "head_trained": False}
    notes = label_notes(task, tmp_path, facts)
    assert len(notes) == 1 and missing in notes[0] and "no training row" in notes[0], notes
    write_rows(tmp_path / "eval.jsonl", [{"text": ["a"], "label": label} for label in train])
    assert label_notes(task, tmp_path, facts) == []  # every held-out label trained: nothing to say
    assert label_notes(task, tmp_path, facts | {"head_trained": True}) == []  # a trained head knows its classes


def test_label_names_in_the_markdown_report_cannot_open_html_or_split_a_table_row():
    """Seen by a red-team probe: a held-out label `<img src=x onerror=alert(1)>` reached report.md as raw HTML, which
    Markdown viewers render (report.html escaped it)."""
    from edgesmith.stages.report import _markdown

    evil = "<img src=x onerror=alert(1)>|col"
    md = _markdown("r", [("Labels", f"- Held-out labels that no training row holds: {evil!r}."),
                         ("", (["label", "n"], [[evil, "1"], ["a\nb", "2"]]))], [])
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)>" in md
    assert "| &lt;img src=x onerror=alert(1)>\\|col | 1 |" in md and "| a b | 2 |" in md


SEPARATORS = "\u2028\u2029\u0085\x0b\x0c\x1c"  # str.splitlines() breaks at each of these; a JSON line may hold them raw


def test_texts_with_unicode_line_separators_stay_whole(tmp_path):
    """U+2028 and its kin are text inside a JSON string: they had split train.jsonl's rows (the teacher stage then
    crashed on half a row) and made a valid user JSONL line "not valid JSON"."""
    texts = [f"a film{c}with a twist {i}" for i, c in enumerate(SEPARATORS)]
    write_rows(tmp_path / "rows.jsonl", [{"text": [t], "label": 1} for t in texts])
    assert [r["text"][0] for r in read_rows(tmp_path / "rows.jsonl")] == texts
    lines = [json.dumps({"text": t, "label": i % 2}, ensure_ascii=False) for i, t in enumerate(texts * 4)]
    assert any(c in "".join(lines) for c in SEPARATORS)  # written raw, not escaped
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\r\n", encoding="utf-8")
    assert [r["text"] for r in read_table(tmp_path / "d.jsonl")] == texts * 4
    (tmp_path / "more.txt").write_text("one\u2028text\r\nanother\rthird\n", encoding="utf-8", newline="")
    rows = read_unlabeled(str(tmp_path / "more.txt"), ("sentence",), "classification")
    assert [r["text"] for r in rows] == [["one\u2028text"], ["another"], ["third"]]
    (tmp_path / "mac.jsonl").write_text("\r".join(lines[:4]) + "\r", encoding="utf-8", newline="")  # lone \r line ends
    assert [r["text"] for r in read_table(tmp_path / "mac.jsonl")] == texts[:4]
