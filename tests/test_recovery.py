"""Depth pruning, least-squares reconstruction and attention distillation through a layer map, on tiny models."""

import copy
import itertools
from pathlib import Path

import pytest
import torch

from conftest import make_model_dir, tiny_config
from edgesmith.attention_kd import Capture, LayerMap, attention_loss
from edgesmith.config import DistillConfig, StructuredConfig
from edgesmith.errors import EdgesmithError
from edgesmith import importance
from edgesmith.importance import choose_layers, relative, schedule, select
from edgesmith.modeling import load_model, load_pretrained, save_model, shape_plan, slice_model
from edgesmith.reconstruct import reconstruct
from edgesmith.training import kd_loss


def four_layers(seed: int = 0, model_type: str = "bert"):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_config(model_type)
    setattr(config, "n_layers" if model_type == "distilbert" else "num_hidden_layers", 4)
    return AutoModelForSequenceClassification.from_config(config).eval()


def feeds(n: int = 4, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 2000, (6, 11), generator=g)
        mask = torch.ones_like(ids)
        mask[:3, 8:] = 0  # some padding, which every fit must ignore
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_dropped_layers_are_gone_and_reload(tmp_path, model_type):
    model = four_layers(model_type=model_type)
    plan = select(torch.rand(4, 4), torch.rand(4, 64), StructuredConfig(keep_heads=0.5, keep_ffn=0.5, ffn_multiple_of=8), [0, 2])
    assert [bool(p.get("dropped")) for p in plan] == [False, True, False, True]
    slice_model(model, plan)
    assert len(shape_plan(model)["layers"]) == 2
    save_model(model, _tok(tmp_path), tmp_path / "m", "classification")
    again = load_model(tmp_path / "m")
    ids = torch.randint(5, 2000, (2, 9))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, again(input_ids=ids).logits, atol=1e-6)
        hidden = again(input_ids=ids, output_hidden_states=True).hidden_states
    assert len(hidden) == 3  # embeddings + the 2 kept layers


def test_gradual_steps_drop_the_same_layers_once(tmp_path):
    cfg = StructuredConfig(keep_heads=0.25, keep_ffn=0.25, ffn_multiple_of=8, steps=2)
    steps = schedule(torch.rand(4, 4), torch.rand(4, 64), cfg, [1, 3])
    model, oneshot = four_layers(), four_layers()
    current = None
    for plan in steps:
        slice_model(model, plan if current is None else relative(current, plan))
        current = plan
    slice_model(oneshot, steps[-1])
    ids = torch.randint(5, 2000, (2, 7))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, oneshot(input_ids=ids).logits, atol=1e-6)


def test_choose_layers_keeps_the_layer_that_matters(monkeypatch):
    model = four_layers()
    with torch.no_grad():  # layer 2 writes large values into the stream; layers 0, 1, 3 barely touch it
        for i, layer in enumerate(model.bert.encoder.layer):
            layer.output.dense.weight.mul_(20.0 if i == 2 else 0.01)
            layer.attention.output.dense.weight.mul_(0.01)
    kept, log = choose_layers(model, feeds(), "classification", 0.25)
    assert kept == [2] and log[0]["kept"] == [2] and len(log) == 4  # every one-layer subset, closest first
    assert all(step["divergence"] >= 0 for step in log)
    monkeypatch.setattr(importance, "EVERY_SUBSET_MAX", 0)  # the greedy search, as on a deep model
    greedy, removals = choose_layers(model, feeds(), "classification", 0.25)
    assert greedy == [2] and len(removals) == 3 and 2 not in [step["removed"] for step in removals]


def test_the_depth_search_keeps_the_closest_of_every_subset():
    """Every subset is tried where there are few: the kept set is the one whose divergence from the full model is
    least, which one-layer-at-a-time removal can miss (it did on all-MiniLM-L6-v2 at 4 of 6 layers, docs/recovery.md)."""
    from edgesmith.importance import _skip_cost

    model = four_layers(seed=3)
    batches = feeds()
    with torch.no_grad():
        reference = [model(**b) for b in batches]
        cost = {s: _skip_cost(model, batches, "classification", reference, list(s)) for s in itertools.combinations(range(4), 2)}
    kept, log = choose_layers(model, batches, "classification", 2)
    assert tuple(kept) == min(cost, key=cost.get)
    assert [e["divergence"] for e in log] == sorted(cost.values())[:5]
    assert [importance.depth_search(*c) for c in ((4, 4), (6, 3), (12, 2), (12, 6))] == [
        "no depth pruning", "every subset", "every subset", "greedy search"]  # C(12, 6) = 924


def test_reconstruction_reduces_every_sublayer_error_and_is_reproduced_by_the_plan():
    teacher = four_layers(seed=1)
    plan = select(torch.rand(4, 4), torch.rand(4, 64), StructuredConfig(keep_heads=0.5, keep_ffn=0.25, ffn_multiple_of=8), [0, 1, 3])
    before_state = copy.deepcopy(teacher.state_dict())
    scaled, log = reconstruct(teacher, plan, feeds(8))
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before_state.items())  # the teacher is untouched
    assert len(log) == 6 and all(e["error_after"] <= e["error_before"] + 1e-9 for e in log)
    assert sum(e["error_after"] for e in log) < 0.99 * sum(e["error_before"] for e in log)
    assert all(len(p["head_scales"]) == len(p["heads"]) and len(p["ffn_scales"]) == len(p["ffn"]) for p in scaled if not p.get("dropped"))

    # the plan alone rebuilds the reconstructed student; with every layer kept, its last hidden state is closer to
    # the teacher's than the plain slice's on text it was not fitted on
    plan = select(torch.rand(4, 4), torch.rand(4, 64), StructuredConfig(keep_heads=0.5, keep_ffn=0.25, ffn_multiple_of=8))
    scaled, _ = reconstruct(teacher, plan, feeds(8))
    held_out = feeds(2, seed=7)
    plain, fitted = slice_model(copy.deepcopy(teacher), plan), slice_model(copy.deepcopy(teacher), scaled)
    last = lambda m, b: m(**b, output_hidden_states=True).hidden_states[-1]
    with torch.no_grad():
        ref = [last(teacher, b) for b in held_out]
        err = {name: sum(float(((last(m, b) - r) ** 2).mean()) for b, r in zip(held_out, ref))
               for name, m in (("plain", plain), ("fitted", fitted))}
    assert err["fitted"] < err["plain"]


def test_attention_loss_is_zero_for_the_teacher_itself_and_follows_the_head_map():
    teacher = four_layers(seed=2)
    plan = select(torch.rand(4, 4), torch.rand(4, 64), StructuredConfig(keep_heads=0.5, keep_ffn=0.5, ffn_multiple_of=8), [0, 2, 3])
    student = slice_model(copy.deepcopy(teacher), plan)
    batch = feeds(1)[0]
    s_cap, t_cap = Capture(student), Capture(teacher)
    with torch.no_grad():
        student(**batch), teacher(**batch)
    lmap = LayerMap.from_plan(plan)
    assert lmap.layers == (0, 2, 3)
    same = attention_loss(s_cap, t_cap, lmap, batch["attention_mask"], 8)
    assert float(same) == pytest.approx(0.0, abs=1e-5)  # the sliced student's kept heads are the teacher's heads
    wrong = LayerMap(lmap.layers, tuple(tuple(reversed(h)) for h in lmap.heads))
    assert float(attention_loss(s_cap, t_cap, wrong, batch["attention_mask"], 8)) > 1e-4
    s_cap.remove(), t_cap.remove()
    assert not s_cap.seen and all(not m._forward_hooks for m in student.modules())


def test_hidden_states_are_matched_through_the_layer_map():
    teacher = four_layers(seed=3)
    student = slice_model(copy.deepcopy(teacher), [{"heads": [0, 1, 2, 3], "ffn": list(range(64))} if i in (0, 1) else
                                                    {"heads": [], "ffn": [], "dropped": True} for i in range(4)])
    batch = feeds(1)[0]
    with torch.no_grad():
        s, t = student(**batch, output_hidden_states=True), teacher(**batch, output_hidden_states=True)
    cfg = DistillConfig(hidden_weight=1.0)
    mask = batch["attention_mask"]
    right = float(kd_loss(s, t, mask, "classification", cfg, layers=(0, 1)))  # the student's layers are the teacher's 0, 1
    wrong = float(kd_loss(s, t, mask, "classification", cfg, layers=(2, 3)))
    assert wrong > 100 * max(right, 1e-6)
    with pytest.raises(IndexError):  # a map longer than the student is a bug, not silently truncated
        kd_loss(s, t, batch["attention_mask"], "classification", cfg, layers=(0, 1, 2))


KEEP, DROP = {"heads": [0, 1, 2, 3], "ffn": list(range(64))}, {"heads": [], "ffn": [], "dropped": True}


def test_block_end_targets_map_each_kept_layer_to_the_end_of_its_block():
    plan = [KEEP, DROP, KEEP, KEEP]
    assert LayerMap.from_plan(plan).hidden_layers == (0, 2, 3)  # the default: the layer it was cut from
    block_end = LayerMap.from_plan(plan, "block_end")
    assert block_end.hidden_layers == (1, 2, 3) and block_end.layers == (0, 2, 3)  # attention still from its own layer
    assert LayerMap.from_plan([DROP, KEEP, KEEP, DROP], "block_end").hidden_layers == (1, 3)  # the last: the teacher's last
    assert LayerMap.from_plan([KEEP] * 4, "block_end").hidden_layers == (0, 1, 2, 3)  # nothing dropped: nothing moves


def test_the_distill_stage_matches_hidden_states_by_the_recipes_targets(tmp_path, monkeypatch):
    from edgesmith import training
    from edgesmith.modeling import load_tokenizer

    teacher = four_layers(seed=5)
    tokenizer = load_tokenizer(make_model_dir(tmp_path / "tok"))
    rows = [{"text": f"good movie w{i} not bad", "label": i % 2} for i in range(8)]
    items = training.tokenize(rows, tokenizer, 32, labels=False, task="classification")
    seen = []

    def recording(*args, **kwargs):
        seen.append(args[6])  # the teacher layers the student's hidden states are matched to
        return real(*args, **kwargs)

    real = training.kd_loss
    monkeypatch.setattr(training, "kd_loss", recording)
    for targets in ("kept", "block_end"):
        cfg = DistillConfig(max_steps=1, batch_size=8, hidden_targets=targets, attention_weight=1.0)
        stats = training.distill_gradual(copy.deepcopy(teacher), teacher, tokenizer, items, [[KEEP, DROP, DROP, KEEP]],
                                         tmp_path / targets, "classification", cfg)
        assert stats["steps"] == 1 and torch.isfinite(torch.tensor(stats["train_loss"]))
    assert seen == [(0, 3), (2, 3)]
    with pytest.raises(ValueError):
        DistillConfig(hidden_targets="middle")


def test_an_all_unlabelled_batch_adds_no_label_loss():
    teacher = four_layers(seed=4)
    batch = feeds(1)[0]
    with torch.no_grad():
        out = teacher(**batch, output_hidden_states=True)
    cfg = DistillConfig(label_weight=1.0)
    loss = kd_loss(out, out, batch["attention_mask"], "classification", cfg, torch.full((6,), -100))
    assert torch.isfinite(loss) and float(loss) == pytest.approx(0.0, abs=1e-6)


def test_recipe_keep_layers_and_reconstruct_are_validated():
    with pytest.raises(ValueError, match="reconstruct needs steps: 1"):
        StructuredConfig(reconstruct=True, steps=2)
    with pytest.raises(EdgesmithError, match="keep_layers: 8 is more than the model's 6"):
        StructuredConfig(keep_layers=8).check_keep(6, 12, 1536)
    StructuredConfig(keep_layers=4, keep_heads=1.0, keep_ffn=1.0).check_keep(6, 12, 1536)  # depth alone is pruning
    StructuredConfig(layers=[0, 4, 5], keep_heads=1.0, keep_ffn=1.0).check_keep(6, 12, 1536)
    assert StructuredConfig(layers=[5, 0, 4]).layers == (0, 4, 5)  # a set of layers, kept in the teacher's order
    assert "layers" not in StructuredConfig().model_dump()  # unset, it leaves existing cache keys as they were


def _run_tiny(tmp_path: Path, tiny_data: Path, tiny_profiles: Path, structured: str, distill: str) -> Path:
    """A whole run of a tiny 2-layer BERT with these prune.structured and distill settings; its run folder."""
    from edgesmith.cli import main

    model = make_model_dir(tmp_path / "teacher")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: depth\nteacher: {{model: {model}}}\ndata: {{source: {tiny_data}}}\n"
                      f"prune: {{structured: {{{structured}}}}}\ndistill: {{{distill}}}\nbench: {{iterations: 5, warmup: 1}}\n"
                      f"profiles: [{tiny_profiles / 'tiny-ort.yaml'}]\n")
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    return out


def _read(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_prune_stage_writes_depth_and_scales(tmp_path, tiny_data, tiny_profiles):
    out = _run_tiny(tmp_path, tiny_data, tiny_profiles, "keep_layers: 0.5, keep_heads: 0.5, keep_ffn: 0.5, ffn_multiple_of: 8, "
                    "reconstruct: true", "max_steps: 2, attention_weight: 1.0")
    facts = _read(out / "02-prune-structured" / "manifest.json")["facts"]
    assert len(facts["layers_kept"]) == 1 and facts["layers_total"] == 2 and facts["layers_chosen_by"] == "every subset"
    assert facts["reconstruction"] and all(e["error_after"] <= e["error_before"] + 1e-9 for e in facts["reconstruction"])
    assert len(_read(out / "04-shrink-structured" / "model" / "shape_plan.json")["layers"]) == 1


def test_prune_keeps_the_layers_the_recipe_lists(tmp_path, tiny_data, tiny_profiles):
    """prune.structured.layers replaces the measured depth search: the plan drops exactly the unlisted layers."""
    out = _run_tiny(tmp_path, tiny_data, tiny_profiles, "layers: [1], keep_heads: 1.0, keep_ffn: 1.0", "max_steps: 1")
    facts = _read(out / "02-prune-structured" / "manifest.json")["facts"]
    assert facts["layers_kept"] == [1] and facts["layers_chosen_by"] == "recipe" and facts["depth_search_log"] == []
    plan = _read(out / "02-prune-structured" / "plan.json")["layers"]
    assert [bool(p.get("dropped")) for p in plan] == [True, False]
    assert len(_read(out / "04-shrink-structured" / "model" / "shape_plan.json")["layers"]) == 1


def _tok(tmp_path):
    from transformers import BertTokenizerFast

    from conftest import write_vocab

    return BertTokenizerFast(vocab_file=str(write_vocab(tmp_path / "tok")))


def test_hidden_targets_reach_only_the_branch_that_drops_layers():
    """Setting distill.hidden_targets must not re-distil the sparse branch, whose layer map is the identity."""
    from edgesmith.stages.distill import DistillStageConfig

    def key(branch, **distill):
        return DistillStageConfig.of(branch, DistillConfig(**distill), "classification", 32, None).canonical_json()

    assert key("sparse", hidden_targets="block_end") == key("sparse")
    assert key("structured", hidden_targets="block_end") != key("structured")
    assert DistillStageConfig.of("structured", DistillConfig(hidden_targets="block_end"), "classification", 32, None).distill.hidden_targets == "block_end"
