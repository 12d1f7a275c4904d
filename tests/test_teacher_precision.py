"""distill.teacher_precision: a bf16 teacher forward only where bf16 is native, fp32 targets either way, and the
cache keys of recipes that leave it at fp32 unchanged."""

import json

import pytest
import torch

from conftest import make_model_dir
from edgesmith import training
from edgesmith.attention_kd import Capture, LayerMap, attention_loss
from edgesmith.config import DistillConfig
from edgesmith.modeling import load_tokenizer
from edgesmith.training import as_fp32, distill, teacher_context, tokenize, training_args

# DistillConfig().canonical_json() before teacher_precision existed: every distill cache key was made from it
BEFORE_THE_FIELD = ('{"attention_weight":0.0,"batch_size":32,"epochs":1.0,"hidden_weight":1.0,"label_weight":0.0,'
                    '"learning_rate":0.0001,"max_steps":null,"seed":0,"temperature":2.0,"warmup_ratio":0.06}')


def classifier(folder):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="sdpa")


def test_fp32_keeps_the_cache_keys_written_before_the_field():
    assert DistillConfig().canonical_json() == BEFORE_THE_FIELD
    assert DistillConfig(teacher_precision="fp32").canonical_json() == BEFORE_THE_FIELD
    bf16 = DistillConfig(teacher_precision="bf16")
    assert json.loads(bf16.canonical_json())["teacher_precision"] == "bf16"
    assert DistillConfig.model_validate(json.loads(bf16.canonical_json())) == bf16  # a manifest's config reloads


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="teacher_precision"):
        DistillConfig(teacher_precision="fp16")


@pytest.mark.parametrize(("avx512_bf16", "amx", "native"), [(False, False, False), (True, False, True), (False, True, True)])
def test_native_bf16_reads_the_cpus_own_flags(monkeypatch, avx512_bf16, amx, native):
    """The real check (the tests below stub it): bf16 counts as native on a CPU with AVX512-BF16 or AMX tiles, not
    where oneDNN would only emulate it."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert training.native_bf16(torch.device("cpu")) is native


def test_bf16_only_where_the_device_runs_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(training, "native_bf16", lambda device: False)
    assert teacher_context("bf16", cpu)[1] == "fp32"
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    assert teacher_context("bf16", cpu)[1] == "bf16"
    assert teacher_context("fp32", cpu)[1] == "fp32"


def test_bf16_targets_are_fp32_tensors_close_to_the_fp32_teacher(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "native_bf16", lambda device: True)  # autocast runs (emulated) on any CPU
    teacher = classifier(make_model_dir(tmp_path / "t", seed=5)).eval()
    ids = torch.randint(5, 2000, (4, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[:2, 9:] = 0
    capture = Capture(teacher)
    with torch.no_grad():
        ref = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        ref_seen = dict(capture.seen)
        context, used = teacher_context("bf16", torch.device("cpu"))
        with context:
            out = as_fp32(teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True))
    assert used == "bf16" and capture.seen[(0, "query")].dtype == torch.bfloat16  # the forward really ran in bf16
    assert out.logits.dtype == torch.float32 and all(h.dtype == torch.float32 for h in out.hidden_states)
    assert not torch.equal(out.logits, ref.logits)
    assert torch.allclose(out.logits, ref.logits, atol=0.05)
    # the attention relations of bf16 projections are computed in fp32, and land near the fp32 teacher's
    student = Capture.__new__(Capture)
    student.seen = ref_seen
    lmap = LayerMap.identity(teacher.config)
    near = float(attention_loss(student, capture, lmap, mask, teacher.config.hidden_size // teacher.config.num_attention_heads))
    assert 0.0 <= near < 1e-3
    capture.remove()


def test_a_bf16_teacher_distils_and_the_stage_says_which_precision_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    folder = make_model_dir(tmp_path / "t", seed=6)
    teacher, student = classifier(folder), classifier(folder)
    tokenizer = load_tokenizer(folder)
    rows = [{"text": f"good movie w{i} not bad", "label": i % 2} for i in range(16)]
    items = tokenize(rows, tokenizer, 32, labels=False, task="classification")
    cfg = DistillConfig(max_steps=3, batch_size=8, attention_weight=1.0, teacher_precision="bf16")
    stats = distill(student, teacher, tokenizer, items, training_args(tmp_path, cfg, 1, 1e-4), "classification", cfg)
    assert stats["teacher_precision"] == "bf16" and stats["steps"] == 3
    assert torch.isfinite(torch.tensor(stats["train_loss"]))
    monkeypatch.setattr(training, "native_bf16", lambda device: False)
    stats = distill(student, teacher, tokenizer, items, training_args(tmp_path, cfg, 1, 1e-4), "classification", cfg)
    assert stats["teacher_precision"] == "fp32"
