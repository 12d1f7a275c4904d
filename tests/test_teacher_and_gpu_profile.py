"""Stage-level checks: an untrained head is fine-tuned first; a profile whose hardware is absent is not measured."""

import json

from conftest import make_model_dir
from edgesmith import stages  # noqa: F401
from edgesmith.artifacts import run_stage
from edgesmith.config import DataConfig, DistillConfig, TeacherConfig
from edgesmith.stages.data import DataStageConfig
from edgesmith.stages.teacher import TeacherStageConfig


def test_bare_encoder_gets_its_head_fine_tuned(tmp_path, tiny_data):
    encoder = make_model_dir(tmp_path / "enc", task="embedding")
    data = run_stage("data", DataStageConfig(data=DataConfig(source=str(tiny_data), max_length=32), task="classification",
                                             source_digest="x"), {}, tmp_path / "00-data", False, print)
    cfg = TeacherStageConfig(teacher=TeacherConfig(model=str(encoder), finetune_epochs=1), task="classification", max_length=32,
                             train=DistillConfig(batch_size=16), model_digest="y")
    teacher = run_stage("teacher", cfg, {"data": data}, tmp_path / "01-teacher", False, print)
    assert teacher.facts["head_trained"] is False
    assert teacher.facts["finetune"]["steps"] == 6  # 96 rows / batch 16, one epoch
    assert (tmp_path / "01-teacher" / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "01-teacher" / "trainer").exists()


def test_gpu_profile_is_marked_not_measured_without_cuda():
    from edgesmith import profiles
    from edgesmith.latency import effective_threads
    from edgesmith.stages.bench import hardware_gap

    gap = hardware_gap(profiles.load("server-gpu"))
    assert gap is not None and "CUDA" in gap
    assert hardware_gap(profiles.load("mobile-cpu")) is None
    threads, note = effective_threads(profiles.load("mobile-cpu"))
    assert threads >= 1 and (note is None) == (threads == 4)
    assert json.dumps(gap)


def test_bundle_choice_prefers_speed_within_budget_and_accuracy_outside_it():
    from edgesmith.stages.bundle import choose

    def row(name, metric, p50):
        return {"branch": "structured", "artifact": name, "bytes": 1, "quality": {"metric": metric}, "latency": {"p50_ms": p50}}

    rows = [row("teacher", 90, 20) | {"branch": "teacher"}, row("fp32", 89.5, 9), row("int8", 89.0, 3), row("int8-b", 85.0, 1)]
    assert choose(rows, 90, 1.5) == (rows[2], True)
    assert choose(rows, 90, 0.6) == (rows[1], True)
    tie = [rows[0], row("fp32", 87.5, 8), row("int8", 87.5, 2.4), row("worse", 86, 1)]
    assert choose(tie, 90, 1.0) == (tie[2], False)
