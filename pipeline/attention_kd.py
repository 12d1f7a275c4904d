"""Intermediate-layer distillation through a layer map: which teacher layer and heads each student layer learns from.

TinyBERT distils attention distributions, MiniLM the value relations (softmax(V V^T / sqrt(d))); both are
distributions over the keys, one per head and query token, so the student matches them with a KL divergence.
Structured pruning keeps whole teacher heads, so student head h of layer j *is* teacher head heads[j][h] of layer
layers[j], and every kept head has an exact counterpart: no projection or relation-head regrouping is needed.
Q, K and V are caught by forward hooks on the projection modules, so SDPA kernels stay in use for the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .arch import arch_for, dims, encoder_layers, get

ROLES = ("query", "key", "value")


@dataclass(frozen=True)
class LayerMap:
    layers: tuple[int, ...]  # teacher layer of each student layer (its weights and heads come from there)
    heads: tuple[tuple[int, ...], ...]  # teacher head ids of each student layer's heads, in the student's order
    hidden: tuple[int, ...] = ()  # teacher layer whose output each student layer's output learns; () = `layers`

    @classmethod
    def from_plan(cls, plan: list[dict[str, Any]], hidden_targets: str = "kept") -> "LayerMap":
        """From a keep-plan in the unpruned model's ids (dropped layers have no student layer).

        hidden_targets "block_end": a student layer's output learns the output of the last teacher layer before the
        next kept one (the last student layer: the teacher's last), as TinyBERT maps a student layer to the end of
        its block of teacher layers. With "kept" a kept layer followed by dropped ones is held to its own teacher
        output, which pulls it away from doing the dropped layers' work."""
        kept = [(i, p) for i, p in enumerate(plan) if not p.get("dropped")]
        layers = tuple(i for i, _ in kept)
        block_ends = tuple(i - 1 for i in layers[1:]) + (len(plan) - 1,)
        hidden = block_ends if hidden_targets == "block_end" else ()
        return cls(layers, tuple(tuple(p["heads"]) for _, p in kept), hidden)

    @classmethod
    def identity(cls, config: Any) -> "LayerMap":
        d = dims(config)
        return cls(tuple(range(d["layers"])), tuple(tuple(range(d["heads"])) for _ in range(d["layers"])))

    @property
    def hidden_layers(self) -> tuple[int, ...]:
        return self.hidden or self.layers


class Capture:
    """Keeps the outputs of every layer's query, key and value projections from the latest forward pass."""

    def __init__(self, model: Any) -> None:
        a = arch_for(model.config)
        self.seen: dict[tuple[int, str], Any] = {}
        self._hooks = [get(layer, getattr(a, role)).register_forward_hook(self._keeper(i, role))
                       for i, layer in enumerate(encoder_layers(model)) for role in ROLES]

    def _keeper(self, layer: int, role: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            self.seen[(layer, role)] = output

        return hook

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self.seen.clear()


def attention_loss(student: Capture, teacher: Capture, lmap: LayerMap, mask: Any, head_size: int, tokens: Any = None) -> Any:
    """Mean KL(teacher || student) of attention distributions (Q K^T) and value relations (V V^T), over the kept
    heads of every student layer and the non-padding query tokens (`tokens` of them: see training.kd_loss)."""
    terms = []
    for j, (layer, heads) in enumerate(zip(lmap.layers, lmap.heads)):
        for x, y in (("query", "key"), ("value", "value")):
            s = _log_relation(student.seen[(j, x)], student.seen[(j, y)], mask, head_size, None)
            t = _log_relation(teacher.seen[(layer, x)], teacher.seen[(layer, y)], mask, head_size, heads)
            terms.append(_kl(t, s, mask, tokens))
    return sum(terms) / len(terms)


def _log_relation(x: Any, y: Any, mask: Any, head_size: int, heads: tuple[int, ...] | None) -> Any:
    """log softmax(x_h y_h^T / sqrt(d)) per head over non-padding keys: [batch, heads, queries, keys], in fp32 (a
    bf16 teacher's projections too: see DistillConfig.teacher_precision)."""
    x, y = x.float(), y.float()
    batch, n, width = x.shape

    def split(z: Any) -> Any:
        z = z.view(batch, n, width // head_size, head_size).transpose(1, 2)
        return z if heads is None else z[:, list(heads)]

    scores = split(x) @ split(y).transpose(-1, -2) / head_size**0.5
    # a large finite value, not -inf: padded keys then get ~0 mass and the KL's (log p_t - log p_s) stays finite
    scores = scores.masked_fill(mask[:, None, None, :] == 0, -1e4)
    return scores.log_softmax(-1)


def _kl(t: Any, s: Any, mask: Any, tokens: Any = None) -> Any:
    """sum_k p_t (log p_t - log p_s), averaged over heads and real query tokens."""
    per_query = (t.exp() * (t - s)).sum(-1)
    q = mask[:, None, :].to(per_query.dtype)
    return (per_query * q).sum() / ((q.sum() if tokens is None else tokens) * per_query.shape[1])
