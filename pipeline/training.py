"""Training on the Hugging Face Trainer: teacher fine-tuning and knowledge distillation.

The Trainer gives the progress bar, LR schedule and multi-device support (`accelerate launch` / `torchrun`)
without edgesmith code; distillation only overrides `compute_loss`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .attention_kd import Capture, LayerMap, attention_loss
from .config import DistillConfig
from .errors import require
from .tasks import get as get_task
from .terminal import progress, watching


def tokenize(rows: list[dict[str, Any]], tokenizer: Any, max_length: int, labels: bool, task: str) -> list[dict[str, Any]]:
    """Training items as the task tokenizes them; with `labels`, gold labels (-100 where a row has none)."""
    return get_task(task).tokenize(rows, tokenizer, max_length, labels)


def training_args(out: Path, cfg: DistillConfig, epochs: float, lr: float) -> Any:
    import inspect

    import torch
    from transformers import TrainingArguments

    accepted = inspect.signature(TrainingArguments.__init__).parameters
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio) and group_by_length into
    # train_sampling_strategy; 4.x has the old names. Length grouping matters on CPU: far less padding.
    version_specific = (
        {"warmup_ratio": cfg.warmup_ratio, "group_by_length": True} if "warmup_ratio" in accepted
        else {"warmup_steps": cfg.warmup_ratio, "train_sampling_strategy": "group_by_length"}
    )
    return TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=cfg.batch_size, num_train_epochs=epochs,
        max_steps=cfg.max_steps or -1, learning_rate=lr, weight_decay=0.01,
        lr_scheduler_type="linear", logging_steps=50, save_strategy="no", report_to=[], seed=cfg.seed,
        dataloader_num_workers=0, remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=watching(), **version_specific,  # the run's own bar shows progress
        # Under torchrun/accelerate each batch of batch_size is cut into per-process shares (batch_size / N each):
        # the global batch, the sampler's order and the step count stay those of one process (edgesmith.distributed).
        accelerator_config={"split_batches": True},
    )


def progress_callback() -> Any:
    """A TrainerCallback that reports optimizer steps to the run's terminal view (a bar with an ETA)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                progress(state.global_step, state.max_steps)

    return Progress()


def finetune(model: Any, tokenizer: Any, items: list[dict[str, Any]], args: Any, task: str) -> dict[str, float]:
    """Plain supervised fine-tuning (for a teacher whose classification head is untrained)."""
    from transformers import Trainer

    trainer = Trainer(model=model.train(), args=args, train_dataset=items, data_collator=get_task(task).collator(tokenizer),
                      callbacks=[progress_callback()])
    result = trainer.train()
    shutil.rmtree(args.output_dir, ignore_errors=True)
    model.eval()
    return {"train_loss": float(result.training_loss), "steps": int(result.global_step)}


def distill(student: Any, teacher: Any, tokenizer: Any, items: list[dict[str, Any]], args: Any, task: str, cfg: DistillConfig,
            lmap: LayerMap | None = None) -> dict[str, float]:
    """Train the student against the teacher's outputs, hidden states and (attention_weight > 0) attention, student
    layer j's attention against teacher layer lmap.layers[j]'s and its output against lmap.hidden_layers[j]'s (the
    same layer when None: width pruning or sparse)."""
    trainer = _distill_trainer_class()(
        model=student.train(), args=args, train_dataset=items, data_collator=get_task(task).collator(tokenizer),
        callbacks=[progress_callback()],
    )
    trainer.setup_kd(teacher.eval(), task, cfg, lmap or LayerMap.identity(teacher.config))
    try:
        result = trainer.train()
    finally:
        trainer.teardown_kd()
    shutil.rmtree(args.output_dir, ignore_errors=True)
    student.eval()
    return {"train_loss": float(result.training_loss), "steps": int(result.global_step),
            "teacher_precision": trainer.teacher_precision}


def distill_gradual(student: Any, teacher: Any, tokenizer: Any, items: list[dict[str, Any]], steps: list[Any], out: Path,
                    task: str, cfg: DistillConfig) -> dict[str, Any]:
    """Gradual structured pruning: slice the student to each nested plan in turn (one plan = one-shot) and
    distill on that step's equal share of the rows (max_steps split alike)."""
    from .importance import relative
    from .modeling import slice_model

    require(len(items) >= len(steps), f"distill: {len(items)} training rows cannot feed {len(steps)} gradual pruning steps; "
            "lower prune.structured.steps or add data")
    if cfg.max_steps:
        cfg = cfg.model_copy(update={"max_steps": max(1, cfg.max_steps // len(steps))})
    current, losses, total = None, [], 0
    for i, plan in enumerate(steps):
        slice_model(student, plan if current is None else relative(current, plan))
        current = plan
        share = items[i * len(items) // len(steps): (i + 1) * len(items) // len(steps)]
        args = training_args(out, cfg, cfg.epochs, cfg.learning_rate)
        stats = distill(student, teacher, tokenizer, share, args, task, cfg, LayerMap.from_plan(plan, cfg.hidden_targets))
        losses.append(stats["train_loss"])
        total += stats["steps"]
    return {"train_loss": losses[-1], "steps": total, "step_losses": losses, "teacher_precision": stats["teacher_precision"]}


def kd_loss(s: Any, t: Any, mask: Any, task: str, cfg: DistillConfig, labels: Any = None, layers: tuple[int, ...] | None = None,
            tokens: Any = None) -> Any:
    """The task's loss on the head's output (logit KD at a temperature with optional cross-entropy on gold labels,
    or the cosine of pooled embeddings), plus hidden-state MSE.

    Student layer j's output is matched to teacher layer layers[j]'s (to layer j when None). `tokens`: the real-token
    count the hidden-state MSE averages over (default: this batch's; several processes pass `tokens_per_process`)."""
    main = get_task(task).kd_loss(s, t, mask, labels, cfg.temperature, cfg.label_weight)
    layers = layers if layers is not None else tuple(range(len(s.hidden_states) - 1))
    m = mask.unsqueeze(-1).to(s.hidden_states[0].dtype)
    tokens = m.sum() if tokens is None else tokens
    pairs = [(s.hidden_states[j + 1], t.hidden_states[i + 1]) for j, i in enumerate(layers)]
    hidden = sum(((hs - ht) ** 2 * m).sum() / (tokens * hs.shape[-1]) for hs, ht in pairs)
    return main + cfg.hidden_weight * hidden / len(pairs)


def teacher_context(precision: str, device: Any) -> tuple[Any, str]:
    """The context the teacher's forward pass runs in, and the precision that gives ('bf16' or 'fp32').

    bf16 only where the device computes it natively: elsewhere the matmuls are emulated and slower than fp32."""
    import contextlib

    import torch

    if precision == "bf16" and native_bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16), "bf16"
    return contextlib.nullcontext(), "fp32"


def native_bf16(device: Any) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # torch has no public check; torch.ops.mkldnn's also says yes on plain AVX512, where oneDNN emulates bf16
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def as_fp32(out: Any) -> Any:
    """A model output with every tensor in fp32 (bf16 teacher targets: the losses are computed in fp32)."""
    for key, value in out.items():
        out[key] = tuple(v.float() for v in value) if isinstance(value, tuple) else value.float()
    return out


def tokens_per_process(mask: Any, accelerator: Any) -> Any:
    """The real tokens of the whole batch divided by the number of processes (this batch's count in one process).

    DDP averages the processes' gradients. Each process dividing its per-token sums by this mean count, rather than
    by its own share's, makes that average the gradient of the whole batch's per-token mean: N processes then
    train the student one process trains (tests/test_distributed.py)."""
    return accelerator.reduce(mask.sum().float(), reduction="mean")


def _distill_trainer_class() -> Any:
    import torch
    from transformers import Trainer

    from .arch import dims

    class DistillTrainer(Trainer):
        def setup_kd(self, teacher: Any, task: str, cfg: DistillConfig, lmap: LayerMap) -> None:
            self.kd = (teacher.to(self.args.device), task, cfg, lmap)
            self.teacher_context, self.teacher_precision = teacher_context(cfg.teacher_precision, self.args.device)
            self.captures = (Capture(self.model), Capture(teacher)) if cfg.attention_weight > 0 else None

        def teardown_kd(self) -> None:
            for c in self.captures or ():
                c.remove()

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            teacher, task, cfg, lmap = self.kd
            labels = inputs.pop("labels", None)  # the teacher is the main target; gold labels are optional
            with torch.no_grad(), self.teacher_context:
                t = as_fp32(teacher(**inputs, output_hidden_states=True))
            s = model(**inputs, output_hidden_states=True)
            mask = inputs["attention_mask"]
            tokens = tokens_per_process(mask, self.accelerator)
            loss = kd_loss(s, t, mask, task, cfg, labels, lmap.hidden_layers, tokens)
            if self.captures:
                s_cap, t_cap = self.captures
                loss = loss + cfg.attention_weight * attention_loss(s_cap, t_cap, lmap, mask, dims(teacher.config)["head_size"], tokens)
            return (loss, s) if return_outputs else loss

    return DistillTrainer
