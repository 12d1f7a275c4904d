"""Stage `prune`: decide what goes. Structured: heads and FFN neurons by Fisher importance (a keep-plan).
Sparse: global magnitude masks to a target sparsity. Nothing is removed yet: distill and shrink do that."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from ..config import Frozen, Profile, PruneConfig, SparseConfig, StructuredConfig, Task
from ..errors import EdgesmithError
from ..modeling import load_model, load_tokenizer
from ..registry import stage
from .common import read_rows


class PruneStageConfig(Frozen):
    """One branch's own settings, the other branch's None, so that editing one branch never reruns the other.
    task and max_length are read by the structured branch; the sparse one keeps them (both are in the data stage's
    key, so they never rerun it alone)."""
    branch: Literal["structured", "sparse"]
    structured: StructuredConfig | None = None
    sparse: SparseConfig | None = None
    task: Task
    max_length: int
    fit: Profile | None = None  # the resolved prune.structured.fit_profile, when it names one
    # The length the fit also measures at and holds a p90 budget to: data.max_length, the longest input the bundle
    # accepts, where it exceeds the fit profile's seq_len (latency.budget_p90). None otherwise, and then left out of
    # the cache key, so that pruning without such a fit keeps its cached output.
    fit_longest: int | None = None
    added_defaults: ClassVar[dict[str, Any]] = {"fit_longest": None}

    @model_validator(mode="after")
    def _own_settings_only(self) -> "PruneStageConfig":
        own, other = (self.structured, self.sparse) if self.branch == "structured" else (self.sparse, self.structured)
        if own is None or other is not None or (self.branch == "sparse" and self.fit is not None):
            raise ValueError(f"the {self.branch} prune stage takes prune.{self.branch} and no other branch's settings")
        return self

    @classmethod
    def of(cls, branch: Literal["structured", "sparse"], prune: PruneConfig, task: Task, max_length: int,
           fit: Profile | None) -> "PruneStageConfig":
        """The stage config of one branch of the recipe's `prune` section (`fit`: the structured branch's profile)."""
        if branch == "sparse":
            return cls(branch=branch, sparse=prune.sparse, task=task, max_length=max_length)
        longest = max_length if fit is not None and max_length > fit.seq_len else None
        return cls(branch=branch, structured=prune.structured, task=task, max_length=max_length, fit=fit, fit_longest=longest)


@stage("prune", PruneStageConfig, version=3)
def run(cfg: PruneStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    teacher_dir = inputs["teacher"].path / "model"
    model = load_model(teacher_dir)
    if cfg.sparse is not None:
        return _sparse(cfg.sparse, model, out)
    return _structured(cfg, model, teacher_dir, read_rows(inputs["data"].path / "train.jsonl"), out)


def _structured(cfg: PruneStageConfig, model: Any, teacher_dir: Path, rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    import torch

    from ..evaluate import batches
    from ..importance import choose_layers, depth_search, fisher_scores, schedule

    structured = cfg.structured
    if structured is None:  # the config's validator rules this out
        raise EdgesmithError("prune: the structured branch got no prune.structured settings; this is a bug, please report it")
    tokenizer = load_tokenizer(teacher_dir)
    rows = rows[: structured.importance_samples]
    feeds = [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches(rows, tokenizer, cfg.max_length, 8)]
    head_scores, ffn_scores = fisher_scores(model, feeds, cfg.task)
    if structured.layers is not None:  # by hand (the preflight checked them against the model)
        kept_layers, depth_log = list(structured.layers), []
    else:
        kept_layers, depth_log = choose_layers(model, feeds, cfg.task, structured.keep_layers)
    fit = None
    if cfg.fit is not None:
        from ..fit import fit_keep_ratio

        calib = [{k: v for k, v in b.items()} for b in batches(rows[:32], tokenizer, cfg.max_length, 1)]
        fit = fit_keep_ratio(teacher_dir, (head_scores, ffn_scores), structured, cfg.fit, cfg.task, calib, out / "fit", kept_layers,
                             longest=cfg.fit_longest)
        structured = structured.model_copy(update={"keep_heads": fit["keep"], "keep_ffn": fit["keep"]})
    steps = schedule(head_scores, ffn_scores, structured, kept_layers)
    reconstruction = None
    if structured.reconstruct:
        from ..reconstruct import reconstruct

        steps[-1], reconstruction = reconstruct(model, steps[-1], feeds)
    plan = steps[-1]
    (out / "plan.json").write_text(json.dumps({
        "layers": plan, "steps": steps, "head_scores": head_scores.tolist(), "ffn_scores_sum": ffn_scores.sum(1).tolist(),
    }))
    kept = [p for p in plan if not p.get("dropped")]
    return {"layers_kept": kept_layers,
            "layers_chosen_by": "recipe" if structured.layers is not None else depth_search(len(plan), len(kept_layers)),
            "layers_total": len(plan), "depth_search_log": depth_log,
            "heads_per_layer": [len(p["heads"]) for p in kept], "ffn_per_layer": [len(p["ffn"]) for p in kept],
            "steps_heads_total": [sum(len(p["heads"]) for p in s) for s in steps],
            "heads_total": head_scores.numel(), "ffn_total": ffn_scores.numel(), "importance_rows": len(rows), "fit": fit,
            "reconstruction": reconstruction}


def _sparse(cfg: SparseConfig, model: Any, out: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    from ..sparse import magnitude_masks

    masks = magnitude_masks(model, cfg.sparsity)
    save_file({k: v.contiguous() for k, v in masks.items()}, str(out / "masks.safetensors"))
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return {"sparsity": 1 - kept / total, "masked_tensors": len(masks)}
