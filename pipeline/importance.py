"""First-order (Fisher) importance of attention heads and FFN neurons, and the keep-plan they imply.

A mask of ones is multiplied into the input of each layer's attention output projection (per head) and FFN
output projection (per neuron); the squared gradient of a distillation loss with respect to those masks,
summed over batches, is the empirical Fisher score (Kwon et al., 2022). The loss needs no labels: for
classifiers it is cross-entropy against the teacher's own predicted class (a KL term would have zero
gradient while student == teacher); for sentence encoders it is an in-batch contrastive loss between the
model's embeddings and the teacher's.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from .arch import dims, get, arch_for, encoder_layers
from .config import StructuredConfig, keep_count
from .errors import EdgesmithError
from .tasks import get as get_task

# Every subset of layers is tried where there are at most this many (any keep count of a 6-layer MiniLM: C(6, 3) = 20;
# 2 or 10 of 12 layers: 66), at most what the greedy search costs on 12 layers (75 passes to keep 2); greedy above. On
# all-MiniLM-L6-v2 the greedy search kept layers 0, 1, 4, 5 where the best 4-layer subset by its own measure is
# 0, 2, 4, 5, which also scores 0.6 Spearman points higher on STS-B untrained (docs/recovery.md).
EVERY_SUBSET_MAX = 100


def fisher_scores(model: Any, batches: list[dict[str, Any]], task: str) -> tuple[Any, Any]:
    """Returns (head_scores [layers, heads], ffn_scores [layers, ffn]), both non-negative."""
    import torch

    a, d = arch_for(model.config), dims(model.config)
    head_mask = torch.ones(d["layers"], d["heads"], requires_grad=True)
    ffn_mask = torch.ones(d["layers"], d["ffn"], requires_grad=True)
    hooks = []
    for i, layer in enumerate(encoder_layers(model)):
        hooks.append(get(layer, a.attn_out).register_forward_pre_hook(_scale(head_mask, i, d["head_size"])))
        hooks.append(get(layer, a.ffn_out).register_forward_pre_hook(_scale(ffn_mask, i, 1)))
    head_f, ffn_f = torch.zeros_like(head_mask), torch.zeros_like(ffn_mask)
    model.eval()
    try:
        for batch in batches:
            loss = _label_free_loss(model, batch, task)
            gh, gf = torch.autograd.grad(loss, [head_mask, ffn_mask])
            head_f += gh.detach() ** 2
            ffn_f += gf.detach() ** 2
    finally:
        for h in hooks:
            h.remove()
    return head_f, ffn_f


def _scale(mask: Any, layer: int, repeat: int) -> Any:
    def hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0] * mask[layer].repeat_interleave(repeat),) + args[1:]

    return hook


def _label_free_loss(model: Any, batch: dict[str, Any], task: str) -> Any:
    return get_task(task).label_free_loss(model(**batch), batch["attention_mask"])


def depth_search(layers: int, n_keep: int) -> str:
    """How `choose_layers` picks `n_keep` of `layers` layers."""
    if n_keep == layers:
        return "no depth pruning"
    return "every subset" if math.comb(layers, n_keep) <= EVERY_SUBSET_MAX else "greedy search"


def choose_layers(model: Any, batches: list[dict[str, Any]], task: str, keep: float) -> tuple[list[int], list[dict[str, Any]]]:
    """Depth pruning: which encoder layers to keep, the set whose running alone moves the model's outputs least
    from the unpruned model's (KL of class probabilities, or 1 - cosine of embeddings), measured on the importance
    batches. Measured rather than Fisher-estimated: removing a layer is not the small perturbation a first-order
    score describes. Every subset where there are few (`depth_search`), else greedily, one layer removed a round, so
    that 12 layers cost 78 forward passes, not C(12, k). Returns (kept layer ids ascending, the search log: the five
    closest subsets, or each round's removal)."""
    import torch

    layers = len(encoder_layers(model))
    n_keep = keep_count(keep, layers)
    if n_keep == layers:
        return list(range(layers)), []
    with torch.no_grad():
        model.eval()
        reference = [model(**b) for b in batches]
        if depth_search(layers, n_keep) == "every subset":
            costs = {s: _skip_cost(model, batches, task, reference, list(s)) for s in itertools.combinations(range(layers), n_keep)}
            ranked = sorted(costs, key=lambda s: (costs[s], s))
            return list(ranked[0]), [{"kept": list(s), "divergence": costs[s]} for s in ranked[:5]]
        kept, log = list(range(layers)), []
        while len(kept) > n_keep:
            costs = {i: _skip_cost(model, batches, task, reference, [k for k in kept if k != i]) for i in kept}
            worst = min(costs, key=costs.get)
            kept.remove(worst)
            log.append({"removed": worst, "divergence": costs[worst]})
    return kept, log


def _skip_cost(model: Any, batches: list[dict[str, Any]], task: str, reference: list[Any], kept: list[int]) -> float:
    """Mean divergence from `reference` with only the layers `kept` running (the others pass their input on)."""
    divergence = get_task(task).divergence
    hooks = [layer.register_forward_hook(_identity, with_kwargs=True)
             for i, layer in enumerate(encoder_layers(model)) if i not in kept]
    try:
        total = 0.0
        for batch, ref in zip(batches, reference):
            total += divergence(model(**batch), ref, batch["attention_mask"])
        return max(total / len(batches), 0.0)  # a KL of identical outputs can round to -1e-9
    finally:
        for h in hooks:
            h.remove()


def _identity(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
    """A layer's forward hook that replaces its output with its input hidden states (the layer is skipped)."""
    hidden = args[0] if args else kwargs["hidden_states"]
    return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden


def schedule(head_scores: Any, ffn_scores: Any, cfg: StructuredConfig, kept_layers: list[int] | None = None) -> list[list[dict[str, Any]]]:
    """Plans for gradual pruning: `cfg.steps` nested plans whose keep shares fall geometrically from 1 to the
    target (for 0.33 in two steps: 0.57, then 0.33). Nested because every step ranks by the same scores and
    per-layer counts only shrink, so each step only removes units the previous one kept."""
    n_layers = len(kept_layers) if kept_layers is not None else head_scores.shape[0]
    heads, ffn = n_layers * head_scores.shape[1], n_layers * ffn_scores.shape[1]
    share_h, share_f = keep_count(cfg.keep_heads, heads) / heads, keep_count(cfg.keep_ffn, ffn) / ffn
    plans = []
    for i in range(1, cfg.steps):
        frac = i / cfg.steps
        update = {"keep_heads": share_h**frac, "keep_ffn": share_f**frac}
        plans.append(select(head_scores, ffn_scores, cfg.model_copy(update=update), kept_layers))
    return plans + [select(head_scores, ffn_scores, cfg, kept_layers)]


def relative(current: list[dict[str, Any]], nxt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Re-express `nxt` (ids in the original model) as ids into a model already sliced to `current`. Layers are
    dropped in the first step (every nested plan drops the same ones), so the sliced model lacks them already."""
    if [bool(c.get("dropped")) for c in current] != [bool(n.get("dropped")) for n in nxt]:
        raise EdgesmithError("prune: gradual plans drop different layers; this is a bug, please report it")
    try:
        return [{k: [c[k].index(i) for i in n[k]] for k in ("heads", "ffn")} for c, n in zip(current, nxt) if not c.get("dropped")]
    except ValueError:
        raise EdgesmithError("prune: gradual plans are not nested; this is a bug, please report it") from None


def select(head_scores: Any, ffn_scores: Any, cfg: StructuredConfig, kept_layers: list[int] | None = None) -> list[dict[str, Any]]:
    """Width within the kept layers (all when `kept_layers` is None); the others are marked dropped. keep_heads
    and keep_ffn count within the kept layers: depth and width are separate choices."""
    layers = head_scores.shape[0]
    kept = list(range(layers)) if kept_layers is None else sorted(kept_layers)
    width = iter(_select_width(head_scores[kept], ffn_scores[kept], cfg))
    return [next(width) if i in kept else {"heads": [], "ffn": [], "dropped": True} for i in range(layers)]


def _select_width(head_scores: Any, ffn_scores: Any, cfg: StructuredConfig) -> list[dict[str, list[int]]]:
    """Global top-k over layer-normalised scores, at least `min_heads_per_layer` heads per layer, FFN widths
    rounded to `ffn_multiple_of` (GEMM tiles). Returns per layer the kept head and neuron ids, ascending."""
    import torch

    hs = head_scores / head_scores.sum(1, keepdim=True).clamp(min=1e-20)
    fs = ffn_scores / ffn_scores.sum(1, keepdim=True).clamp(min=1e-20)
    layers, heads = hs.shape
    n_heads = keep_count(cfg.keep_heads, layers * heads)
    floor = min(cfg.min_heads_per_layer, heads)
    boosted = hs.clone()
    boosted[torch.arange(layers)[:, None], hs.argsort(1, descending=True)[:, :floor]] = float("inf")
    head_keep = torch.zeros_like(hs, dtype=torch.bool).flatten()
    head_keep[boosted.flatten().argsort(descending=True)[: max(n_heads, floor * layers)]] = True
    head_keep = head_keep.view(layers, heads)

    n_ffn = keep_count(cfg.keep_ffn, fs.numel())
    ffn_keep_flat = torch.zeros(fs.numel(), dtype=torch.bool)
    ffn_keep_flat[fs.flatten().argsort(descending=True)[:n_ffn]] = True
    widths = ffn_keep_flat.view(fs.shape).sum(1).tolist()
    m, width = cfg.ffn_multiple_of, fs.shape[1]
    widths = [min(width, max(m, int(round(w / m)) * m)) for w in widths]
    plan = []
    for i in range(layers):
        ffn_ids = fs[i].argsort(descending=True)[: widths[i]].sort().values.tolist()
        plan.append({"heads": torch.nonzero(head_keep[i]).flatten().tolist(), "ffn": ffn_ids})
    return plan
