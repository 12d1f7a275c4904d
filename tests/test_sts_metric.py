"""Sentence encoders scored as their users compare them: Spearman correlation between the cosine of two sentences'
embeddings and gold similarity scores (STS), with each sentence embedded on its own."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from scipy.stats import spearmanr

from conftest import WORDS, make_model_dir, sentence
from edgesmith.cli import main
from edgesmith.config import DataConfig
from edgesmith.data import read_task_data
from edgesmith.errors import EdgesmithError
from edgesmith.evaluate import first_rows, outputs, quality
from edgesmith.verify import verify


def _pairs_with_cosines(cosines: list[float]) -> np.ndarray:
    """Unit embeddings, every sentence 1 then every sentence 2, whose pairs have exactly these cosines."""
    first = np.tile([1.0, 0.0], (len(cosines), 1))
    second = np.array([[c, np.sqrt(1 - c * c)] for c in cosines])
    return np.concatenate([first, second])


def test_spearman_is_the_rank_correlation_of_pair_cosines_and_gold_scores():
    rows = [{"text": ["a", "b"], "label": None, "score": s} for s in (1.0, 2.0, 3.0, 4.0)]
    emb = _pairs_with_cosines([0.1, 0.3, 0.2, 0.9])  # ranks 1 3 2 4 against 1 2 3 4: rho = 1 - 6*2/(4*15) = 0.8
    q = quality(emb, rows, "embedding", emb)
    assert q["metric"] == q["spearman"] == pytest.approx(80.0)
    assert q["cosine"] == pytest.approx(100.0) and q["nn_agreement"] == 100.0  # fidelity to the teacher, beside it

    rng = np.random.default_rng(0)
    cosines = rng.uniform(-1, 1, 50)
    scores = rng.integers(0, 6, 50).astype(float)  # ties, as gold scores have
    rows = [{"text": ["a", "b"], "label": None, "score": s} for s in scores]
    emb = _pairs_with_cosines(list(cosines)) * rng.uniform(0.5, 2, (100, 1))  # unnormalised: cosine, not dot product
    assert quality(emb, rows, "embedding", emb)["spearman"] == pytest.approx(spearmanr(cosines, scores).statistic * 100)


class BagOfWords:
    """A stand-in model: each input's embedding counts its word ids. A tokenizer pair would mix both sentences'
    words into one embedding."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        ids = np.where(feed["attention_mask"] == 1, feed["input_ids"], 0)
        counts = np.stack([np.bincount(row, minlength=self.vocab) for row in ids]).astype(np.float32)
        counts[:, :5] = 0  # [PAD] [UNK] [CLS] [SEP] [MASK]
        return counts


def test_scored_pairs_are_embedded_one_sentence_at_a_time(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_model_dir(tmp_path / "m", task="embedding"))
    rng = random.Random(0)
    rows = [{"text": [sentence(rng)[0], sentence(rng)[0]], "label": None, "score": float(i % 6)} for i in range(20)]
    out = outputs(BagOfWords(tokenizer.vocab_size), rows, tokenizer, 32, "embedding")
    assert out.shape[0] == 2 * len(rows)  # sentence 1 of every row, then sentence 2 of every row

    def bag(text: str) -> np.ndarray:
        return np.array([text.split().count(w) for w in WORDS], dtype=float)

    first, second = np.split(out / np.linalg.norm(out, axis=1, keepdims=True), 2)
    by_hand = [bag(a) @ bag(b) / np.linalg.norm(bag(a)) / np.linalg.norm(bag(b)) for a, b in (r["text"] for r in rows)]
    np.testing.assert_allclose((first * second).sum(1), by_hand, atol=1e-6)


def test_the_first_scored_rows_keep_both_their_sentences_reference():
    rows = [{"text": ["a", "b"], "label": None, "score": 1.0}] * 4
    reference = np.arange(8)[:, None]  # sentence 1 of rows 0-3, then sentence 2 of rows 0-3
    capped, ref = first_rows(rows, reference, 2, "embedding")
    assert len(capped) == 2 and ref.ravel().tolist() == [0, 1, 4, 5]
    plain = [{"text": ["a"], "label": None}] * 4  # one output per row
    assert first_rows(plain, reference[:4], 2, "embedding")[1].ravel().tolist() == [0, 1]


def _write(path, header: str, lines: list[str]):
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_eval_pairs_keep_their_scores_and_a_bad_score_is_refused_in_one_line(tmp_path):
    train = _write(tmp_path / "train.tsv", "sentence\tlabel", ["a good film\t1", "a dull plot\t0"] * 5)
    # the score column first, written as ".5": neither a text column nor a label, though no "number" pattern matches it
    dev = _write(tmp_path / "sts.tsv", "score\tsentence1\tsentence2",
                 [".5\ta film\tthe film", "4\tgood\tgreat", "1.25\tsad\thappy"])
    data = read_task_data(DataConfig(source=str(train), eval_source=str(dev)), "embedding")
    assert data.eval_scored and len(data.train) == 10 and data.columns == ("sentence",)
    assert [(r["text"], r["score"]) for r in data.evals][0] == (["a film", "the film"], 0.5)

    _write(dev, "sentence1\tsentence2\tscore", ["a film\tthe film\t5", "good\tgreat\t4", "sad\thappy\thigh"])
    with pytest.raises(EdgesmithError) as err:
        read_task_data(DataConfig(source=str(train), eval_source=str(dev)), "embedding")
    assert "sts.tsv (eval): data row 3, column 'score': 'high' is not a number" in str(err.value)
    assert "\n" not in str(err.value) and "data.score_column" in str(err.value)

    folder = tmp_path / "plain"  # no score column: today's behaviour, fidelity to the teacher
    folder.mkdir()
    _write(folder / "dev.tsv", "sentence1\tsentence2", ["a film\tthe film", "good\tgreat"])
    data = read_task_data(DataConfig(source=str(train), eval_source=str(folder)), "embedding")
    assert not data.eval_scored and "score" not in data.evals[0]


def test_gold_scores_that_do_not_vary_are_refused_before_any_work(tmp_path):
    """Constant gold scores (a file of one score, or a cap that keeps only equal ones) make Spearman NaN: the run had
    gone through every stage and then failed in the bundle stage with a traceback (NaN is within no budget)."""
    train = _write(tmp_path / "train.tsv", "sentence\tlabel", ["a good film\t1", "a dull plot\t0"] * 5)
    dev = _write(tmp_path / "sts.tsv", "sentence1\tsentence2\tscore",
                 ["a film\tthe film\t3", "good\tgreat\t3", "sad\thappy\t3", "dull\tslow\t1"])
    data = read_task_data(DataConfig(source=str(train), eval_source=str(dev)), "embedding")
    assert data.eval_scored and len(data.evals) == 4
    with pytest.raises(EdgesmithError, match=r"all 3 held-out pairs have the score 3; Spearman needs gold scores that vary"):
        read_task_data(DataConfig(source=str(train), eval_source=str(dev), max_eval_samples=3), "embedding")
    rows = [{"text": ["a", "b"], "label": None, "score": 2.0}] * 3  # bench.eval_samples can cut the same way
    with pytest.raises(EdgesmithError, match="Spearman needs gold scores that vary"):
        quality(_pairs_with_cosines([0.1, 0.5, 0.9]), rows, "embedding", _pairs_with_cosines([0.1, 0.5, 0.9]))
    varied = [dict(r, score=float(i)) for i, r in enumerate(rows)]
    with pytest.raises(EdgesmithError, match="the model gives all 3 scored pairs the same cosine"):
        quality(_pairs_with_cosines([0.5] * 3), varied, "embedding", _pairs_with_cosines([0.1, 0.5, 0.9]))


def test_scores_that_would_be_left_out_silently_are_refused(tmp_path):
    """A named score column the held-out file lacks, or scores beside one text column, had silently turned the
    metric from Spearman into fidelity to the teacher."""
    train = _write(tmp_path / "train.tsv", "sentence\tlabel", ["a good film\t1", "a dull plot\t0"] * 5)
    dev = _write(tmp_path / "sts.tsv", "sentence1\tsentence2\tsimilarity",
                 ["a film\tthe film\t3", "good\tgreat\t4", "sad\thappy\t1"])
    with pytest.raises(EdgesmithError, match=r"no column 'gold' \(data.score_column\).*'similarity'"):
        read_task_data(DataConfig(source=str(train), eval_source=str(dev), score_column="gold"), "embedding")
    assert read_task_data(DataConfig(source=str(train), eval_source=str(dev), score_column="similarity"), "embedding").eval_scored
    with pytest.raises(EdgesmithError, match=r"the pairs have a numeric column 'similarity' but no 'score' column: set "
                       r"data.score_column: similarity"):  # the scores under another name had been left out silently
        read_task_data(DataConfig(source=str(train), eval_source=str(dev)), "embedding")
    single = _write(tmp_path / "one.tsv", "sentence\tscore", ["a film\t3", "good\t4", "sad\t1"])
    with pytest.raises(EdgesmithError, match=r"the 'score' column scores sentence pairs, but the rows have one text column"):
        read_task_data(DataConfig(source=str(train), eval_source=str(single)), "embedding")


def test_a_classifier_never_reads_a_score_column_as_a_score(tmp_path):
    _write(tmp_path / "train.tsv", "premise\thypothesis\tscore\tlabel", ["a film\tthe film\t5\tyes", "sad\thappy\t0\tno"] * 4)
    data = read_task_data(DataConfig(source=str(tmp_path / "train.tsv"), eval_fraction=0.25), "classification")
    assert not data.eval_scored and "score" not in data.evals[0]


RECIPE = """
name: tiny-sts
task: embedding
teacher: {{model: {model}}}
data: {{source: {train}, eval_source: {dev}, max_length: 32}}
prune:
  branches: [structured]
  structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}
distill: {{max_steps: 2, batch_size: 8}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5, eval_samples: 10}}
profiles: [{ort}]
"""


def _sts_file(path, n: int, seed: int):
    """Pairs of random sentences scored by their word overlap (0-5), so the score means something."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = sentence(rng)[0], sentence(rng)[0]
        overlap = len(set(a.split()) & set(b.split())) / len(set(a.split()) | set(b.split()))
        lines.append(f"{a}\t{b}\t{5 * overlap:.2f}")
    return _write(path, "sentence1\tsentence2\tscore", lines)


def test_a_tiny_embedding_run_scores_teacher_and_every_artifact_by_spearman(tmp_path, tiny_profiles):
    model = make_model_dir(tmp_path / "model", task="embedding")
    train = _write(tmp_path / "train.tsv", "sentence", [sentence(random.Random(i))[0] for i in range(48)])
    dev = _sts_file(tmp_path / "dev.tsv", 24, seed=3)
    recipe = tmp_path / "sts.yaml"
    recipe.write_text(RECIPE.format(model=model, train=train, dev=dev, ort=tiny_profiles / "tiny-ort.yaml"))
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out)]) == 0

    def facts(stage: str) -> dict:
        return json.loads((out / stage / "manifest.json").read_text())["facts"]

    teacher = facts("01-teacher")["quality"]
    assert teacher["metric"] == teacher["spearman"] and teacher["cosine"] == pytest.approx(100)
    assert np.load(out / "01-teacher" / "eval_outputs.npy").shape[0] == 2 * 24  # sentence 1s, then sentence 2s
    quantized = [c for m in out.glob("06-quantize-*/manifest.json") for c in json.loads(m.read_text())["facts"]["candidates"]]
    assert {c["precision"] for c in quantized} == {"int8-dynamic", "int8-static"}
    for c in quantized:
        assert c["quality"]["metric"] == c["quality"]["spearman"] and c["drop"] == teacher["spearman"] - c["quality"]["spearman"]
    assert all("spearman" in r["quality"] for r in facts("07-bench-tiny-ort")["rows"])  # FP32 exports: first 10 pairs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "Spearman (cosine vs gold score, x100)"
    assert summary["profiles"]["tiny-ort"]["teacher"]["quality"] == pytest.approx(teacher["spearman"])
    bundle = out / "08-bundle-tiny-ort" / "edgesmith-tiny-ort"
    assert any("reproduces the build" in line for line in verify(bundle))
    assert json.loads((bundle / "reference.json").read_text())["pairs"] is None  # a sentence encoder takes no pairs
