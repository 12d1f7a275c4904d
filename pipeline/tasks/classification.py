"""Sequence classification (one label per text or text pair): SST-2, MNLI, ... Accuracy on the held-out rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Task, require_some_labels, tokenize_texts


def postprocess(text: str, row: Any, encoding: Any, labels: list[str]) -> dict[str, Any]:
    """The bundle's answer for one text: its label and the class probabilities (softmax of the logits)."""
    import numpy as np

    probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
    return {"text": text, "label": labels[int(row.argmax())], "probabilities": dict(zip(labels, probs.round(4).tolist()))}


class Classification(Task):
    name = "classification"
    labelled = True
    output_name = "logits"
    atol = 1e-3
    bundle_functions = (postprocess,)

    def check_labels(self, train: list[dict[str, Any]], evals: list[dict[str, Any]], column: str,
                     where: str) -> tuple[list[str], bool]:
        from ..labels import check_labels

        return check_labels(train, evals, column, where)

    def encode_label(self, label: Any, ids: dict[str, int]) -> Any:
        return None if label is None else ids[label]

    def label_names_of(self, label: Any) -> list[str]:
        return [] if label is None else [label]

    def model_class(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def output(self, out: Any, mask: Any) -> Any:
        return out.logits

    def tokenize(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int, labels: bool) -> list[dict[str, Any]]:
        items = tokenize_texts(rows, tokenizer, max_length)
        if labels:
            require_some_labels(rows)
            for item, r in zip(items, rows):  # unlabeled and augmented rows: -100, cross_entropy's ignore_index
                item["labels"] = -100 if r["label"] is None else r["label"]
        return items

    def kd_loss(self, s: Any, t: Any, mask: Any, labels: Any, temperature: float, label_weight: float) -> Any:
        """KL of temperature-softened class distributions (x T^2), plus cross-entropy on gold labels: the teacher is
        not always right. A batch of unlabelled rows has no cross-entropy term."""
        import torch.nn.functional as F

        T = temperature
        loss = F.kl_div(F.log_softmax(s.logits / T, -1), F.softmax(t.logits / T, -1), reduction="batchmean") * T * T
        if labels is not None and label_weight > 0 and bool((labels != -100).any()):
            loss = loss + label_weight * F.cross_entropy(s.logits, labels)
        return loss

    def label_free_loss(self, out: Any, mask: Any) -> Any:
        """Cross-entropy against the model's own predicted class (a KL to itself would have zero gradient)."""
        import torch.nn.functional as F

        return F.cross_entropy(out.logits, out.logits.detach().argmax(-1))

    def divergence(self, out: Any, reference: Any, mask: Any) -> float:
        import torch.nn.functional as F

        return F.kl_div(out.logits.log_softmax(-1), reference.logits.log_softmax(-1), log_target=True,
                        reduction="batchmean").item()

    def train_metric(self, logits: np.ndarray, label_ids: np.ndarray) -> float:
        return float((logits.argmax(-1) == label_ids).mean() * 100)

    def metric_label(self, scored: bool) -> str:
        return "accuracy"

    def quality(self, out: np.ndarray, rows: list[dict[str, Any]], reference: np.ndarray | None,
                names: list[str] = ()) -> dict[str, float]:
        labels = np.array([r["label"] for r in rows])
        if labels.dtype.kind not in "iu":  # label strings never equal a predicted id: 0 %, silently
            raise TypeError("accuracy needs class ids; read labelled rows through stages.teacher.labelled_rows")
        acc = float((out.argmax(-1) == labels).mean() * 100)
        return {"metric": acc, "accuracy": acc}

    def compare(self, candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        return super().compare(candidate, reference) | {
            "argmax_agreement": float((candidate.argmax(-1) == reference.argmax(-1)).mean())}

    def agrees(self, check: dict[str, float]) -> bool:
        return super().agrees(check) and check["argmax_agreement"] == 1.0

    def floor(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The share of the most common label (points): the accuracy of always answering it."""
        labels = [r["label"] for r in rows if r["label"] is not None]
        return {"majority_rate": max(labels.count(x) for x in set(labels)) / len(labels) * 100 if labels else None}

    def fidelity(self, got: np.ndarray, pytorch: np.ndarray, mask: np.ndarray | None = None) -> tuple[bool, str]:
        agree = float((got.argmax(-1) == pytorch.argmax(-1)).mean())
        return agree >= MIN_AGREEMENT, f"{agree:.0%} class agreement with PyTorch"


MIN_AGREEMENT = 0.75  # verify: INT8 may flip a near-tie among the 8 reference rows, not more
