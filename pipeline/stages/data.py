"""Stage `data`: read the task data once, normalise it to JSON Lines, and fix the held-out split. Labels stay as
the data writes them; the teacher stage decides their class ids (see `teacher.labelled_rows`). In-domain text for
distillation alone (data.unlabeled) goes to its own file, which neither the teacher nor evaluation reads; the
distill stage reads its rows through `distill_rows`."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, ClassVar

from pydantic import computed_field

from ..artifacts import Artifact
from ..config import AugmentConfig, DataConfig, Frozen, Task
from ..data import read_task_data
from ..registry import stage
from ..runner import source_digest
from .common import read_rows, write_rows
from .teacher import labelled_rows

UNLABELED = "unlabeled.jsonl"


class DataStageConfig(Frozen):
    data: DataConfig
    task: Task
    source_digest: str  # content hash of local files, so edited data reruns everything downstream

    @computed_field  # part of the cache key, like source_digest: an edited held-out file reruns everything too
    @property
    def eval_digest(self) -> str | None:
        return source_digest(self.data.eval_source) if self.data.eval_source else None

    @computed_field  # likewise: an edited unlabeled file reruns
    @property
    def unlabeled_digest(self) -> str | None:
        return source_digest(self.data.unlabeled) if self.data.unlabeled else None

    @computed_field  # held-out texts are left out of data.unlabeled (data.without_held_out): only runs that give
    @property        # unlabeled text rerun for it (their data stage, and distillation after it, once), since only
    def unlabeled_rule(self) -> str | None:  # their cached files may hold held-out texts
        return "without held-out texts" if self.data.unlabeled else None

    added_defaults: ClassVar[dict[str, Any]] = {"unlabeled_rule": None}


@stage("data", DataStageConfig, version=5)  # 5: a `datasets` source's class names (declared_labels)
def run(cfg: DataStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    data = read_task_data(cfg.data, cfg.task)
    write_rows(out / "train.jsonl", data.train)
    write_rows(out / "eval.jsonl", data.evals)
    if data.unlabeled:
        write_rows(out / UNLABELED, data.unlabeled)
    declared = {"declared_labels": data.declared_labels} if data.declared_labels is not None else {}  # datasets sources only
    held_out = {"unlabeled_held_out": data.unlabeled_held_out} if cfg.data.unlabeled else {}  # the facts of other runs as before
    return {"train_rows": len(data.train), "eval_rows": len(data.evals), "text_columns": list(data.columns),
            "labels": data.labels, "train_labelled": data.train_labelled, "eval_scored": data.eval_scored,
            "unlabeled_rows": len(data.unlabeled)} | declared | held_out


# The data stage's config fields that only distillation reads (through the data's unlabeled rows): a change confined
# to them leaves every other stage's view of the data (without_unlabeled) as it was, which the dry run predicts.
DISTILL_ONLY_FIELDS = ("data.unlabeled", "unlabeled_digest", "unlabeled_rule")


def without_unlabeled(data: Artifact) -> Artifact:
    """The data as every stage but distill sees it: without the unlabeled rows, which only distillation reads, so that
    editing data.unlabeled reruns neither the teacher nor pruning nor the unpruned baseline (Artifact.without)."""
    return data.without(files=(UNLABELED,), facts=("unlabeled_rows", "unlabeled_held_out"))


def distill_rows(data: Artifact, teacher: Artifact, augment: AugmentConfig | None = None) -> list[dict[str, Any]]:
    """The rows the student distils on: the training rows (labels as the teacher's class ids), the unlabeled rows
    (data.unlabeled) and `copies` augmented copies of both (data.augment, neighbours from the teacher's word
    embeddings, so the distill stage, which has the teacher as an input, makes them). Without either, exactly the
    training rows; with them, all mixed in a fixed order so that each slice of gradual pruning gets its share of each."""
    rows = labelled_rows(data, teacher, "train")
    extra = read_rows(data.path / UNLABELED) if data.facts["unlabeled_rows"] else []
    if augment is not None:
        extra += _augmented(rows + extra, teacher, augment)
    if not extra:
        return rows
    mixed = rows + extra
    random.Random(0).shuffle(mixed)
    return mixed


def _augmented(rows: list[dict[str, Any]], teacher: Artifact, cfg: AugmentConfig) -> list[dict[str, Any]]:
    from ..augment import augment_rows
    from ..modeling import load_model, load_tokenizer

    folder = teacher.path / "model"
    embeddings = load_model(folder).get_input_embeddings().weight.detach().float().numpy()
    return augment_rows(rows, load_tokenizer(folder), embeddings, cfg)
