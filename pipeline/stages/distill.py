"""Stage `distill`: the pruned student learns from the teacher (logit KD or embedding cosine, plus hidden MSE).

Structured branch: the student is trained with the pruned heads and neurons already sliced out. That is exactly
the masked model (a masked head or neuron contributes zero) and trains faster. With `prune.structured.steps` > 1
the cut is gradual: slice to the first nested plan, distill on the first slice of the data, slice further, and so
on; the student recovers a little at a time instead of losing two thirds of its width at once. Sparse branch: the magnitude
masks are held by torch.nn.utils.prune through training, then folded into the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from ..config import DistillConfig, Frozen, Task
from ..modeling import load_model, load_tokenizer, param_count, save_model, slice_model
from ..errors import require
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
    rows = read_rows(inputs["data"].path / "train.jsonl")
    items = tokenize(rows, tokenizer, cfg.max_length, labels=_use_labels(cfg))
    if cfg.branch == "structured":
        plan = json.loads((prune_dir / "plan.json").read_text())
        stats = _gradual(cfg, student, teacher, tokenizer, items, plan.get("steps") or [plan["layers"]], out)
    else:
        from safetensors.torch import load_file

        hold_masks(student, load_file(str(prune_dir / "masks.safetensors")))
        args = training_args(out, cfg.distill, cfg.distill.epochs, cfg.distill.learning_rate)
        stats = distill(student, teacher, tokenizer, items, args, cfg.task, cfg.distill)
        release_masks(student)
    save_model(student, tokenizer, out / "model", cfg.task)
    return stats | {"student_params": param_count(student), "teacher_params": param_count(teacher), "train_rows": len(rows)}


def _gradual(cfg: DistillStageConfig, student: Any, teacher: Any, tokenizer: Any, items: list[dict[str, Any]],
             steps: list[Any], out: Path) -> dict[str, Any]:
    """Slice to each nested plan in turn and distill on that step's share of the rows (max_steps split alike)."""
    from ..importance import relative
    from ..training import distill, training_args

    require(len(items) >= len(steps), f"distill: {len(items)} training rows cannot feed {len(steps)} gradual pruning steps; "
            "lower prune.structured.steps or add data")
    dcfg, current, losses, total = cfg.distill, None, [], 0
    if dcfg.max_steps:
        dcfg = dcfg.model_copy(update={"max_steps": max(1, dcfg.max_steps // len(steps))})
    for i, plan in enumerate(steps):
        slice_model(student, plan if current is None else relative(current, plan))
        current = plan
        share = items[i * len(items) // len(steps): (i + 1) * len(items) // len(steps)]
        stats = distill(student, teacher, tokenizer, share, training_args(out, dcfg, dcfg.epochs, dcfg.learning_rate), cfg.task, dcfg)
        losses.append(stats["train_loss"])
        total += stats["steps"]
    return {"train_loss": losses[-1], "steps": total, "step_losses": losses}


def _use_labels(cfg: DistillStageConfig) -> bool:
    return cfg.task == "classification" and cfg.distill.label_weight > 0
