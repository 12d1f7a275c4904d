import torch

from conftest import make_model_dir
from edgesmith.config import StructuredConfig
from edgesmith.importance import fisher_scores, relative, schedule, select
from edgesmith.modeling import load_pretrained, shape_plan, slice_model
from edgesmith.sparse import hold_masks, load_sparse, magnitude_masks, release_masks, save_sparse


def test_fisher_scores_are_label_free_and_non_zero(tmp_path):
    model, _ = load_pretrained(make_model_dir(tmp_path / "m"), "classification", "safetensors")
    ids = torch.randint(5, 2000, (4, 10))
    heads, ffn = fisher_scores(model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}], "classification")
    assert heads.shape == (2, 4) and ffn.shape == (2, 64)
    assert (heads >= 0).all() and heads.sum() > 0 and ffn.sum() > 0
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_fisher_scores_for_sentence_encoders(tmp_path):
    model, _ = load_pretrained(make_model_dir(tmp_path / "m", task="embedding"), "embedding", "safetensors")
    ids = torch.randint(5, 2000, (4, 10))
    heads, ffn = fisher_scores(model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}], "embedding")
    assert heads.sum() > 0 and ffn.sum() > 0


def test_select_keeps_the_requested_budget_with_uneven_layers():
    heads = torch.tensor([[9.0, 8, 7, 6], [0.1, 0.2, 0.3, 5]])
    ffn = torch.rand(2, 64)
    plan = select(heads, ffn, StructuredConfig(keep_heads=0.5, keep_ffn=0.5, min_heads_per_layer=1, ffn_multiple_of=16))
    assert sum(len(p["heads"]) for p in plan) == 4
    assert all(len(p["heads"]) >= 1 for p in plan)
    assert 3 in plan[1]["heads"]  # the strong head in the weak layer survives
    assert all(len(p["ffn"]) % 16 == 0 and p["ffn"] == sorted(p["ffn"]) for p in plan)


def test_select_accepts_counts_and_keeps_the_floor():
    heads = torch.tensor([[9.0, 8, 7, 6], [0.0, 0.0, 0.0, 0.1]])
    plan = select(heads, torch.rand(2, 64), StructuredConfig(keep_heads=2, keep_ffn=32, min_heads_per_layer=1, ffn_multiple_of=8))
    assert [len(p["heads"]) for p in plan] == [1, 1]


def test_gradual_schedule_is_nested_and_slices_step_by_step(tmp_path):
    torch.manual_seed(0)
    heads, ffn = torch.rand(2, 4), torch.rand(2, 64)
    cfg = StructuredConfig(keep_heads=0.25, keep_ffn=0.25, ffn_multiple_of=8, steps=3)
    steps = schedule(heads, ffn, cfg)
    assert len(steps) == 3 and steps[-1] == select(heads, ffn, cfg)
    totals = [sum(len(layer["ffn"]) for layer in plan) for plan in steps]
    assert totals[0] > totals[1] > totals[2]
    for big, small in zip(steps, steps[1:]):
        assert all(set(s["heads"]) <= set(b["heads"]) and set(s["ffn"]) <= set(b["ffn"]) for b, s in zip(big, small))
    model, _ = load_pretrained(make_model_dir(tmp_path / "m"), "classification", "safetensors")
    current = None
    for plan in steps:  # slicing step by step ends where one cut to the final plan ends
        slice_model(model, plan if current is None else relative(current, plan))
        current = plan
    oneshot, _ = load_pretrained(make_model_dir(tmp_path / "m"), "classification", "safetensors")
    slice_model(oneshot, steps[-1])
    ids = torch.randint(5, 2000, (2, 7))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, oneshot(input_ids=ids).logits, atol=1e-6)
    assert shape_plan(model) == shape_plan(oneshot)


def test_sparse_masks_hold_through_training_and_compress(tmp_path):
    model, _ = load_pretrained(make_model_dir(tmp_path / "m"), "classification", "safetensors")
    masks = magnitude_masks(model, 0.8)
    density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert abs(density - 0.2) < 0.01
    hold_masks(model, masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = torch.randint(5, 2000, (2, 8))
    model(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    opt.step()
    release_masks(model)
    w = model.bert.encoder.layer[0].attention.self.query.weight
    name = "bert.encoder.layer.0.attention.self.query"
    assert torch.all(w[masks[name] == 0] == 0)
    counts = save_sparse(model, tmp_path)
    assert counts["nonzero"] <= 0.21 * counts["total"]
    state = load_sparse(tmp_path)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
