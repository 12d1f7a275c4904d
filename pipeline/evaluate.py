"""Quality on held-out rows, the same for every artifact, through the task's own collection and metrics
(edgesmith.tasks): accuracy for classifiers, entity F1 for token classifiers, fidelity to the teacher and Spearman
on STS pairs for sentence encoders; all in points (0-100)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .tasks import get
from .tasks.base import EVAL_BATCH, batches
from .tasks.embedding import nn_agreement, scored, spearman

__all__ = ["batches", "compare", "first_rows", "nn_agreement", "outputs", "quality", "scored", "spearman"]


def outputs(session: Any, rows: list[dict[str, Any]], tokenizer: Any, max_length: int, task: str,
            batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Every row's output through `session`, `batch_size` rows a call (Runtime.texts_per_call), in the layout the
    task's `quality` reads."""
    return get(task).collect(session, rows, tokenizer, max_length, batch_size)


def first_rows(rows: list[dict[str, Any]], reference: np.ndarray, n: int | None, task: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The first n rows and the teacher's outputs for them (laid out as `outputs` lays them out)."""
    return get(task).first_rows(rows, reference, n)


def quality(out: np.ndarray, rows: list[dict[str, Any]], task: str, reference: np.ndarray | None,
            names: list[str] = ()) -> dict[str, float]:
    """Task metrics in points; `reference` is the teacher's outputs for the same rows, `names` the label names in
    class-id order (the teacher's `label_names`)."""
    return get(task).quality(out, rows, reference, names)


def compare(candidate: np.ndarray, reference: np.ndarray, task: str) -> dict[str, float]:
    """Agreement of an exported model with its PyTorch source on the same inputs (validation); `agrees` judges it."""
    return get(task).compare(candidate, reference)


def agrees(check: dict[str, float], task: str) -> bool:
    return get(task).agrees(check)
