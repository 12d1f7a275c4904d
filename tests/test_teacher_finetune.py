"""Teacher fine-tuning of an untrained head: automatic defaults that follow the data and model size, the best
weights on a validation slice of the training rows kept (not the last), nothing left on disk, and the teacher's
accuracy reported against the eval split's majority-class rate."""

import json
import math
from collections import Counter

import pytest
import torch

from conftest import make_model_dir
from edgesmith import stages  # noqa: F401
from edgesmith.artifacts import run_stage
from edgesmith.config import DataConfig, TeacherConfig
from edgesmith.finetune import MAX_EPOCHS, STEP_BUDGET, FinetuneConfig, _best_weights_class, hold_out, schedule
from edgesmith.stages.data import DataStageConfig
from edgesmith.stages.notes import against_majority
from edgesmith.stages.teacher import TeacherStageConfig
from edgesmith.tasks import get as get_task

MINILM, BERT_BASE = 22_713_216, 109_482_240


def test_epochs_follow_the_data_size_and_lr_the_model_size():
    sizes = (3_000, 20_000, 60_000)
    small, mid, large = (schedule(n, 32, MINILM) for n in sizes)
    assert small.epochs == MAX_EPOCHS and mid.epochs == 2 and large.epochs == 1
    for n, s in zip(sizes, (small, mid, large)):
        assert s.epochs * math.ceil(n / 32) <= STEP_BUDGET or s.epochs == 1
        assert s.lr == 1e-4 and s.warmup_ratio == pytest.approx(0.1)
        assert s.eval_every <= 1 / 4  # a 1-epoch run is still checked a few times
    assert schedule(3_000, 32, BERT_BASE).lr == 3e-5 and schedule(3_000, 32, 340_000_000).lr == 2e-5
    assert small.eval_every == pytest.approx(1 / MAX_EPOCHS)  # once an epoch


def test_values_the_recipe_sets_are_kept():
    s = schedule(3_000, 32, MINILM, epochs=3, lr=2e-5)
    assert (s.epochs, s.lr) == (3, 2e-5)


def test_validation_slice_comes_from_the_training_rows_only():
    rows = [{"text": [f"s{i}"], "label": i % 2} for i in range(100)]
    train, val = hold_out(rows, seed=0)
    assert len(val) == 10 and len(train) == 90
    assert sorted(r["text"][0] for r in train + val) == sorted(r["text"][0] for r in rows)
    assert hold_out(rows, seed=0) == (train, val)  # reproducible
    assert len(hold_out([{"text": ["x"], "label": 0}] * 50_000, seed=0)[1]) == 2000  # capped


def _evaluate(callback, model, step, accuracy):
    from transformers import TrainerControl, TrainerState

    state = TrainerState(global_step=step, epoch=float(step), max_steps=3)
    callback.on_evaluate(None, state, TrainerControl(), metrics={"eval_accuracy": accuracy}, model=model)


def test_the_best_weights_are_restored_not_the_last():
    model = torch.nn.Linear(2, 2)
    best = _best_weights_class()()
    weights = []
    for step, accuracy in ((1, 60.0), (2, 80.0), (3, 70.0)):
        with torch.no_grad():
            model.weight.fill_(step)
        weights.append(model.weight.detach().clone())
        _evaluate(best, model, step, accuracy)
    best.on_train_end(None, None, None, model=model)
    assert torch.equal(model.weight, weights[1])  # step 2, the best, not step 3, the last
    assert best.best == {"step": 2, "epoch": 2.0, "accuracy": 80.0}
    assert [e["accuracy"] for e in best.history] == [60.0, 80.0, 70.0]


def test_the_last_step_is_always_evaluated():
    from transformers import TrainerControl, TrainerState

    control = _best_weights_class()().on_step_end(None, TrainerState(global_step=7, max_steps=7), TrainerControl())
    assert control.should_evaluate


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("ft")
    encoder = make_model_dir(root / "enc", task="embedding")
    data = run_stage("data", DataStageConfig(data=DataConfig(source=str(tiny_data), max_length=32), task="classification",
                                             source_digest="x"), {}, root / "00-data", False, print)
    cfg = TeacherStageConfig(teacher=TeacherConfig(model=str(encoder)), task="classification", max_length=32,
                             train=FinetuneConfig(batch_size=16), model_digest="y")
    return root, run_stage("teacher", cfg, {"data": data}, root / "01-teacher", False, print)


def test_a_bare_encoder_gets_the_automatic_schedule_and_its_best_evaluation(finetuned):
    _, teacher = finetuned
    ft = teacher.facts["finetune"]
    assert ft["auto"] == {"epochs": True, "lr": True} and ft["epochs"] == MAX_EPOCHS and ft["lr"] == 1e-4
    assert (ft["train_rows"], ft["validation_rows"]) == (86, 10) and ft["steps"] == 60  # 6 steps an epoch
    assert len(ft["evaluations"]) == MAX_EPOCHS and ft["evaluations"][-1]["step"] == 60
    assert ft["best"]["accuracy"] == max(e["accuracy"] for e in ft["evaluations"])


def test_no_checkpoint_or_trainer_folder_is_left_behind(finetuned):
    root, _ = finetuned
    assert sorted(p.name for p in (root / "01-teacher").iterdir()) == ["eval_outputs.npy", "manifest.json", "model"]


def test_the_majority_rate_is_recorded_for_the_eval_split(finetuned):
    root, teacher = finetuned
    labels = [json.loads(line)["label"] for line in (root / "00-data" / "eval.jsonl").read_text().splitlines()]
    assert teacher.facts["majority_rate"] == pytest.approx(max(Counter(labels).values()) / len(labels) * 100)
    floor = get_task("classification").floor
    assert floor([{"label": 0}, {"label": 1}, {"label": 1}, {"label": None}])["majority_rate"] == pytest.approx(200 / 3)
    assert floor([{"label": None}])["majority_rate"] is None


def test_the_report_says_plainly_when_the_teacher_learned_little():
    low = against_majority({"majority_rate": 50.9, "quality": {"metric": 53.0}})
    assert low["majority_rate"] == 50.9 and "learned little" in low["teacher_vs_majority"]
    good = against_majority({"majority_rate": 50.9, "quality": {"metric": 85.0}})
    assert "learned little" not in good["teacher_vs_majority"] and "+34.10 points" in good["teacher_vs_majority"]
    assert against_majority({"majority_rate": None, "quality": {"metric": 85.0}}) == {}
