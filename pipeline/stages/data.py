"""Stage `data`: read the task data once, normalise it to JSON Lines, and fix the held-out split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import DataConfig, Frozen, Task
from ..data import encode_labels, load_splits, normalize
from ..errors import require
from ..registry import stage
from .common import write_rows


class DataStageConfig(Frozen):
    data: DataConfig
    task: Task
    source_digest: str  # content hash of local files, so edited data reruns everything downstream


@stage("data", DataStageConfig)
def run(cfg: DataStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    d = cfg.data
    raw = load_splits(d.source, d.eval_fraction)
    train, columns = normalize(raw["train"], d.text_columns, d.label_column, f"{d.source} (train)")
    evals, _ = normalize(raw["eval"], columns, d.label_column, f"{d.source} (eval)")
    train, evals = train[: d.max_train_samples], evals[: d.max_eval_samples]
    names: list[str] = []
    if cfg.task == "classification":
        names = encode_labels(evals, None, f"{d.source} (eval)")
        if all(r["label"] not in (None, "") for r in train):
            encode_labels(train, names, f"{d.source} (train)")
        else:
            train = [dict(r, label=None) for r in train]  # distillation needs no labels
    require(len(evals) >= 2, f"{d.source}: fewer than 2 held-out rows; add data or raise data.eval_fraction")
    write_rows(out / "train.jsonl", train)
    write_rows(out / "eval.jsonl", evals)
    return {"train_rows": len(train), "eval_rows": len(evals), "text_columns": list(columns), "label_names": names,
            "train_labelled": bool(train) and train[0]["label"] is not None}
