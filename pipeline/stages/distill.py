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

from ..config import AugmentConfig, DistillConfig, Frozen, Task
from ..modeling import load_model, load_tokenizer, param_count, save_model
from ..registry import stage
from ..tasks import get as get_task
from .data import distill_rows


class DistillStageConfig(Frozen):
    branch: Literal["structured", "sparse"]
    distill: DistillConfig
    task: Task
    max_length: int
    augment: AugmentConfig | None = None  # data.augment: this stage makes the copies, so it is in this key, not the data's

    @classmethod
    def of(cls, branch: str, distill: DistillConfig, task: str, max_length: int, augment: AugmentConfig | None) -> "DistillStageConfig":
        """The branch's distill config. Only structured pruning drops whole layers: elsewhere the layer map is the
        identity and distill.hidden_targets changes nothing, so it is left at its default (setting it must not
        re-distil the sparse branch)."""
        if branch != "structured":
            distill = distill.model_copy(update={"hidden_targets": DistillConfig.model_fields["hidden_targets"].default})
        return cls(branch=branch, distill=distill, task=task, max_length=max_length, augment=augment)


@stage("distill", DistillStageConfig, version=2, distributed=True)
def run(cfg: DistillStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch

    from ..sparse import hold_masks, release_masks
    from ..training import distill, distill_gradual, tokenize, training_args

    torch.manual_seed(cfg.distill.seed)
    teacher_dir = inputs["teacher"].path / "model"
    tokenizer = load_tokenizer(teacher_dir)
    teacher, student = load_model(teacher_dir, attn="sdpa"), load_model(teacher_dir, attn="sdpa")
    prune_dir = inputs["prune"].path
    rows = distill_rows(inputs["data"], inputs["teacher"], cfg.augment)  # training + unlabeled + augmented rows
    items = tokenize(rows, tokenizer, cfg.max_length, labels=_use_labels(cfg), task=cfg.task)
    if cfg.branch == "structured":
        plan = json.loads((prune_dir / "plan.json").read_text())
        stats = distill_gradual(student, teacher, tokenizer, items, plan.get("steps") or [plan["layers"]], out, cfg.task, cfg.distill)
    else:
        from safetensors.torch import load_file

        hold_masks(student, load_file(str(prune_dir / "masks.safetensors")))
        args = training_args(out, cfg.distill, cfg.distill.epochs, cfg.distill.learning_rate)
        stats = distill(student, teacher, tokenizer, items, args, cfg.task, cfg.distill)
        release_masks(student)
    save_model(student, tokenizer, out / "model", cfg.task)
    return stats | {"student_params": param_count(student), "teacher_params": param_count(teacher), "train_rows": len(rows)}


def _use_labels(cfg: DistillStageConfig) -> bool:
    return get_task(cfg.task).labelled and cfg.distill.label_weight > 0
