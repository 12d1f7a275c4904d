"""Stage `teacher`: load the user's model safely; fine-tune the head first when it is untrained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import DistillConfig, Frozen, Task, TeacherConfig
from ..errors import require
from ..evaluate import outputs, quality
from ..modeling import check_model_dir, load_pretrained, load_tokenizer, param_count, resolve_model_dir, save_model
from ..registry import stage
from .common import dir_size, read_rows


class TeacherStageConfig(Frozen):
    teacher: TeacherConfig
    task: Task
    max_length: int
    train: DistillConfig  # batch size and seed for fine-tuning an untrained head
    model_digest: str


class TorchModelSession:
    """Run an in-memory model like a runtime session (see edgesmith.runtimes)."""

    def __init__(self, model: Any, task: str) -> None:
        self._names = ["input_ids", "attention_mask", "token_type_ids"]
        self._model, self._task = model, task

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        from edgesmith.exporters.onnx import ForExport

        names = [n for n in self._names if n in feed]
        with torch.inference_mode():
            return ForExport.wrap(self._model, self._task, names)(*(torch.from_numpy(feed[n]) for n in names)).numpy()


@stage("teacher", TeacherStageConfig)
def run(cfg: TeacherStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    src = resolve_model_dir(cfg.teacher.model)
    kind = check_model_dir(src, cfg.teacher.allow_pickle)
    tokenizer = load_tokenizer(src)
    data = inputs["data"]
    names = data.facts["label_names"]
    model, head_trained = load_pretrained(src, cfg.task, kind, num_labels=len(names) or None)
    finetuned: dict[str, Any] = {}
    if cfg.task == "classification" and not head_trained:
        finetuned = _finetune(cfg, model, tokenizer, data.path, out)
    if cfg.task == "classification":
        require(model.config.num_labels == len(names),
                f"the model has {model.config.num_labels} labels but the data has {len(names)} ({names}); fix the label column or the model")
    save_model(model, tokenizer, out / "model", cfg.task)
    evals = read_rows(data.path / "eval.jsonl")
    teacher_out = outputs(TorchModelSession(model, cfg.task), evals, tokenizer, cfg.max_length)
    np.save(out / "eval_outputs.npy", teacher_out)
    metric = quality(teacher_out, evals, cfg.task, teacher_out)
    return {"source": str(src), "weights_format": kind, "params": param_count(model), "head_trained": head_trained,
            "finetune": finetuned, "quality": metric, "bytes": dir_size(out / "model", "*.safetensors"),
            "label_names": [model.config.id2label[i] for i in range(model.config.num_labels)] if cfg.task == "classification" else []}


def _finetune(cfg: TeacherStageConfig, model: Any, tokenizer: Any, data_dir: Path, out: Path) -> dict[str, Any]:
    from ..training import finetune, tokenize, training_args

    rows = read_rows(data_dir / "train.jsonl")
    require(bool(rows) and rows[0]["label"] is not None,
            "the teacher's classification head is untrained and the training data has no labels; add a label column or bring a fine-tuned model")
    rows = rows[: cfg.teacher.finetune_max_samples]
    args = training_args(out, cfg.train, cfg.teacher.finetune_epochs, cfg.teacher.finetune_lr)
    return finetune(model, tokenizer, tokenize(rows, tokenizer, cfg.max_length, labels=True), args)
