"""Layer-wise least-squares reconstruction of a pruned model (Kwon et al. 2022, "mask tuning"): a retraining-free
start for distillation.

After slicing, each kept head (FFN neuron) still adds its old contribution, but the units that were removed are
missing from the sum. For every sublayer, in order, one scale per kept unit is fitted so that the student's
pre-LayerNorm output (kept contributions + bias + residual) best matches the unpruned model's at the same depth,
on calibration text. The student's inputs already carry the scales fitted below it, so errors do not pile up.
The problem is small: a Gram matrix over units (at most the layer's FFN width squared), accumulated over tokens.
The scales are folded into the output projections' columns (`modeling.slice_model` does it from the plan).
"""

from __future__ import annotations

from typing import Any

from .arch import arch_for, dims, encoder_layers, get

RIDGE = 1e-3  # pulls scales toward 1 (no change) where the calibration data says little about a unit


def reconstruct(teacher: Any, plan: list[dict[str, Any]], batches: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Returns (plan with 'head_scales' and 'ffn_scales' on every kept layer, per-sublayer relative error before and
    after). `teacher` is not modified."""
    import copy

    import torch

    from .modeling import slice_model

    a = arch_for(teacher.config)
    kept = [i for i, p in enumerate(plan) if not p.get("dropped")]
    student = slice_model(copy.deepcopy(teacher), plan).eval()
    plan = [dict(p) for p in plan]
    targets = _teacher_targets(teacher, [get(encoder_layers(teacher)[i], n) for i in kept for n in (a.attn_norm, a.ffn_norm)], batches)
    log = []
    for j, t_layer in enumerate(kept):
        for k, (block, norm, proj) in enumerate((("heads", a.attn_norm, a.attn_out), ("ffn", a.ffn_norm, a.ffn_out))):
            s_layer = encoder_layers(student)[j]
            group = dims(teacher.config)["head_size"] if block == "heads" else 1
            gram, rhs, stats = _normal_equations(targets[2 * j + k], student, get(s_layer, norm), get(s_layer, proj), group, batches)
            scales = _solve(gram, rhs)
            ones = torch.ones(len(rhs), dtype=torch.float64)
            _apply(get(s_layer, proj), scales, group)
            plan[t_layer][f"{'head' if block == 'heads' else 'ffn'}_scales"] = [round(float(x), 6) for x in scales]
            log.append({"layer": t_layer, "block": block, "error_before": _relative(gram, rhs, stats, ones),
                        "error_after": _relative(gram, rhs, stats, scales.double())})
    return plan, log


def _teacher_targets(teacher: Any, norms: list[Any], batches: list[dict[str, Any]]) -> list[list[Any]]:
    """Per norm, per batch: the norm's input on non-padding tokens, from one teacher pass per batch (the teacher's
    targets do not change while the student is fitted)."""
    targets: list[list[Any]] = [[] for _ in norms]
    for batch in batches:
        keep = batch["attention_mask"].bool()
        seen = _capture_inputs(teacher, norms, batch)
        for i, pre in enumerate(seen):
            targets[i].append(pre[keep])
    return targets


def _normal_equations(targets: list[Any], student: Any, s_norm: Any, s_proj: Any, group: int,
                      batches: list[dict[str, Any]]) -> tuple[Any, Any, dict[str, float]]:
    """Accumulate G = A^T A and b = A^T r over non-padding tokens, where column u of A is unit u's contribution to
    the output and r = teacher's pre-norm output - (student's pre-norm output - its kept contributions)."""
    import torch

    units = s_proj.in_features // group
    gram, rhs = torch.zeros(units, units, dtype=torch.float64), torch.zeros(units, dtype=torch.float64)
    stats = {"target": 0.0, "residual": 0.0}
    w = s_proj.weight.detach()  # [hidden, units * group]
    for batch, target in zip(batches, targets):
        keep = batch["attention_mask"].bool()
        acts, pre = (x[keep] for x in _capture_inputs(student, [s_proj, s_norm], batch))  # [tokens, units * group], [tokens, hidden]
        r = (target - (pre - acts @ w.T)).double()  # what the kept units should add up to
        g, b = _gram(acts.double(), w.double(), group, r)
        gram, rhs = gram + g, rhs + b
        stats["target"] += float((target.double() ** 2).sum())
        stats["residual"] += float((r ** 2).sum())
    return gram, rhs, stats


def _gram(acts: Any, w: Any, group: int, r: Any) -> tuple[Any, Any]:
    """(A^T A, A^T r) for one batch. A neuron's contribution is a rank-one outer product, so for FFN neurons both
    have a closed form that never builds A ([neurons x tokens x hidden] would not fit in memory); a head's
    contribution spans its `group` columns and is built explicitly (few heads)."""
    import torch

    if group == 1:
        return (acts.T @ acts) * (w.T @ w), (acts * (r @ w)).sum(0)
    units = acts.shape[1] // group
    contrib = torch.einsum("tug,hug->uth", acts.reshape(len(acts), units, group), w.reshape(len(w), units, group))
    flat = contrib.reshape(units, -1)
    return flat @ flat.T, flat @ r.reshape(-1)


def _relative(gram: Any, rhs: Any, stats: dict[str, Any], m: Any) -> float:
    """||A m - r|| / ||target||, from the accumulated normal equations: ||r||^2 - 2 m.b + m.G.m."""
    err = stats["residual"] - 2 * float(m @ rhs) + float(m @ gram @ m)
    return round(max(err, 0.0) ** 0.5 / max(stats["target"], 1e-30) ** 0.5, 6)


def _solve(gram: Any, rhs: Any) -> Any:
    """argmin ||A m - r||^2 + lambda ||m - 1||^2, lambda a small share of the mean diagonal."""
    import torch

    lam = RIDGE * float(gram.diagonal().mean().clamp(min=1e-12))
    eye = torch.eye(len(rhs), dtype=gram.dtype)
    return torch.linalg.solve(gram + lam * eye, rhs + lam).float()


def _apply(proj: Any, scales: Any, group: int) -> None:
    import torch

    with torch.no_grad():
        proj.weight.mul_(scales.repeat_interleave(group))


def _capture_inputs(model: Any, modules: list[Any], batch: dict[str, Any]) -> list[Any]:
    """The first input of each module in one forward pass of `model`."""
    seen: dict[int, Any] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, i=i: seen.__setitem__(i, args[0].detach())) for i, m in enumerate(modules)]
    try:
        _forward(model, batch)
    finally:
        for h in hooks:
            h.remove()
    return [seen[i] for i in range(len(modules))]


def _forward(model: Any, batch: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        model(**batch)
