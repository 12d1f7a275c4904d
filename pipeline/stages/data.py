"""Stage `data`: read the task data once, normalise it to JSON Lines, and fix the held-out split. Labels stay as
the data writes them; the teacher stage decides their class ids (see `teacher.labelled_rows`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import computed_field

from ..config import DataConfig, Frozen, Task
from ..data import read_task_data
from ..registry import stage
from ..runner import source_digest
from .common import write_rows


class DataStageConfig(Frozen):
    data: DataConfig
    task: Task
    source_digest: str  # content hash of local files, so edited data reruns everything downstream

    @computed_field  # part of the cache key, like source_digest: an edited held-out file reruns everything too
    @property
    def eval_digest(self) -> str | None:
        return source_digest(self.data.eval_source) if self.data.eval_source else None


@stage("data", DataStageConfig, version=3)
def run(cfg: DataStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    data = read_task_data(cfg.data, cfg.task)
    write_rows(out / "train.jsonl", data.train)
    write_rows(out / "eval.jsonl", data.evals)
    return {"train_rows": len(data.train), "eval_rows": len(data.evals), "text_columns": list(data.columns),
            "labels": data.labels, "train_labelled": data.train_labelled, "eval_scored": data.eval_scored}
