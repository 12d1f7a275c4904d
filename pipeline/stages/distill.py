"""Stage `distill`: the pruned student learns from the teacher (logit KD or embedding cosine, plus hidden MSE).

Structured branch: the student is trained with the pruned heads and neurons already sliced out. That is exactly
the masked model (a masked head or neuron contributes zero) and trains faster. Sparse branch: the magnitude
masks are held by torch.nn.utils.prune through training, then folded into the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from ..config import DistillConfig, Frozen, Task
from ..modeling import load_model, load_tokenizer, param_count, save_model, slice_model
from ..registry import stage
from .common import read_rows


class DistillStageConfig(Frozen):
    branch: Literal["structured", "sparse"]
    distill: DistillConfig
    task: Task
    max_length: int


@stage("distill", DistillStageConfig)
def run(cfg: DistillStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch

    from ..sparse import hold_masks, release_masks
    from ..training import distill, tokenize, training_args

    torch.manual_seed(cfg.distill.seed)
    teacher_dir = inputs["teacher"].path / "model"
    tokenizer = load_tokenizer(teacher_dir)
    teacher, student = load_model(teacher_dir, attn="sdpa"), load_model(teacher_dir, attn="sdpa")
    prune_dir = inputs["prune"].path
    if cfg.branch == "structured":
        slice_model(student, json.loads((prune_dir / "plan.json").read_text())["layers"])
    else:
        from safetensors.torch import load_file

        hold_masks(student, load_file(str(prune_dir / "masks.safetensors")))
    rows = read_rows(inputs["data"].path / "train.jsonl")
    args = training_args(out, cfg.distill, cfg.distill.epochs, cfg.distill.learning_rate)
    stats = distill(student, teacher, tokenizer, tokenize(rows, tokenizer, cfg.max_length, labels=False), args, cfg.task, cfg.distill)
    if cfg.branch == "sparse":
        release_masks(student)
    save_model(student, tokenizer, out / "model", cfg.task)
    return stats | {"student_params": param_count(student), "teacher_params": param_count(teacher), "train_rows": len(rows)}
