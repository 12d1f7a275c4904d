"""Quality on held-out rows, the same for every artifact: accuracy for classifiers; for sentence encoders,
fidelity to the teacher (mean cosine of embeddings and nearest-neighbour agreement) and, on sentence pairs with
gold similarity scores (STS), the Spearman correlation sentence-transformers users compare encoders by; all in
points (0-100)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np


def batches(rows: list[dict[str, Any]], tokenizer: Any, max_length: int, batch_size: int = 32) -> Iterator[dict[str, np.ndarray]]:
    """Tokenized batches padded to their longest row (real lengths, not the profile's fixed length)."""
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        pair = len(chunk[0]["text"]) == 2
        first = [r["text"][0] for r in chunk]
        second = [r["text"][1] for r in chunk] if pair else None
        enc = tokenizer(first, second, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        yield {k: v.astype(np.int64) for k, v in enc.items()}


def scored(rows: list[dict[str, Any]]) -> bool:
    """Sentence pairs with gold similarity scores (only the embedding task's data keeps scores)."""
    return "score" in rows[0]


def outputs(session: Any, rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> np.ndarray:
    """Stacked model outputs ([rows, classes] logits or [rows, dim] embeddings). Scored pairs are embedded one
    sentence at a time, as sentence-transformers does, never as a tokenizer pair: every row's sentence 1, then
    every row's sentence 2 ([2 x rows, dim])."""
    if scored(rows):
        rows = [{"text": [r["text"][i]]} for i in (0, 1) for r in rows]
    return np.concatenate([session.run(feed) for feed in batches(rows, tokenizer, max_length)])


def first_rows(rows: list[dict[str, Any]], reference: np.ndarray, n: int | None) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The first n rows and the teacher's outputs for them (laid out as `outputs` lays them out)."""
    if n is None or n >= len(rows):
        return rows, reference
    if scored(rows):
        return rows[:n], np.concatenate([reference[:n], reference[len(rows) : len(rows) + n]])
    return rows[:n], reference[:n]


def quality(out: np.ndarray, rows: list[dict[str, Any]], task: str, reference: np.ndarray | None) -> dict[str, float]:
    """Task metrics in points. `reference` is the teacher's embeddings for the same rows (embedding task). On scored
    pairs the headline `metric` is `spearman`; fidelity to the teacher is reported beside it."""
    if task == "classification":
        labels = np.array([r["label"] for r in rows])
        if labels.dtype.kind not in "iu":  # label strings never equal a predicted id: 0 %, silently
            raise TypeError("accuracy needs class ids; read labelled rows through stages.teacher.labelled_rows")
        acc = float((out.argmax(-1) == labels).mean() * 100)
        return {"metric": acc, "accuracy": acc}
    assert reference is not None, "embedding quality needs the teacher's embeddings"
    a, b = _unit(out), _unit(reference)
    cosine = float((a * b).sum(-1).mean() * 100)
    metrics = {"metric": cosine, "cosine": cosine, "nn_agreement": nn_agreement(a, b)}
    if scored(rows):
        rho = spearman(a, [r["score"] for r in rows])
        metrics |= {"metric": rho, "spearman": rho}
    return metrics


def spearman(embeddings: np.ndarray, scores: list[float]) -> float:
    """Spearman correlation (x100) between the cosine of each pair's two embeddings (every sentence 1, then every
    sentence 2, as `outputs` stacks them) and the pairs' gold scores."""
    from scipy.stats import spearmanr

    first_sentences, second_sentences = np.split(_unit(embeddings), 2)
    return float(spearmanr((first_sentences * second_sentences).sum(-1), scores).statistic * 100)


def nn_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose nearest other row (by cosine) is the same under both models, in points."""
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    return float((sa.argmax(1) == sb.argmax(1)).mean() * 100)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def compare(candidate: np.ndarray, reference: np.ndarray, task: str) -> dict[str, float]:
    """Agreement of an exported model with its PyTorch source on the same inputs (validation)."""
    out = {"max_abs_diff": float(np.abs(candidate - reference).max())}
    if task == "classification":
        out["argmax_agreement"] = float((candidate.argmax(-1) == reference.argmax(-1)).mean())
    else:
        out["min_cosine"] = float((_unit(candidate) * _unit(reference)).sum(-1).min())
    return out
