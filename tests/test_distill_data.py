"""More distillation data: in-domain text the user gives (data.unlabeled) and teacher-labelled augmentation
(data.augment, edgesmith.augment), from the data files to a distilled tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tsv
from edgesmith import stages  # noqa: F401  (registers the stages)
from edgesmith.artifacts import Artifact, run_stage
from edgesmith.augment import augment_rows, neighbours, whole_words
from edgesmith.cli import main
from edgesmith.config import AugmentConfig, DataConfig
from edgesmith.data import read_task_data
from edgesmith.errors import EdgesmithError
from edgesmith.stages.common import read_rows
from edgesmith.stages.data import DataStageConfig, distill_rows
from edgesmith.training import tokenize

UNLABELED = ["a quite lovely film really", "the plot was not dull", "it is a sad story but good"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]"]
WORDS = "good bad film movie plot actor story dull great fine poor sad happy long short old new".split()


def _data_stage(root: Path, data: DataConfig, log: list[str] | None = None) -> Artifact:
    cfg = DataStageConfig(data=data, task="classification", source_digest="x")
    return run_stage("data", cfg, {}, root / "00-data", False, (log if log is not None else []).append)


def _ids_only_teacher(tmp: Path) -> Artifact:
    """A teacher artifact as far as `distill_rows` reads it without augmentation: its task and label ids."""
    return Artifact(tmp, "t", {"label_ids": {"0": 0, "1": 1}, "task": "classification"})


def test_unlabeled_rows_are_counted_distilled_on_and_kept_from_teacher_and_eval(tmp_path, tiny_data):
    text = tmp_path / "in-domain.txt"
    text.write_text("\n".join(UNLABELED) + "\n\n")
    data = _data_stage(tmp_path, DataConfig(source=str(tiny_data), unlabeled=str(text)))
    assert data.facts["unlabeled_rows"] == 3
    assert read_rows(data.path / "unlabeled.jsonl") == [{"text": [t], "label": None} for t in UNLABELED]
    # the teacher fine-tunes on train.jsonl and every stage scores on eval.jsonl: neither holds the unlabeled text
    for split in ("train", "eval"):
        assert not {r["text"][0] for r in read_rows(data.path / f"{split}.jsonl")} & set(UNLABELED)
    rows = distill_rows(data, _ids_only_teacher(tmp_path))
    assert len(rows) == data.facts["train_rows"] + 3
    assert sorted(r["text"][0] for r in rows if r["label"] is None) == sorted(UNLABELED)


def test_held_out_text_given_as_unlabeled_text_is_left_out_counted_and_named_in_the_report(tmp_path, tiny_data):
    """Seen by a red-team probe: the eval file given again as data.unlabeled was distilled on, every held-out sentence
    of it, and nothing said so. Matched as a tokenizer sees text: case and spacing aside."""
    from edgesmith.stages.notes import data_notes

    held_out = [line.split("\t")[0] for line in (tiny_data / "dev.tsv").read_text().splitlines()[1:3]]
    text = tmp_path / "in-domain.txt"
    text.write_text("\n".join(UNLABELED + [held_out[0].upper(), "  " + held_out[1].replace(" ", "   ")]) + "\n")
    data = _data_stage(tmp_path, DataConfig(source=str(tiny_data), unlabeled=str(text)))
    assert data.facts["unlabeled_rows"] == 3 and data.facts["unlabeled_held_out"] == 2
    assert read_rows(data.path / "unlabeled.jsonl") == [{"text": [t], "label": None} for t in UNLABELED]
    notes = data_notes(data)
    assert len(notes) == 1 and notes[0].startswith("2 row(s) of data.unlabeled hold a held-out text and were left out"), notes
    plain = _data_stage(tmp_path / "plain", DataConfig(source=str(tiny_data)))
    assert "unlabeled_held_out" not in plain.facts and data_notes(plain) == []
    no_rule = DataStageConfig(data=DataConfig(source=str(tiny_data)), task="classification", source_digest="x")
    assert "unlabeled_rule" not in no_rule.canonical_json()  # runs without unlabeled text keep their cache keys
    rule = DataStageConfig(data=DataConfig(source=str(tiny_data), unlabeled=str(text)), task="classification", source_digest="x")
    assert '"unlabeled_rule":"without held-out texts"' in rule.canonical_json()  # runs with it rebuild their data once


def test_training_rows_that_repeat_a_held_out_text_are_kept_and_named_in_the_report(tmp_path):
    from edgesmith.stages.notes import data_notes

    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"film number {i}\t{i % 2}\n" for i in range(20))
                                        + "LONDON 1996-08-30\t1\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"movie number {i}\t{i % 2}\n" for i in range(10))
                                      + "london  1996-08-30\t0\n")
    data = _data_stage(tmp_path, DataConfig(source=str(tmp_path)))
    notes = data_notes(data)
    assert len(notes) == 1 and notes[0].startswith("1 of 21 training rows repeat a held-out text (e.g. 'LONDON 1996-08-30')"), notes
    assert data.facts["train_rows"] == 21  # kept: the splits are the user's


def test_without_extra_data_the_distill_rows_are_the_training_rows_in_order(tmp_path, tiny_data):
    data = _data_stage(tmp_path, DataConfig(source=str(tiny_data)))
    assert data.facts["unlabeled_rows"] == 0 and not (data.path / "unlabeled.jsonl").exists()
    rows = distill_rows(data, _ids_only_teacher(tmp_path))
    assert [r["text"] for r in rows] == [r["text"] for r in read_rows(data.path / "train.jsonl")]
    assert all(r["label"] in (0, 1) for r in rows)


def test_unlabeled_table_uses_the_text_columns_and_an_edit_reruns_the_data_stage(tmp_path, tiny_data):
    table = tmp_path / "more.jsonl"
    table.write_text("".join(json.dumps({"sentence": t, "label": "junk"}) + "\n" for t in UNLABELED))
    log: list[str] = []
    assert _data_stage(tmp_path, DataConfig(source=str(tiny_data), unlabeled=str(table)), log).facts["unlabeled_rows"] == 3
    assert _data_stage(tmp_path, DataConfig(source=str(tiny_data), unlabeled=str(table)), log).facts["unlabeled_rows"] == 3
    table.write_text(json.dumps({"sentence": "only one now"}) + "\n")
    edited = _data_stage(tmp_path, DataConfig(source=str(tiny_data), unlabeled=str(table)), log)
    assert edited.facts["unlabeled_rows"] == 1 and read_rows(edited.path / "unlabeled.jsonl")[0]["label"] is None
    assert ["running" in m for m in log if "00-data" in m and "done" not in m] == [True, False, True]


def test_unlabeled_rows_are_capped_like_the_training_rows(tmp_path, tiny_data):
    text = tmp_path / "u.txt"
    text.write_text("\n".join(f"film number {i}" for i in range(50)))
    assert len(read_task_data(DataConfig(source=str(tiny_data), unlabeled=str(text), max_train_samples=20),
                              "classification").unlabeled) == 20


def _pairs(folder: Path) -> Path:
    folder.mkdir()
    for name, n in (("train.tsv", 30), ("dev.tsv", 10)):
        rows = "".join(f"a film {i}\tthe plot {i}\t{i % 2}\n" for i in range(n))
        (folder / name).write_text("premise\thypothesis\tlabel\n" + rows)
    return folder


@pytest.mark.parametrize("case, content, needles", [
    ("missing", None, ("data.unlabeled", "not found")),
    ("empty", "\n  \n", ("no text", "one in-domain text per line")),
    ("suffix", "a film", ("not a .txt/.tsv/.csv/.jsonl/.json file",)),
    ("columns", "text\tlabel\na film\t1\n", ("no column 'sentence'", "rename its columns")),
    ("empty-table", "sentence\n", ("no rows",)),
    ("pairs-from-txt", "a film\n", ("pairs (premise, hypothesis)", "TSV/CSV/JSONL")),
])
def test_bad_unlabeled_input_is_one_line_naming_problem_and_fix(tmp_path, tiny_data, case, content, needles):
    name = {"missing": "u.txt", "suffix": "u.md", "columns": "u.tsv", "empty-table": "u.tsv"}.get(case, "u.txt")
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    source = _pairs(tmp_path / "pairs") if case == "pairs-from-txt" else tiny_data
    with pytest.raises(EdgesmithError) as err:
        read_task_data(DataConfig(source=str(source), unlabeled=str(path)), "classification")
    message = str(err.value)
    assert "\n" not in message and all(n in message for n in needles), message


def test_unlabeled_pairs_come_from_a_table_with_both_columns(tmp_path):
    table = tmp_path / "u.tsv"
    table.write_text("premise\thypothesis\na film\tthe plot\n")
    data = read_task_data(DataConfig(source=str(_pairs(tmp_path / "pairs")), unlabeled=str(table)), "classification")
    assert data.unlabeled == [{"text": ["a film", "the plot"], "label": None}]


def test_gold_label_loss_ignores_rows_without_labels_but_needs_some(tiny_bert):
    from edgesmith.modeling import load_tokenizer

    tokenizer = load_tokenizer(tiny_bert)
    items = tokenize([{"text": ["good film"], "label": 1}, {"text": ["bad film"], "label": None}], tokenizer, 16, labels=True, task="classification")
    assert [i["labels"] for i in items] == [1, -100]
    with pytest.raises(EdgesmithError, match="labelled training rows"):
        tokenize([{"text": ["good film"], "label": None}], tokenizer, 16, labels=True, task="classification")


# --- augmentation -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A WordPiece tokenizer over SPECIAL + punctuation + '##s' + WORDS, and random embeddings for it."""
    from transformers import BertTokenizerFast

    vocab = SPECIAL + [",", ".", "!", "##s", "##ly"] + WORDS
    path = tmp_path_factory.mktemp("wordpiece") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path))
    return tokenizer, np.random.default_rng(0).normal(size=(len(vocab), 8)).astype(np.float32)


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"text": [" ".join(rng.choice(WORDS, 8))], "label": i % 2} for i in range(n)]


def test_only_whole_words_are_replaced_or_replacements(wordpiece):
    tokenizer, emb = wordpiece
    words = whole_words(tokenizer)
    assert sorted(tokenizer.convert_ids_to_tokens(words.tolist())) == sorted(WORDS)
    near = neighbours(emb, words, words.tolist(), k=3)
    for q, ids in near.items():
        assert len(ids) == 3 and q not in ids and set(ids.tolist()) <= set(words.tolist())
        sims = [float(emb[q] @ emb[i] / np.linalg.norm(emb[q]) / np.linalg.norm(emb[i])) for i in ids]
        assert sims == sorted(sims, reverse=True)


def test_augmentation_is_deterministic_for_a_seed_and_labels_nothing(wordpiece):
    tokenizer, emb = wordpiece
    rows = _rows(20)
    first = augment_rows(rows, tokenizer, emb, AugmentConfig(copies=2, seed=3))
    assert first == augment_rows(rows, tokenizer, emb, AugmentConfig(copies=2, seed=3))
    assert first != augment_rows(rows, tokenizer, emb, AugmentConfig(copies=2, seed=4))
    assert len(first) == 40 and all(r["label"] is None for r in first)
    assert sum(a["text"] != r["text"] for a, r in zip(first, rows + rows)) >= 30  # words did change


def test_augmentation_keeps_special_tokens_punctuation_and_word_pieces(wordpiece):
    tokenizer, emb = wordpiece
    rows = [{"text": ["good films , [MASK] zzz !", "bad plot ."], "label": None}]
    (out,) = augment_rows(rows, tokenizer, emb, AugmentConfig(copies=1, replace_prob=1.0))
    first, second = (tokenizer.tokenize(t) for t in out["text"])
    assert first[1:] == ["film", "##s", ",", "[MASK]", "[UNK]", "!"] and first[0] != "good"  # 'films' is two pieces
    assert second[0] not in ("bad", *SPECIAL) and second[1] != "plot" and second[2] == "."


@pytest.mark.parametrize("p", [0.15, 0.5])
def test_augmentation_replaces_about_replace_prob_of_the_words(wordpiece, p):
    tokenizer, emb = wordpiece
    rows = _rows(200)
    out = augment_rows(rows, tokenizer, emb, AugmentConfig(copies=1, replace_prob=p, seed=1))
    pairs = [(a, b) for r, o in zip(rows, out) for a, b in zip(r["text"][0].split(), tokenizer.tokenize(o["text"][0]))]
    assert len(pairs) == 1600
    share = sum(a != b for a, b in pairs) / len(pairs)  # a replacement is never the word itself
    assert abs(share - p) < 0.05, share  # binomial sd at n=1600 is at most 0.0125


def test_augmentation_refuses_a_tokenizer_without_wordpieces():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bpe = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[])))
    with pytest.raises(EdgesmithError, match="WordPiece.*remove data.augment"):
        whole_words(bpe)


# --- end to end ---------------------------------------------------------------------------------------------------

RECIPE = """
name: tiny-more-data
task: classification
teacher: {{model: '{model}'}}
data: {{source: '{data}', max_length: 32, unlabeled: '{unlabeled}', augment: {{copies: 2, replace_prob: 0.3, seed: 5}}}}
prune:
  branches: [structured]
  structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}
distill: {{max_steps: 3, batch_size: 16, label_weight: 0.5}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5}}
profiles: ['{profile}']
"""


def test_a_tiny_run_distils_on_training_unlabeled_and_augmented_rows(tmp_path, tiny_bert, tiny_data, tiny_profiles):
    unlabeled = tmp_path / "in-domain.txt"
    unlabeled.write_text("\n".join(f"{t} {i}" for i in range(10) for t in UNLABELED) + "\n")
    recipe = tmp_path / "recipe.yaml"
    profile = tiny_profiles / "tiny-ort.yaml"
    recipe.write_text(RECIPE.format(model=tiny_bert, data=tiny_data, unlabeled=unlabeled, profile=profile))
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    data = json.loads((out / "00-data" / "manifest.json").read_text())["facts"]
    manifest = json.loads((out / "03-distill-structured" / "manifest.json").read_text())
    distill = manifest["facts"]
    assert data["unlabeled_rows"] == 30 and manifest["config"]["augment"]["copies"] == 2
    assert distill["train_rows"] == (data["train_rows"] + 30) * 3 and distill["steps"] == 3


def _sentences(folder: Path) -> Path:
    """Phrase fragments of 1-3 words between full sentences of 6 or more, as SST-2's training file mixes them."""
    folder.mkdir()
    rows = [f"film {i}" if i % 2 else f"the plot of film {i} was never dull" for i in range(30)]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(rows)))
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"film {i}\t{i % 2}\n" for i in range(6)))
    return folder


def test_min_words_keeps_the_full_sentences_before_the_cap_and_never_filters_the_held_out_rows(tmp_path):
    folder, text = _sentences(tmp_path / "d"), tmp_path / "u.txt"
    text.write_text("one two\nthe story is long enough here\nshort one\n")
    read = read_task_data(DataConfig(source=str(folder), unlabeled=str(text), min_words=6, max_train_samples=10),
                          "classification")
    assert len(read.train) == 10 and all(len(r["text"][0].split()) >= 6 for r in read.train)  # the cap counts kept rows
    assert [r["text"][0] for r in read.unlabeled] == ["the story is long enough here"]
    assert len(read.evals) == 6  # two-word held-out rows stay: the filter shapes what is learnt, never what is scored
    assert len(read_task_data(DataConfig(source=str(folder)), "classification").train) == 30


def test_min_words_that_no_row_meets_is_refused_in_one_line_naming_the_setting(tmp_path):
    folder = _sentences(tmp_path / "d")
    with pytest.raises(EdgesmithError, match=r"no row has 40 words or more \(the longest has 8\); lower data.min_words"):
        read_task_data(DataConfig(source=str(folder), min_words=40), "classification")


def test_min_words_unset_leaves_the_data_cache_key_as_it_was():
    assert "min_words" not in DataConfig(source="x").model_dump()
    assert DataConfig(source="x", min_words=6).model_dump()["min_words"] == 6
    with pytest.raises(ValueError):
        DataConfig(source="x", min_words=0)
    with pytest.raises(ValueError):  # YAML's `true` must not be read as 1 word (a silent no-op)
        DataConfig(source="x", min_words=True)
