"""What a task is to the pipeline: one class per task holds everything task-specific (how rows are read, the model
class, the head's output, the losses, how outputs are collected and scored, the bundle's post-processing).

Stages ask `edgesmith.tasks.get(name)` and call these methods; no module outside `tasks/` compares task names.
torch and transformers are imported inside the methods, so reading a recipe stays cheap.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from ..errors import require

EVAL_BATCH = 32  # held-out rows per model call when they are scored, padded to the longest of them


class Task:
    name: ClassVar[str]
    # Rows carry labels and the model has a classification head named after them (the teacher fine-tunes an
    # untrained head; label ids follow a trained head's names).
    labelled: ClassVar[bool] = False
    reads_scores: ClassVar[bool] = False  # held-out rows may carry gold scores (data.score_column) that set the metric
    output_name: ClassVar[str]  # the graph output edgesmith reads (every session fetches it by this name)
    output_axes: ClassVar[dict[int, str]] = {0: "batch"}
    # Outputs the exported graph carries before `output_name`, with their dynamic axes: the same measured graph, for
    # tools that read them by name (sentence-transformers pools Optimum's `last_hidden_state`). See `extras`.
    extra_outputs: ClassVar[dict[str, dict[int, str]]] = {}
    atol: ClassVar[float]  # export validation: max abs difference of outputs to PyTorch
    # Self-contained functions (numpy only, imports inside) written into the bundle as edgesmith_task.py, where
    # predict.py calls `postprocess(text, outputs_row, encoding, labels)`. See `bundle_source`.
    bundle_functions: ClassVar[tuple[Callable[..., Any], ...]] = ()

    # ---- reading rows ------------------------------------------------------------------------------------------
    def normalize(self, rows: list[dict[str, Any]], text_columns: tuple[str, ...] | None, label_column: str,
                  score_column: str, where: str) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """Raw rows -> {"text": [1 or 2 strings], "label": ...} (+ task fields); returns (rows, columns read)."""
        from ..data import normalize

        return normalize(rows, text_columns, label_column, where)

    def check_labels(self, train: list[dict[str, Any]], evals: list[dict[str, Any]], column: str,
                     where: str) -> tuple[list[str], bool]:
        """(the distinct label names, whether the training rows are labelled); ([], False) for label-free tasks."""
        return [], False

    def encode_label(self, label: Any, ids: dict[str, int]) -> Any:
        """A row's label with names replaced by class ids (label-free tasks: None)."""
        return None

    def label_names_of(self, label: Any) -> list[str]:
        """The label names one row holds (a class, a sentence's tags; none for label-free tasks or an unlabelled row)."""
        return []

    def refuse_augment(self) -> str | None:
        """Why `data.augment` cannot apply to this task's rows, or None."""
        return None

    def refuse_tokenizer(self, tokenizer: Any) -> str | None:
        """Why this task cannot use the teacher's tokenizer, or None (checked before any work)."""
        return None

    # ---- the model ---------------------------------------------------------------------------------------------
    def model_class(self) -> Any:
        raise NotImplementedError

    def output(self, out: Any, mask: Any) -> Any:
        """The task's output (`output_name`) from the transformers model output (and the attention mask)."""
        raise NotImplementedError

    def extras(self, out: Any, mask: Any) -> tuple[Any, ...]:
        """The values of `extra_outputs`, in order, from the transformers model output."""
        return ()

    def hf_files(self, config: dict[str, Any], labels: list[str], max_length: int) -> dict[str, Any]:
        """{path in the bundle: JSON object}: what Hugging Face tools read to load the bundle's model as it is
        (Optimum's ORTModel*/OVModel* classes, transformers pipelines, sentence-transformers). `config` is the
        student's config.json, with the bundle's labels for a labelled task. These tools read it for metadata only
        (model type, label names): AutoConfig.from_pretrained loads it, but it cannot say a pruned model's per-layer
        head counts and FFN widths, which the graph holds (the shape plan is edgesmith's own record of them)."""
        if self.labelled:
            config = config | {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
        return {"config.json": config}

    # ---- training ----------------------------------------------------------------------------------------------
    def tokenize(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int, labels: bool) -> list[dict[str, Any]]:
        raise NotImplementedError

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def kd_loss(self, s: Any, t: Any, mask: Any, labels: Any, temperature: float, label_weight: float) -> Any:
        """The distillation loss on the head's output (hidden-state and attention terms are added by training.py)."""
        raise NotImplementedError

    def label_free_loss(self, out: Any, mask: Any) -> Any:
        """A loss whose gradient ranks heads and neurons (Fisher importance) without labels."""
        raise NotImplementedError

    def divergence(self, out: Any, reference: Any, mask: Any) -> float:
        """How far `out` moved from `reference` (both transformers outputs of the same batch): depth pruning."""
        raise NotImplementedError

    def train_metric(self, logits: np.ndarray, label_ids: np.ndarray) -> float:
        """The validation score (points) that picks the teacher's best fine-tuning weights."""
        raise NotImplementedError

    # ---- evaluation --------------------------------------------------------------------------------------------
    def collect(self, session: Any, rows: list[dict[str, Any]], tokenizer: Any, max_length: int,
                batch_size: int = EVAL_BATCH) -> np.ndarray:
        """Every row's output through `session` (`session.run(feed) -> array`), `batch_size` rows a call, in the
        layout `quality` reads."""
        return np.concatenate([session.run(feed) for feed in batches(rows, tokenizer, max_length, batch_size)])

    def first_rows(self, rows: list[dict[str, Any]], reference: np.ndarray, n: int | None) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The first n rows and the reference outputs for them (in `collect`'s layout)."""
        return (rows, reference) if n is None or n >= len(rows) else (rows[:n], reference[:n])

    def metric_label(self, scored: bool) -> str:
        raise NotImplementedError

    def quality(self, out: np.ndarray, rows: list[dict[str, Any]], reference: np.ndarray | None,
                names: list[str] = ()) -> dict[str, float]:
        """Metrics in points (0-100); `metric` is the headline."""
        raise NotImplementedError

    def compare(self, candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        """Agreement of an exported model with PyTorch on the same rows; `agrees` judges it."""
        return {"max_abs_diff": float(np.nanmax(np.abs(candidate - reference)))}

    def agrees(self, check: dict[str, float]) -> bool:
        return check["max_abs_diff"] <= self.atol

    def floor(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """What a model that learned nothing scores (the report sets the teacher against it); {} when not defined."""
        return {}

    def fidelity(self, got: np.ndarray, pytorch: np.ndarray, mask: np.ndarray | None = None) -> tuple[bool, str]:
        """`edgesmith verify`: whether a bundle's outputs on its reference texts still match PyTorch's (`mask`: the
        texts' attention mask, for per-token outputs)."""
        raise NotImplementedError


def batches(rows: list[dict[str, Any]], tokenizer: Any, max_length: int, batch_size: int = EVAL_BATCH) -> Iterator[dict[str, np.ndarray]]:
    """Tokenized batches of whole texts, padded to their longest row (real lengths, not the profile's fixed length)."""
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        pair = len(chunk[0]["text"]) == 2
        first = [r["text"][0] for r in chunk]
        second = [r["text"][1] for r in chunk] if pair else None
        enc = tokenizer(first, second, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        yield {k: v.astype(np.int64) for k, v in enc.items()}


def tokenize_texts(rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
    """One item per row (one text or a pair), unpadded: the collator pads each batch."""
    pair = len(rows[0]["text"]) == 2
    enc = tokenizer([r["text"][0] for r in rows], [r["text"][1] for r in rows] if pair else None,
                    truncation=True, max_length=max_length)
    return [{k: enc[k][i] for k in enc.keys()} for i in range(len(rows))]


def require_some_labels(rows: list[dict[str, Any]]) -> None:
    require(any(r["label"] is not None for r in rows), "training on gold labels needs labelled training rows; "
            "label the data or set distill.label_weight: 0")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
