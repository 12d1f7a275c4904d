"""Teacher fine-tuning of an untrained classification head (a bare encoder, or `teacher.reinit_head`).

Defaults follow the data and the model when the recipe leaves them unset: small data gets more epochs (bounded by
a step budget), small BERTs a higher learning rate, and every run a linear warm-up. A validation slice held out of
the training rows (the eval split stays untouched: the report scores on it) picks the best weights, kept in memory.
"""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field

from .config import DistillConfig, Frozen
from .errors import require

MAX_EPOCHS = 10
STEP_BUDGET = 1500  # optimizer steps: 10 epochs of ~5k rows at batch 32, about 2 epochs of 20k (the default cap)
WARMUP_RATIO = 0.1
MIN_EVALUATIONS = 4  # a run of 1-2 epochs is still checked a few times
VALIDATION_SHARE, VALIDATION_CAP = 0.1, 2000


class FinetuneConfig(Frozen):
    """What teacher fine-tuning reads of the recipe's `distill` section: batch size, seed and the step cap (a smoke
    run's distill.max_steps caps it too). Only these enter the teacher's cache key, so distillation settings do not
    rerun it; its own schedule fields are teacher.finetune_epochs, finetune_lr and finetune_max_samples."""
    batch_size: int = Field(32, ge=1)
    seed: int = 0
    max_steps: int | None = Field(None, gt=0)

    @classmethod
    def of(cls, distill: DistillConfig) -> "FinetuneConfig":
        return cls(batch_size=distill.batch_size, seed=distill.seed, max_steps=distill.max_steps)


class Schedule(NamedTuple):
    epochs: float
    lr: float
    warmup_ratio: float
    eval_every: float  # share of the run's steps between evaluations (the Trainer's eval_steps < 1)


def auto_lr(params: int) -> float:
    """Small BERTs (MiniLM, TinyBERT: under 50M parameters) train best at about 1e-4; BERT-base at 3e-5; larger at
    2e-5 (the ranges their papers fine-tune in)."""
    return 1e-4 if params < 50_000_000 else 3e-5 if params < 200_000_000 else 2e-5


def schedule(train_rows: int, batch_size: int, params: int, *, epochs: float | None = None, lr: float | None = None) -> Schedule:
    """The fine-tuning schedule; None picks from the data size (epochs) and the model size (lr)."""
    steps_per_epoch = math.ceil(train_rows / batch_size)
    epochs = epochs or float(min(MAX_EPOCHS, max(1, STEP_BUDGET // steps_per_epoch)))
    return Schedule(epochs, lr or auto_lr(params), WARMUP_RATIO, 1 / max(MIN_EVALUATIONS, math.ceil(epochs)))


MIN_ROWS = 4  # at least one validation row and three to train on


def hold_out(rows: list[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, validation): a shuffled 10% of the training rows (at most 2000) picks the best weights."""
    require(len(rows) >= MIN_ROWS, f"teacher fine-tuning needs at least {MIN_ROWS} labelled training rows, got {len(rows)}; add data")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = min(VALIDATION_CAP, max(1, round(len(rows) * VALIDATION_SHARE)))
    return [rows[i] for i in order[n_val:]], [rows[i] for i in order[:n_val]]


def _logits_and_labels(prediction: Any) -> tuple[Any, Any]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return logits, prediction.label_ids


def _best_weights_class() -> Any:
    from transformers import TrainerCallback

    class BestWeights(TrainerCallback):
        """Keeps the weights of the best validation accuracy in memory (no checkpoint files) and loads them when
        training ends; also evaluates at the last step, which the step schedule can miss."""

        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []
            self.best: dict[str, float] | None = None
            self._weights: dict[str, Any] | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if state.global_step >= state.max_steps:
                control.should_evaluate = True
            return control

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float], model: Any = None,
                        **kw: Any) -> None:
            point = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 2), "accuracy": metrics["eval_accuracy"]}
            self.history.append(point)
            if self.best is None or point["accuracy"] > self.best["accuracy"]:  # ties keep the earlier, less trained
                self.best = point
                self._weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if self._weights is not None:
                model.load_state_dict(self._weights)
                self._weights = None  # free the copy

    return BestWeights


def finetune(model: Any, tokenizer: Any, rows: list[dict[str, Any]], out: Path, train: FinetuneConfig, task: str, *, max_length: int,
             epochs: float | None = None, lr: float | None = None) -> dict[str, Any]:
    """Fine-tune `model` (classification) on labelled `rows` and leave it at its best validation accuracy. Returns
    the facts: the schedule chosen, steps run, each evaluation's validation accuracy (points) and the best one."""
    from transformers import Trainer

    from .modeling import param_count
    from .tasks import get
    from .training import progress_callback, training_args

    train_rows, val_rows = hold_out(rows, train.seed)
    plan = schedule(len(train_rows), train.batch_size, param_count(model), epochs=epochs, lr=lr)
    trainer_cfg = DistillConfig(batch_size=train.batch_size, seed=train.seed, max_steps=train.max_steps, warmup_ratio=plan.warmup_ratio)
    args = training_args(out, trainer_cfg, plan.epochs, plan.lr)
    args.set_evaluate(strategy="steps", steps=plan.eval_every, batch_size=2 * train.batch_size, delay=0)
    best = _best_weights_class()()
    kind = get(task)
    trainer = Trainer(model=model.train(), args=args, data_collator=kind.collator(tokenizer),
                      train_dataset=kind.tokenize(train_rows, tokenizer, max_length, labels=True),
                      eval_dataset=kind.tokenize(val_rows, tokenizer, max_length, labels=True),
                      compute_metrics=lambda prediction: {"accuracy": kind.train_metric(*_logits_and_labels(prediction))},
                      callbacks=[best, progress_callback()])
    try:
        result = trainer.train()
    finally:
        shutil.rmtree(args.output_dir, ignore_errors=True)
    model.eval()
    return {"epochs": plan.epochs, "lr": plan.lr, "warmup_ratio": plan.warmup_ratio,
            "auto": {"epochs": epochs is None, "lr": lr is None}, "train_rows": len(train_rows), "validation_rows": len(val_rows), "steps": int(result.global_step),
            "train_loss": float(result.training_loss), "evaluations": best.history, "best": best.best}
