"""Physical shrinking, the shape plan and the loader, tested once per architecture in the table."""

import pytest
import torch

from conftest import make_model_dir
from edgesmith.arch import ARCHITECTURES, arch_for, dims, get
from edgesmith.errors import EdgesmithError
from edgesmith.modeling import build_from_plan, check_model_dir, load_model, load_pretrained, param_count, save_model, shape_plan, slice_model
from edgesmith.modeling import load_tokenizer

TYPES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert"]
PLAN = [{"heads": [0, 2], "ffn": list(range(0, 64, 2))}, {"heads": [3], "ffn": list(range(16))}]


def masked_forward(model, plan, ids):
    """Reference: zero the pruned heads' context and the pruned FFN activations with hooks."""
    a, d = arch_for(model.config), dims(model.config)
    hooks = []
    for layer, keep in zip(model.base_model.__getattr__(a.layers.split(".")[0]).__getattr__(a.layers.split(".")[1]), plan):
        hm = torch.zeros(d["heads"])
        hm[keep["heads"]] = 1
        fm = torch.zeros(d["ffn"])
        fm[keep["ffn"]] = 1
        hooks.append(get(layer, a.attn_out).register_forward_pre_hook(lambda m, x, hm=hm: (x[0] * hm.repeat_interleave(d["head_size"]),)))
        hooks.append(get(layer, a.ffn_out).register_forward_pre_hook(lambda m, x, fm=fm: (x[0] * fm,)))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    for h in hooks:
        h.remove()
    return out


@pytest.mark.parametrize("model_type", TYPES)
def test_slicing_equals_masking_and_removes_parameters(tmp_path, model_type):
    folder = make_model_dir(tmp_path / model_type, model_type)
    model, trained = load_pretrained(folder, "classification", "safetensors")
    assert trained
    ids = torch.randint(5, 2000, (2, 9))
    expected = masked_forward(model, PLAN, ids)
    before = param_count(model)
    slice_model(model, PLAN)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert param_count(model) < before
    assert [l["heads"] for l in shape_plan(model)["layers"]] == [2, 1]
    assert [l["ffn"] for l in shape_plan(model)["layers"]] == [32, 16]


@pytest.mark.parametrize("model_type", TYPES)
def test_shape_plan_reloads_into_stock_classes(tmp_path, model_type):
    folder = make_model_dir(tmp_path / model_type, model_type)
    model, _ = load_pretrained(folder, "classification", "safetensors")
    slice_model(model, PLAN)
    save_model(model, load_tokenizer(folder), tmp_path / "out", "classification")
    for attn in ("eager", "sdpa"):
        reloaded = load_model(tmp_path / "out", attn=attn)
        assert type(reloaded).__module__.startswith("transformers.")
        ids = torch.randint(5, 2000, (3, 7))
        with torch.no_grad():
            a = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            b = reloaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        assert torch.allclose(a, b, atol=1e-5), attn
    assert (tmp_path / "out" / "model.safetensors").stat().st_size < (folder / "model.safetensors").stat().st_size


def test_every_table_entry_is_tested():
    assert set(ARCHITECTURES) == set(TYPES)


def test_non_bert_family_is_refused(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(EdgesmithError, match="not a supported BERT-family encoder"):
        check_model_dir(tmp_path, allow_pickle=False)


def test_pickle_only_checkpoint_needs_consent_and_loads_weights_only(tmp_path):
    folder = make_model_dir(tmp_path / "m")
    model, _ = load_pretrained(folder, "classification", "safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(EdgesmithError, match="--allow-pickle"):
        check_model_dir(folder, allow_pickle=False)
    assert check_model_dir(folder, allow_pickle=True) == "pickle"
    again, trained = load_pretrained(folder, "classification", "pickle")
    assert trained and torch.equal(again.classifier.weight, model.classifier.weight)


def test_build_from_plan_rejects_wrong_layer_count(tmp_path):
    folder = make_model_dir(tmp_path / "m")
    model, _ = load_pretrained(folder, "classification", "safetensors")
    plan = shape_plan(model)
    plan["layers"] = plan["layers"][:1]
    with pytest.raises(EdgesmithError, match="layer count"):
        build_from_plan(model.config, plan, "classification")
