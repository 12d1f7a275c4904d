"""Sentence embeddings (sentence-transformers style: mean pooling, L2-normalised). Quality is fidelity to the
teacher (mean cosine, nearest-neighbour agreement) and, on sentence pairs with gold scores (STS), the Spearman
correlation of cosine similarity that sentence-transformers users compare encoders by."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import EVAL_BATCH, Task, batches, tokenize_texts, unit


def postprocess(text: str, row: Any, encoding: Any, labels: list[str]) -> dict[str, Any]:
    """The bundle's answer for one text: its embedding (already pooled and normalised by the graph)."""
    return {"text": text, "embedding": row.round(6).tolist()}


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of token vectors under the attention mask, L2-normalised (sentence-transformers' pooling)."""
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=-1)


class Embedding(Task):
    name = "embedding"
    reads_scores = True
    output_name = "sentence_embedding"
    # The token states before pooling, first, under the name Optimum's feature-extraction classes read (and not
    # `token_embeddings`: optimum-intel refuses a graph with both that and `sentence_embedding`): sentence-transformers
    # loads the bundle through them and pools these itself, as hf_files' Pooling and Normalize modules say.
    extra_outputs = {"last_hidden_state": {0: "batch", 1: "sequence"}}
    atol = 1e-4
    bundle_functions = (postprocess,)

    def normalize(self, rows: list[dict[str, Any]], text_columns: tuple[str, ...] | None, label_column: str,
                  score_column: str, where: str) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """Gold similarity scores (`score_column`) are kept on sentence pairs: they make the held-out set STS."""
        from ..data import normalize

        return normalize(rows, text_columns, label_column, where, score_column)

    def model_class(self) -> Any:
        from transformers import AutoModel

        return AutoModel

    def output(self, out: Any, mask: Any) -> Any:
        return mean_pool(out.last_hidden_state, mask)

    def extras(self, out: Any, mask: Any) -> tuple[Any, ...]:
        return (out.last_hidden_state,)

    def hf_files(self, config: dict[str, Any], labels: list[str], max_length: int) -> dict[str, Any]:
        """config.json and a sentence-transformers model description (the layout its own models on the Hub use, which
        sentence-transformers 2 to 5 all read): the bundle's model as the Transformer module, then mean pooling under
        the attention mask and L2 normalisation (`mean_pool`), truncated at the bundle's max length."""
        from ..arch import ARCHITECTURES

        hidden = config[ARCHITECTURES[config["model_type"]].cfg_hidden]
        modules = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
        return super().hf_files(config, labels, max_length) | {
            "modules.json": [{"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
                             for i, (path, kind) in enumerate(modules)],
            "sentence_bert_config.json": {"max_seq_length": max_length, "do_lower_case": False},
            "1_Pooling/config.json": {"word_embedding_dimension": hidden, "pooling_mode_cls_token": False,
                                      "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                                      "pooling_mode_mean_sqrt_len_tokens": False},
        }

    def tokenize(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int, labels: bool) -> list[dict[str, Any]]:
        return tokenize_texts(rows, tokenizer, max_length)

    def kd_loss(self, s: Any, t: Any, mask: Any, labels: Any, temperature: float, label_weight: float) -> Any:
        """1 - cosine of the pooled embeddings."""
        return (1 - (mean_pool(s.last_hidden_state, mask) * mean_pool(t.last_hidden_state, mask)).sum(-1)).mean()

    def label_free_loss(self, out: Any, mask: Any) -> Any:
        """In-batch contrastive loss between the embeddings and their detached copies."""
        import torch
        import torch.nn.functional as F

        emb = mean_pool(out.last_hidden_state, mask)
        return F.cross_entropy(emb @ emb.detach().T / 0.05, torch.arange(len(emb)))

    def divergence(self, out: Any, reference: Any, mask: Any) -> float:
        import torch.nn.functional as F

        a, b = mean_pool(out.last_hidden_state, mask), mean_pool(reference.last_hidden_state, mask)
        return (1 - F.cosine_similarity(a, b, dim=-1)).mean().item()

    def collect(self, session: Any, rows: list[dict[str, Any]], tokenizer: Any, max_length: int,
                batch_size: int = EVAL_BATCH) -> np.ndarray:
        """[rows, dim]. Scored pairs are embedded one sentence at a time, as sentence-transformers does, never as a
        tokenizer pair: every row's sentence 1, then every row's sentence 2 ([2 x rows, dim])."""
        if scored(rows):
            rows = [{"text": [r["text"][i]]} for i in (0, 1) for r in rows]
        return np.concatenate([session.run(feed) for feed in batches(rows, tokenizer, max_length, batch_size)])

    def first_rows(self, rows: list[dict[str, Any]], reference: np.ndarray, n: int | None) -> tuple[list[dict[str, Any]], np.ndarray]:
        if n is not None and n < len(rows) and scored(rows):
            return rows[:n], np.concatenate([reference[:n], reference[len(rows) : len(rows) + n]])
        return super().first_rows(rows, reference, n)

    def metric_label(self, scored: bool) -> str:
        return "Spearman (cosine vs gold score, x100)" if scored else "fidelity (mean cosine x100)"

    def quality(self, out: np.ndarray, rows: list[dict[str, Any]], reference: np.ndarray | None,
                names: list[str] = ()) -> dict[str, float]:
        """`reference` is the teacher's embeddings for the same rows. On scored pairs the headline is `spearman`;
        fidelity to the teacher is reported beside it."""
        assert reference is not None, "embedding quality needs the teacher's embeddings"
        a, b = unit(out), unit(reference)
        cosine = float((a * b).sum(-1).mean() * 100)
        metrics = {"metric": cosine, "cosine": cosine, "nn_agreement": nn_agreement(a, b)}
        if scored(rows):
            rho = spearman(a, [r["score"] for r in rows])
            metrics |= {"metric": rho, "spearman": rho}
        return metrics

    def compare(self, candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        return super().compare(candidate, reference) | {"min_cosine": float((unit(candidate) * unit(reference)).sum(-1).min())}

    def fidelity(self, got: np.ndarray, pytorch: np.ndarray, mask: np.ndarray | None = None) -> tuple[bool, str]:
        cos = (unit(got) * unit(pytorch)).sum(-1)
        return float(cos.mean()) >= MIN_MEAN_COSINE, f"mean cosine {cos.mean():.4f} to PyTorch (lowest {cos.min():.4f})"


# verify: the mean over the reference texts, as the accuracy gate averages over the eval set. A per-text floor
# refused bundles the run had rightly shipped: INT8 moves single short texts far (all-MiniLM-L6-v2 quantized alone,
# measured: 0.93 in ONNX Runtime dynamic INT8, 0.66 on one SST-2 sentence in OpenVINO INT8, at means 0.96). A wrong
# model is far below: the quickstart student after 3 distillation steps averages 0.84 to its teacher, so a bundle
# holding the one where the other belongs is refused.
MIN_MEAN_COSINE = 0.90


def scored(rows: list[dict[str, Any]]) -> bool:
    """Sentence pairs with gold similarity scores (only the embedding task's data keeps scores)."""
    return "score" in rows[0]


def spearman(embeddings: np.ndarray, scores: list[float]) -> float:
    """Spearman correlation (x100) between the cosine of each pair's two embeddings (every sentence 1, then every
    sentence 2, as `collect` stacks them) and the pairs' gold scores."""
    from scipy.stats import spearmanr

    from ..errors import require

    first_sentences, second_sentences = np.split(unit(embeddings), 2)
    cosines = (first_sentences * second_sentences).sum(-1)
    # Undefined (NaN) when either side is constant; a NaN metric had passed every stage and then left the bundle
    # stage with nothing to choose (NaN is within no budget), a traceback after all the work.
    require(len(set(scores)) > 1, f"Spearman needs gold scores that vary: all {len(scores)} scored pairs have the score "
            f"{scores[0]:g}; check data.score_column, or raise data.max_eval_samples or bench.eval_samples")
    require(bool(np.ptp(cosines) > 0), f"Spearman is undefined: the model gives all {len(scores)} scored pairs the same "
            "cosine; check the teacher model")
    return float(spearmanr(cosines, scores).statistic * 100)


def nn_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose nearest other row (by cosine) is the same under both models, in points."""
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    return float((sa.argmax(1) == sb.argmax(1)).mean() * 100)
