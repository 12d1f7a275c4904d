"""Architecture knowledge, in one table. Stage code asks this module; it never matches module names inline.

Each entry says where an encoder layer keeps its attention projections and FFN, what the config calls the
sizes, and which attributes of the attention module must change when heads are removed. transformers 4.x reads
`num_attention_heads`/`all_head_size` in BertSelfAttention.forward; v5 reshapes with `view(..., -1, head_size)`
and ignores them, so setting them is correct on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import EdgesmithError


@dataclass(frozen=True)
class Arch:
    layers: str  # path of the ModuleList of encoder layers, relative to model.base_model
    query: str
    key: str
    value: str
    attn_out: str
    ffn_in: str
    ffn_out: str
    attn_module: str  # module whose head-count attributes must follow the shrink
    attn_norm: str  # LayerNorm after the attention block: its input is the block's output plus the residual
    ffn_norm: str  # LayerNorm after the FFN block, likewise
    heads_attr: str
    width_attr: str  # attention width attribute (heads * head_size)
    cfg_layers: str
    cfg_heads: str
    cfg_hidden: str
    cfg_ffn: str
    has_token_types: bool
    positions_after_padding: bool = False  # RoBERTa numbers positions from pad_token_id + 1: 514 rows hold 512 tokens


_BERT_LIKE = dict(
    layers="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attn_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attn_module="attention.self",
    attn_norm="attention.output.LayerNorm",
    ffn_norm="output.LayerNorm",
    heads_attr="num_attention_heads",
    width_attr="all_head_size",
    cfg_layers="num_hidden_layers",
    cfg_heads="num_attention_heads",
    cfg_hidden="hidden_size",
    cfg_ffn="intermediate_size",
)

ARCHITECTURES: dict[str, Arch] = {
    "bert": Arch(**_BERT_LIKE, has_token_types=True),
    "electra": Arch(**_BERT_LIKE, has_token_types=True),
    "roberta": Arch(**_BERT_LIKE, has_token_types=False, positions_after_padding=True),
    "xlm-roberta": Arch(**_BERT_LIKE, has_token_types=False, positions_after_padding=True),
    "distilbert": Arch(
        layers="transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attn_out="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        attn_module="attention",
        attn_norm="sa_layer_norm",
        ffn_norm="output_layer_norm",
        heads_attr="n_heads",
        width_attr="dim",
        cfg_layers="n_layers",
        cfg_heads="n_heads",
        cfg_hidden="dim",
        cfg_ffn="hidden_dim",
        has_token_types=False,
    ),
}


def arch_for(config: Any) -> Arch:
    """The table entry for a transformers config; a clear error for anything outside the BERT family."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise EdgesmithError(
            f"model type {model_type!r} is not a supported BERT-family encoder; "
            f"use one of {sorted(ARCHITECTURES)}"
        )
    return ARCHITECTURES[model_type]


def dims(config: Any) -> dict[str, int]:
    """Uniform sizes of an unpruned model: layers, heads, hidden, ffn, head_size."""
    a = arch_for(config)
    layers, heads = getattr(config, a.cfg_layers), getattr(config, a.cfg_heads)
    hidden, ffn = getattr(config, a.cfg_hidden), getattr(config, a.cfg_ffn)
    return dict(layers=layers, heads=heads, hidden=hidden, ffn=ffn, head_size=hidden // heads)


def max_tokens(config: Any) -> int:
    """The longest input, special tokens included, that the model's position embeddings cover."""
    skipped = config.pad_token_id + 1 if arch_for(config).positions_after_padding else 0
    return config.max_position_embeddings - skipped


def get(module: Any, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def set_module(root: Any, path: str, new: Any) -> None:
    parent, _, name = path.rpartition(".")
    setattr(get(root, parent) if parent else root, name, new)


def encoder_layers(model: Any) -> list[Any]:
    """The encoder layers of a model (bare encoder or one with a task head)."""
    return list(get(model.base_model, arch_for(model.config).layers))


def layer_linears(model: Any) -> list[dict[str, Any]]:
    """Per layer, the six prunable Linear modules by role (query, key, value, attn_out, ffn_in, ffn_out)."""
    a = arch_for(model.config)
    roles = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
    return [{r: get(layer, getattr(a, r)) for r in roles} for layer in encoder_layers(model)]
