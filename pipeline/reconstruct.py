"""Layer-wise least-squares reconstruction of a pruned model (Kwon et al. 2022, "mask tuning"): a retraining-free
start for distillation.

After slicing, each kept head (FFN neuron) still adds its old contribution, but the units that were removed are
missing from the sum. For every sublayer, in order, one scale per kept unit is fitted so that the student's
pre-LayerNorm output (kept contributions + bias + residual) best matches what the unpruned sublayer would output
*on the student's own input*: the target is what pruning removed, not the drift accumulated below, which no
per-unit scale can express (fitting that drift was tried first and lost accuracy on SST-2). The student's inputs
carry the scales fitted below it. The problem is small: a Gram matrix over units (at most the layer's FFN width
squared), accumulated over tokens. The scales are folded into the output projections' columns
(`modeling.slice_model` does it from the plan).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    log = []
    for j, t_layer in enumerate(kept):
        s_layer, t_mod = encoder_layers(student)[j], encoder_layers(teacher)[t_layer]
        # the attention block's input is the layer's input; the FFN block's is the attention LayerNorm's output
        for block, norm, proj, source in (("head", a.attn_norm, a.attn_out, None), ("ffn", a.ffn_norm, a.ffn_out, a.attn_norm)):
            sites = Sites(s_src=get(s_layer, source) if source else s_layer, t_src=get(t_mod, source) if source else t_mod,
                          from_output=source is not None, s_proj=get(s_layer, proj), s_norm=get(s_layer, norm), t_norm=get(t_mod, norm))
            group = dims(teacher.config)["head_size"] if block == "head" else 1
            gram, rhs, stats = _normal_equations(student, teacher, sites, group, batches)
            scales = _solve(gram, rhs)
            _apply(sites.s_proj, scales, group)
            plan[t_layer][f"{block}_scales"] = [round(float(x), 6) for x in scales]
            ones = torch.ones(len(rhs), dtype=torch.float64)
            log.append({"layer": t_layer, "block": block, "error_before": _relative(gram, rhs, stats, ones),
                        "error_after": _relative(gram, rhs, stats, scales.double())})
    return plan, log


@dataclass(frozen=True)
class Sites:
    """Where one sublayer is read: the block's input in the student (s_src) is fed to the teacher's (t_src), taken
    from the module's output when `from_output` (else its input); the student's output projection and the two
    LayerNorms whose inputs are the pre-norm sums."""
    s_src: Any
    t_src: Any
    from_output: bool
    s_proj: Any
    s_norm: Any
    t_norm: Any


def _normal_equations(student: Any, teacher: Any, sites: Sites, group: int,
                      batches: list[dict[str, Any]]) -> tuple[Any, Any, dict[str, float]]:
    """Accumulate G = A^T A and b = A^T r over non-padding tokens, where column u of A is unit u's contribution to
    the output and r = the unpruned sublayer's pre-norm output - (the student's - its kept contributions)."""
    import torch

    units = sites.s_proj.in_features // group
    gram, rhs = torch.zeros(units, units, dtype=torch.float64), torch.zeros(units, dtype=torch.float64)
    stats = {"target": 0.0, "residual": 0.0}
    w = sites.s_proj.weight.detach()  # [hidden, units * group]
    for batch in batches:
        keep = batch["attention_mask"].bool()
        src, acts, pre = _student_pass(student, sites, batch)
        target = _teacher_pass(teacher, sites, src, batch)[keep]
        acts, pre = acts[keep], pre[keep]  # [tokens, units * group], [tokens, hidden]
        r = (target - (pre - acts @ w.T)).double()  # what the kept units should add up to
        # measured as the LayerNorm after the sum sees it: per token divided by the target's spread, per dimension
        # times the norm's gain. Unweighted, a few outlier dimensions of the residual stream dominate the fit.
        inv_sigma = 1 / target.double().std(-1, keepdim=True).clamp(min=1e-6)
        gain = sites.t_norm.weight.detach().double()
        g, b = _gram(acts.double() * inv_sigma, w.double() * gain[:, None], group, r * inv_sigma * gain)
        gram, rhs = gram + g, rhs + b
        stats["target"] += float(((target.double() * inv_sigma * gain) ** 2).sum())
        stats["residual"] += float(((r * inv_sigma * gain) ** 2).sum())
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


def _student_pass(student: Any, sites: Sites, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(the block's input, the output projection's input, the norm's input) in one forward pass of the student."""
    seen: dict[str, Any] = {}
    hooks = [_reader(sites.s_src, sites.from_output, seen, "src"),
             sites.s_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("acts", args[0].detach())),
             sites.s_norm.register_forward_pre_hook(lambda m, args: seen.__setitem__("pre", args[0].detach()))]
    _run(student, batch, hooks)
    return seen["src"], seen["acts"], seen["pre"]


def _teacher_pass(teacher: Any, sites: Sites, src: Any, batch: dict[str, Any]) -> Any:
    """The teacher's pre-norm sum for this block when the block's input is the student's `src`."""
    seen: dict[str, Any] = {}
    hooks = [_writer(sites.t_src, sites.from_output, src),
             sites.t_norm.register_forward_pre_hook(lambda m, args: seen.__setitem__("pre", args[0].detach()))]
    _run(teacher, batch, hooks)
    return seen["pre"]


def _reader(module: Any, from_output: bool, seen: dict[str, Any], key: str) -> Any:
    if from_output:
        return module.register_forward_hook(lambda m, args, out: seen.__setitem__(key, _first(out).detach()))
    return module.register_forward_pre_hook(
        lambda m, args, kwargs: seen.__setitem__(key, (args[0] if args else kwargs["hidden_states"]).detach()), with_kwargs=True)


def _writer(module: Any, from_output: bool, value: Any) -> Any:
    if from_output:
        return module.register_forward_hook(lambda m, args, out: (value,) + tuple(out[1:]) if isinstance(out, tuple) else value)

    def swap_input(m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return ((value,) + args[1:], kwargs) if args else (args, kwargs | {"hidden_states": value})

    return module.register_forward_pre_hook(swap_input, with_kwargs=True)


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def _run(model: Any, batch: dict[str, Any], hooks: list[Any]) -> None:
    try:
        _forward(model, batch)
    finally:
        for h in hooks:
            h.remove()


def _forward(model: Any, batch: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        model(**batch)
