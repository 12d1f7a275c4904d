"""Stage `teacher`: load the user's model safely; fine-tune the head first when it is untrained. It decides the
class id of every data label (a trained head's label names decide; a new head is named after the data's labels),
and every later stage reads labelled rows through `labelled_rows`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import Frozen, Recipe, Task, TeacherConfig
from ..data import read_task_data
from ..labels import label_ids
from ..errors import require
from ..evaluate import outputs, quality
from ..finetune import MIN_ROWS, FinetuneConfig
from ..modeling import (check_model_dir, head_labels, inspect_checkpoint, load_pretrained,
                        load_tokenizer, param_count, resolve_model_dir, save_model)
from ..registry import stage
from ..tasks import get as get_task
from .common import dir_size, read_rows

NO_TRAIN_LABELS = ("the teacher's classification head is untrained (or teacher.reinit_head is set) and the training data "
                   "has no labels; add a label column or bring a fine-tuned model")


class TeacherStageConfig(Frozen):
    teacher: TeacherConfig
    task: Task
    max_length: int
    # Batch size, seed and step cap for fine-tuning an untrained head (not distillation's other fields); None when the
    # stage fine-tunes nothing (a trained head, a sentence encoder), so that a new distill.seed does not rerun it.
    train: FinetuneConfig | None
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


def trains(recipe: Recipe) -> bool:
    """Whether the teacher stage will fine-tune: a labelled task whose head is untrained or re-initialised (read from
    the checkpoint's tensor names and shapes, as `load_pretrained` decides it, without loading weights)."""
    if not get_task(recipe.task).labelled:
        return False
    if recipe.teacher.reinit_head:
        return True
    src = resolve_model_dir(recipe.teacher.model)
    return not inspect_checkpoint(src, recipe.task, check_model_dir(src, recipe.teacher.allow_pickle))[1]


def check_inputs(recipe: Recipe) -> Any:
    """What the data and teacher stages would refuse, found before any work: the model folder, config and checkpoint
    (tensor names and shapes, from the safetensors headers), the data files, and the data's labels against the
    model's head. Returns the model's config."""
    src = resolve_model_dir(recipe.teacher.model)
    kind = check_model_dir(src, recipe.teacher.allow_pickle)
    tokenizer = load_tokenizer(src)  # refuses a tokenizer set to cut or pad on the left, before any work
    require(recipe.data.augment is None or get_task(recipe.task).refuse_augment() is None,
            str(get_task(recipe.task).refuse_augment()))
    refused = get_task(recipe.task).refuse_tokenizer(tokenizer)
    require(refused is None, str(refused))
    if recipe.data.augment is not None:  # word replacement needs a WordPiece vocabulary: refuse another one now
        from ..augment import whole_words

        whole_words(tokenizer)
    config, head_trained = inspect_checkpoint(src, recipe.task, kind)
    if recipe.data.source == "pydoc" and recipe.data.eval_source is None:  # built in: nothing to get wrong, seconds to read
        return config
    data = read_task_data(recipe.data, recipe.task)
    if get_task(recipe.task).labelled:
        new_head = recipe.teacher.reinit_head or not head_trained
        label_ids(data.labels, None if new_head else head_labels(config), data.declared_labels)
        require(data.train_labelled or not new_head, NO_TRAIN_LABELS)
        rows = len(data.train[: recipe.teacher.finetune_max_samples])  # what the teacher stage fine-tunes on
        require(not new_head or rows >= MIN_ROWS, f"the teacher's new head is fine-tuned on the training rows, and "
                f"{rows} remain after data.max_train_samples, data.min_words and teacher.finetune_max_samples; it needs "
                f"at least {MIN_ROWS}: raise those caps or add data")
        require(data.train_labelled or recipe.distill.label_weight == 0,
                "distill.label_weight > 0 needs labelled training data; label it or set distill.label_weight: 0")
    return config


def labelled_rows(data: Any, teacher: Any, split: str) -> list[dict[str, Any]]:
    """The data artifact's rows of `split` ('train' or 'eval') with each label replaced by its class id, as the
    teacher artifact decided it (None where the row has no label, and for label-free tasks)."""
    return _with_ids(read_rows(data.path / f"{split}.jsonl"), teacher.facts["label_ids"], teacher.facts["task"])


def _with_ids(rows: list[dict[str, Any]], ids: dict[str, int], task: str) -> list[dict[str, Any]]:
    encode = get_task(task).encode_label
    return [dict(r, label=encode(r["label"], ids)) for r in rows]


@stage("teacher", TeacherStageConfig, version=5, distributed=True)  # trains when the head is untrained
def run(cfg: TeacherStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch

    torch.manual_seed(cfg.train.seed if cfg.train else 0)  # a new head's initial weights: the same in every rerun
    src = resolve_model_dir(cfg.teacher.model)
    kind = check_model_dir(src, cfg.teacher.allow_pickle)
    tokenizer = load_tokenizer(src)
    data = inputs["data"]
    labels = data.facts["labels"]
    model, head_trained = load_pretrained(src, cfg.task, kind, num_labels=len(labels) or None,
                                          reinit_head=cfg.teacher.reinit_head)
    task = get_task(cfg.task)
    ids = _decide_labels(model, labels, head_trained, data.facts.get("declared_labels")) if task.labelled else {}
    finetuned: dict[str, Any] = {}
    if task.labelled and not head_trained:
        require(data.facts["train_labelled"], NO_TRAIN_LABELS)
        if cfg.train is None:  # `trains` read the same checkpoint when the run was planned: only a bug gets here
            raise RuntimeError("the teacher's head is untrained but the run was planned without fine-tuning settings")
        finetuned = _finetune(cfg, model, tokenizer, _with_ids(read_rows(data.path / "train.jsonl"), ids, cfg.task), out)
    save_model(model, tokenizer, out / "model", cfg.task)
    evals = _with_ids(read_rows(data.path / "eval.jsonl"), ids, cfg.task)
    names = head_labels(model.config) if task.labelled else []
    teacher_out = outputs(TorchModelSession(model, cfg.task), evals, tokenizer, cfg.max_length, cfg.task)
    np.save(out / "eval_outputs.npy", teacher_out)  # the reference, in `outputs`' layout (scored pairs: 2 rows each)
    metric = quality(teacher_out, evals, cfg.task, teacher_out, names)
    return {"source": str(src), "weights_format": kind, "params": param_count(model), "head_trained": head_trained,
            "finetune": finetuned, "quality": metric, "bytes": dir_size(out / "model", "*.safetensors"), "label_ids": ids,
            "label_names": names, "task": cfg.task} | task.floor(evals)


def _decide_labels(model: Any, labels: list[str], head_trained: bool, declared: list[str] | None = None) -> dict[str, int]:
    """Data label -> class id (`declared`: a `datasets` source's class names for its ids). A new head is named after
    the data's labels, so its config (and the bundle's labels.json) says '1', '2' or 'positive' rather than LABEL_0."""
    ids = label_ids(labels, head_labels(model.config) if head_trained else None, declared)
    if not head_trained:
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {label: i for i, label in enumerate(labels)}
    return ids


def _finetune(cfg: TeacherStageConfig, model: Any, tokenizer: Any, rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    from ..finetune import finetune

    return finetune(model, tokenizer, rows[: cfg.teacher.finetune_max_samples], out, cfg.train, cfg.task, max_length=cfg.max_length,
                    epochs=cfg.teacher.finetune_epochs, lr=cfg.teacher.finetune_lr)
