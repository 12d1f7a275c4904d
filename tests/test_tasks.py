"""The task table (edgesmith.tasks): every task's pieces on a tiny model, entity F1 against hand-computed cases,
token-classification rows refused the way a careless user would break them, a whole tiny token-classification
run down to a verified bundle whose predict.py prints entities with character spans, and a grep that no module
outside tasks/ compares task names."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import POSITIVE, WORDS, make_model_dir, ship
from edgesmith.errors import EdgesmithError
from edgesmith.tasks import TASKS, get
from edgesmith.tasks.token_classification import entities, f1

ROOT = Path(__file__).resolve().parents[1]
THINGS = {"movie", "film", "plot", "story"}


def tagged_sentence(rng: random.Random) -> dict:
    """Words with IOB2 tags: a run of positive words is one POS entity, each thing word a THING entity."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 10))]
    tags, prev = [], "O"
    for w in words:
        kind = "POS" if w in POSITIVE else "THING" if w in THINGS else None
        tags.append("O" if kind is None else "I-POS" if kind == prev == "POS" else f"B-{kind}")
        prev = kind or "O"
    return {"tokens": words, "ner_tags": tags}


def write_tagged(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps(tagged_sentence(rng)) + "\n" for _ in range(n)))
    return path


@pytest.fixture(scope="module")
def tagged_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tagged")
    write_tagged(folder / "train.jsonl", 96, seed=1)
    write_tagged(folder / "dev.jsonl", 40, seed=2)
    return folder


# ---- the metric --------------------------------------------------------------------------------------------------

def test_entities_follow_seqevals_default_chunking():
    assert entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    # I- after O starts an entity (IOB1 tolerance); a type change splits; B- always starts a new one
    assert entities(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4), ("ORG", 5, 5)]
    assert entities(["B-PER", "B-PER"]) == [("PER", 0, 0), ("PER", 1, 1)]
    assert entities(["O", "O"]) == []


def test_entity_f1_matches_hand_computed_counts():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    # predicted: PER span cut short (wrong), LOC right, ORG right, one spurious MISC
    predicted = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-MISC"]]
    scores = f1(gold, predicted)
    precision, recall = 2 / 4, 2 / 3
    assert scores["precision"] == pytest.approx(precision * 100)
    assert scores["recall"] == pytest.approx(recall * 100)
    assert scores["f1"] == pytest.approx(2 * precision * recall / (precision + recall) * 100)
    assert f1(gold, gold)["f1"] == pytest.approx(100.0)
    assert f1(gold, [["O"] * 4, ["O"] * 2])["f1"] == 0.0  # all-O finds nothing


# ---- every task's pieces on a tiny model -------------------------------------------------------------------------

ROWS = {
    "classification": [{"text": ["good movie"], "label": 1}, {"text": ["bad dull plot was sad"], "label": 0}],
    "embedding": [{"text": ["good movie"], "label": None}, {"text": ["bad dull plot was sad"], "label": None}],
    "token-classification": [{"text": ["good movie"], "words": ["good", "movie"], "label": [0, 1]},
                             {"text": ["bad dull plot was sad"], "words": "bad dull plot was sad".split(), "label": [2, 2, 1, 2, 2]}],
}


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_trains_scores_and_exports_consistently(name, tmp_path):
    import torch

    from edgesmith.modeling import load_pretrained, load_tokenizer
    from edgesmith.stages.teacher import TorchModelSession

    assert name in ROWS, "a new task needs its fixture rows here"
    task, rows = get(name), ROWS[name]
    folder = make_model_dir(tmp_path / "m", task="embedding")  # a bare encoder: every task loads it
    model, _ = load_pretrained(folder, name, "safetensors", num_labels=3)
    tokenizer = load_tokenizer(folder)
    items = task.tokenize(rows, tokenizer, 16, labels=task.labelled)
    batch = task.collator(tokenizer)(items)
    labels = batch.pop("labels", None)
    out = model(**batch, output_hidden_states=True)
    mask = batch["attention_mask"]
    assert float(task.kd_loss(out, out, mask, labels, 2.0, 0.0).detach()) == pytest.approx(0.0, abs=1e-5)
    loss = task.label_free_loss(model(**batch), mask)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in model.parameters())
    assert task.divergence(out, out, mask) == pytest.approx(0.0, abs=1e-6)
    collected = task.collect(TorchModelSession(model.eval(), name), rows, tokenizer, 16)
    assert task.agrees(task.compare(collected, collected))
    names = ["B-X", "I-X", "O"] if name == "token-classification" else ["0", "1", "2"]
    q = task.quality(collected, rows, collected, names)
    assert 0.0 <= q["metric"] <= 100.0
    assert task.metric_label(False)
    assert task.bundle_functions, "predict.py needs the task's post-processing"


def test_token_collection_is_per_word_at_the_first_sub_token():
    """A word cut into several sub-tokens gets one row of logits, taken at its first sub-token."""

    class Positions:  # logits = the token position, so the collected value says which position was read
        def run(self, feed):
            b, s = feed["input_ids"].shape
            return np.broadcast_to(np.arange(s, dtype=np.float32)[None, :, None], (b, s, 2)).copy()

    class Tokenizer:
        def __call__(self, words, **kw):
            class Enc(dict):
                def word_ids(self, i):
                    return [None, 0, 0, 1, None][: 5]

            return Enc(input_ids=np.zeros((len(words), 5), dtype=np.int64), attention_mask=np.ones((len(words), 5), dtype=np.int64))

    out = get("token-classification").collect(Positions(), [{"text": ["ab c"], "words": ["ab", "c"], "label": [0, 1]}], Tokenizer(), 8)
    assert out.shape == (1, 2, 2) and out[0, :, 0].tolist() == [1.0, 3.0]


# ---- bad token-classification data -------------------------------------------------------------------------------

@pytest.mark.parametrize("row, message", [
    ({"tokens": ["a", "b"], "ner_tags": ["O"]}, "2 words but 1 tags"),
    ({"tokens": ["a", "b"], "ner_tags": ["O", "PER"]}, "not IOB2"),
    ({"tokens": ["a", "b"], "ner_tags": [0, 1]}, "not class numbers"),
    ({"tokens": "a b", "ner_tags": ["O", "O"]}, "not a list of words"),
    ({"words_here": ["a"], "ner_tags": ["O"]}, "no word column"),
])
def test_bad_token_rows_stop_with_one_line_naming_the_row(row, message):
    with pytest.raises(EdgesmithError, match=message) as err:
        get("token-classification").normalize([row], None, "ner_tags", "score", "data.jsonl")
    assert "\n" not in str(err.value)


def test_token_rows_keep_words_and_tags_unchanged():
    rows, columns = get("token-classification").normalize([{"tokens": ["EU", "rejects"], "ner_tags": ["B-ORG", "O"]}],
                                                         None, "label", "score", "x")
    assert columns == ("tokens",) and rows == [{"text": ["EU rejects"], "words": ["EU", "rejects"], "label": ["B-ORG", "O"]}]


# ---- a whole tiny run --------------------------------------------------------------------------------------------

RECIPE = """
name: tiny-ner
task: token-classification
teacher: {{model: {model}}}
data: {{source: {data}, max_length: 32}}
prune:
  branches: [structured]
  structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}
distill: {{max_steps: 4, batch_size: 8, label_weight: 0.5}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5}}
profiles: [{ort}]
"""


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, tagged_data, tiny_profiles):
    from edgesmith.cli import main

    root = tmp_path_factory.mktemp("ner")
    model = make_model_dir(root / "bare", task="embedding")  # a bare encoder: the teacher stage fine-tunes it
    recipe = root / "ner.yaml"
    recipe.write_text(RECIPE.format(model=model, data=tagged_data, ort=tiny_profiles / "tiny-ort.yaml"))
    out = root / "out"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    return out


def test_a_tiny_token_classification_run_bundles_and_verifies(ner_run):
    from edgesmith.verify import verify

    teacher = json.loads((ner_run / "01-teacher" / "manifest.json").read_text())["facts"]
    assert teacher["finetune"] and teacher["label_names"] == ["B-POS", "B-THING", "I-POS", "O"]
    assert teacher["quality"]["metric"] == teacher["quality"]["f1"]
    summary = json.loads((ner_run / "summary.json").read_text())
    assert summary["metric"] == "entity F1 (seqeval, x100)"
    bundle = next((ner_run / "08-bundle-tiny-ort").glob("edgesmith-*/"))
    assert json.loads((bundle / "manifest.json").read_text())["task"] == "token-classification"
    verify(bundle)


def test_the_bundles_predict_prints_entities_with_character_spans(ner_run):
    bundle = next((ner_run / "08-bundle-tiny-ort").glob("edgesmith-*/"))
    texts = ["the good  movie was dull", "a superb happy film and a story", "plot"]
    proc = subprocess.run([sys.executable, "predict.py", *texts], cwd=bundle, capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["text"] for line in lines] == texts and all(isinstance(line["entities"], list) for line in lines)
    found = [(line["text"], e) for line in lines for e in line["entities"]]
    assert found, "the span checks below need an entity: the student tagged none in the three texts"
    for text, e in found:
        assert text[e["start"]:e["end"]] == e["text"] and e["type"] in {"POS", "THING"} and 0 < e["score"] <= 1
    text = texts[0]
    raw = subprocess.run([sys.executable, "predict.py", "--raw", text], cwd=bundle, capture_output=True, text=True, check=True)
    assert np.asarray(json.loads(raw.stdout)["outputs"]).shape[-1] == 4  # per token, one logit per tag


@pytest.mark.parametrize(("branch", "artifact", "per_call"), [("unpruned", "onnxruntime-int8-dynamic", 1),
                                                              ("structured", "onnxruntime-int8-static", 32)])
def test_a_tagger_ships_from_either_branch_and_call_size_and_verifies(ner_run, tmp_path, branch, artifact, per_call):
    """Shipped whatever the run's timing chose: a dynamic INT8 tagger (one text a call, zero-padded outputs) and a
    pruned static INT8 one (32 a call); each verifies, and predict.py gives, per text, the outputs of its tokens."""
    from edgesmith.bundle_io import encode, open_bundle_session, run_as_predict
    from edgesmith.verify import verify

    folder, _ = ship(ner_run, "tiny-ort", branch, artifact, tmp_path)
    assert json.loads((folder / "manifest.json").read_text())["inputs"]["texts_per_call"] == per_call
    verify(folder)
    texts = ["plot", "the good  movie was dull", "a superb happy film and a story"]
    want = run_as_predict(open_bundle_session(folder), folder, texts)
    tokens = encode(folder, texts)["attention_mask"].sum(-1)
    raw = subprocess.run([sys.executable, "predict.py", "--raw", *texts], cwd=folder, capture_output=True, text=True, check=True)
    assert len(raw.stdout.splitlines()) == len(texts)
    for line, expected, n in zip(raw.stdout.splitlines(), want, tokens):
        assert np.array_equal(np.asarray(json.loads(line)["outputs"], dtype=np.float32), expected[:n])
    tagged = subprocess.run([sys.executable, "predict.py", *texts], cwd=folder, capture_output=True, text=True, check=True)
    assert [json.loads(line)["text"] for line in tagged.stdout.splitlines()] == texts
    entities = [(text, e) for text, line in zip(texts, tagged.stdout.splitlines()) for e in json.loads(line)["entities"]]
    assert entities, "the span check needs an entity: the tagger found none in the three texts"
    assert all(text[e["start"]:e["end"]] == e["text"] for text, e in entities)


def test_a_one_text_a_call_taggers_reference_leaves_padding_out(ner_run, tmp_path):
    """A dynamic INT8 tagger runs a text a call, so its outputs past a short text's end are zero padding where
    PyTorch's batch computed logits; the bundle stage once counted those positions and refused good bundles
    (78.4% tag agreement, CI 2026-12-07). Verify leaves padding out; so must the build."""
    import shutil
    from types import SimpleNamespace

    from edgesmith.stages.bundle import _write_reference

    folder = tmp_path / "bundle"
    shutil.copytree(next((ner_run / "08-bundle-tiny-ort").glob("edgesmith-*/")), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["inputs"]["texts_per_call"] = 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    texts = json.loads((folder / "reference.json").read_text())["texts"]
    assert len({len(t.split()) for t in texts}) > 1, "the case needs texts of different lengths"
    student = ner_run / ("01-teacher" if manifest["branch"] == "unpruned" else f"04-shrink-{manifest['branch']}") / "model"
    _write_reference(folder, student, [{"text": [t]} for t in texts], SimpleNamespace(task="token-classification"), False)
    ref = json.loads((folder / "reference.json").read_text())
    expected, pytorch = np.asarray(ref["expected"]), np.asarray(ref["pytorch"])
    assert (expected == 0).all(-1).any(), "one-a-call outputs carry zero padding"
    # and the case is real: counted with its padding, this reference would have been refused
    assert not get("token-classification").fidelity(expected, pytorch)[0]


def test_augmentation_is_refused_for_token_tags_before_any_work(tmp_path, tagged_data, tiny_profiles, capsys):
    from edgesmith.cli import main

    model = make_model_dir(tmp_path / "bare", task="embedding")
    recipe = tmp_path / "r.yaml"
    # a profile the tiny model's 64 positions fit, so the refusal can only be the augmentation's
    recipe.write_text(f"task: token-classification\nteacher: {{model: {model}}}\ndata: {{source: {tagged_data}, augment: {{copies: 1}}}}\n"
                      f"profiles: ['{tiny_profiles / 'tiny-ort.yaml'}']\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    assert "data.augment replaces words" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---- one place per task ------------------------------------------------------------------------------------------

def test_no_module_outside_tasks_compares_task_names():
    """Task knowledge lives in edgesmith/tasks/; everywhere else asks the table (`tasks.get(name)`)."""
    names = "|".join(re.escape(n) for n in TASKS)
    comparison = re.compile(rf"""(==|!=|\bin)\s*[(\[{{]?\s*["']({names})["']|["']({names})["']\s*(==|!=|:)""")
    offenders = []
    for folder in ("pipeline", "exporters", "profiles"):
        for path in (ROOT / folder).rglob("*.py"):
            if "tasks" in path.relative_to(ROOT / folder).parts:
                continue
            for number, text in enumerate(path.read_text().splitlines(), 1):
                if comparison.search(text):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {text.strip()}")
    assert not offenders, "compare task names only inside tasks/:\n" + "\n".join(offenders)


def test_free_texts_punctuation_is_trimmed_off_an_entity(tmp_path):
    """'good:' is one whitespace word, tagged by its first token as in training; the colon does not join the
    entity's text."""
    from tokenizers import Tokenizer

    from edgesmith.modeling import load_tokenizer
    from edgesmith.tasks.token_classification import postprocess

    folder = make_model_dir(tmp_path / "m", task="embedding")
    load_tokenizer(folder).save_pretrained(folder)
    text = "good: movie"
    encoding = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text)
    labels = ["B-POS", "B-THING", "O"]
    row = np.full((len(encoding.ids), 3), -5.0, dtype=np.float32)
    for pos, token in enumerate(encoding.tokens):  # the model says: good is POS, ':' is O, movie is THING
        row[pos, {"good": 0, "movie": 1}.get(token, 2)] = 5.0
    found = postprocess(text, row, encoding, labels)["entities"]
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in found] == [("POS", "good", 0, 4), ("THING", "movie", 6, 11)]


def test_embedding_verify_floor_takes_int8_noise_and_refuses_another_model():
    """verify's fidelity check: the mean over the reference texts, so one short text that INT8 moved far (0.93 in
    ORT dynamic INT8 on all-MiniLM-L6-v2, which failed the old per-text floor of 0.95) passes, while embeddings
    from another model, or NaN ones, do not."""
    from edgesmith.tasks.embedding import unit

    rng = np.random.default_rng(0)
    pytorch = rng.normal(size=(8, 32)).astype(np.float32)
    cosines = np.array([0.93, 0.96, 0.97, 0.97, 0.98, 0.98, 0.99, 0.99])
    noise = rng.normal(size=pytorch.shape)
    noise -= (noise * pytorch).sum(-1, keepdims=True) / (pytorch * pytorch).sum(-1, keepdims=True) * pytorch
    int8_like = cosines[:, None] * unit(pytorch) + np.sqrt(1 - cosines[:, None] ** 2) * unit(noise)
    ok, message = get("embedding").fidelity(int8_like.astype(np.float32), pytorch)
    assert ok and "mean cosine 0.9713" in message and "lowest 0.9300" in message
    other = pytorch + 1.2 * rng.normal(size=pytorch.shape).astype(np.float32)
    ok, message = get("embedding").fidelity(other, pytorch)
    assert not ok and "mean cosine 0.6" in message
    assert not get("embedding").fidelity(np.full_like(pytorch, np.nan), pytorch)[0]


def test_the_bundle_finds_the_entities_that_entity_f1_scored(tmp_path):
    """CoNLL words with inner punctuation ("O'Gorman", "P.", "Chester-le-Street": 8.6% of CoNLL-2003 dev entities
    hold one) are one word each in training and in the entity-F1 score, which read a word's first sub-token only. The
    bundle had grouped tokens by the tokenizer's pre-tokenized words, split at the punctuation, so its entities came
    from positions never trained or scored ("Tim O", "P" and "Simmons" apart). Now it finds the scored entities,
    whatever the model says at the other sub-tokens."""
    from tokenizers import Tokenizer

    from edgesmith.modeling import load_tokenizer
    from edgesmith.tasks.token_classification import _first_subtokens, entities, postprocess

    folder = make_model_dir(tmp_path / "m", task="embedding")
    tokenizer = load_tokenizer(folder)
    tokenizer.save_pretrained(folder)
    words = ["Tim", "O'Gorman", "met", "P.", "Simmons", "in", "Chester-le-Street", "."]
    gold = ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]
    labels = ["B-LOC", "B-MISC", "B-PER", "I-PER", "O"]
    text = " ".join(words)
    encoding = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text)
    assert encoding.ids == tokenizer(words, is_split_into_words=True)["input_ids"]  # the tokens training and scoring saw
    row = np.full((len(encoding.ids), len(labels)), -5.0, dtype=np.float32)
    row[:, labels.index("B-MISC")] = 5.0  # untrained positions say anything: here, every token a new MISC entity
    for pos, w in enumerate(_first_subtokens(tokenizer(words, is_split_into_words=True).word_ids())):
        if w is not None:  # the positions entity F1 reads: each word's first sub-token
            row[pos] = -5.0
            row[pos, labels.index(gold[w])] = 5.0
    found = postprocess(text, row, encoding, labels)["entities"]
    assert [(e["type"], e["text"]) for e in found] == [("PER", "Tim O'Gorman"), ("PER", "P. Simmons"), ("LOC", "Chester-le-Street")]
    assert [e["type"] for e in found] == [kind for kind, _, _ in entities(gold)]


def test_the_tag_column_is_chosen_over_every_row_and_a_named_one_never_falls_back():
    """The tag column had come from the first row alone: a first row without the named `label_column` made the split
    read `ner_tags` instead (training on one column, scoring on another), a first row without tags made every row
    untagged, and a misspelt `label_column` silently read `ner_tags`."""
    task = get("token-classification")
    rows = [{"tokens": ["a", "b"], "ner_tags": ["O", "O"]}] + [
        {"tokens": ["a", "b"], "ner_tags": ["O", "O"], "pos_tags": ["B-NN", "B-VB"]} for _ in range(3)]
    out, _ = task.normalize(rows, None, "pos_tags", "score", "t")
    assert out[0]["label"] is None and [r["label"] for r in out[1:]] == [["B-NN", "B-VB"]] * 3
    with pytest.raises(EdgesmithError, match=r"1 of 4 rows have no tags"):  # the untagged first row is refused
        task.check_labels(out, out[1:], "pos_tags", "t")
    untagged_first = [{"tokens": ["a"]}] + [{"tokens": ["a", "b"], "ner_tags": ["B-PER", "O"]}] * 3
    out, _ = task.normalize(untagged_first, None, "label", "score", "t")
    assert out[0]["label"] is None and out[1]["label"] == ["B-PER", "O"]
    with pytest.raises(EdgesmithError, match=r"no row has the tag column 'ner_tag' \(data.label_column\).*'ner_tags'"):
        task.normalize(rows, None, "ner_tag", "score", "t")


def test_a_tokenizer_that_refuses_pre_split_words_is_refused_for_token_tags(tmp_path):
    """RoBERTa's tokenizer as roberta-base ships it (add_prefix_space false) raises on pre-split words: the teacher
    stage had failed after the data stage. Preflight now names the setting that makes it work."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(tmp_path))
    files = {"vocab_file": str(tmp_path / "vocab.json"), "merges_file": str(tmp_path / "merges.txt")}
    task = get("token-classification")
    refused = task.refuse_tokenizer(RobertaTokenizerFast(**files))
    assert refused and "add_prefix_space" in refused and "\n" not in refused
    assert task.refuse_tokenizer(RobertaTokenizerFast(**files, add_prefix_space=True)) is None
    assert get("classification").refuse_tokenizer(RobertaTokenizerFast(**files)) is None


def test_token_rows_the_bundle_would_split_otherwise_are_refused_and_tags_are_stripped():
    """A word that is empty or holds whitespace is no word or two once predict.py splits the text (such eval rows
    had been dropped with their entities, silently); an empty sentence with tags is a mismatch; "B-PER " is B-PER."""
    task = get("token-classification")
    ok = {"tokens": ["a", "b"], "ner_tags": ["B-PER ", "O"]}
    out, _ = task.normalize([ok, {"tokens": [], "ner_tags": []}], None, "label", "score", "t")
    assert len(out) == 1 and out[0]["label"] == ["B-PER", "O"]
    for words, says in ((["a", "\u00a0"], r"row 2, word 2 \('\\xa0'\) is empty or holds whitespace"),
                        (["New York", "b"], r"row 2, word 1 \('New York'\) is empty or holds whitespace")):
        with pytest.raises(EdgesmithError, match=says):
            task.normalize([ok, {"tokens": words, "ner_tags": ["O", "O"]}], None, "label", "score", "t")
    with pytest.raises(EdgesmithError, match="row 2 has 0 words but 2 tags"):
        task.normalize([ok, {"tokens": [], "ner_tags": ["O", "O"]}], None, "label", "score", "t")


def test_verify_counts_tag_agreement_over_real_tokens_not_padding():
    """Padding counted as agreement: on short reference texts it is a large share of the positions, so a model
    agreeing with PyTorch on 80% of the real tokens passed the 90% bar here."""
    task = get("token-classification")
    pytorch = np.zeros((1, 20, 3), dtype=np.float32)
    pytorch[..., 0] = 1.0
    got = pytorch.copy()
    got[0, :2, 1] = 2.0  # 2 of the 10 real tokens tagged otherwise; the 10 padding positions agree
    mask = np.array([[1] * 10 + [0] * 10])
    assert task.fidelity(got, pytorch)[0]  # 90% over every position: passed
    ok, words = task.fidelity(got, pytorch, mask)
    assert not ok and words.startswith("80.0% tag agreement")
