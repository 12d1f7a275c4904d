"""Latency-budget targeting: the keep ratio comes from latency measured on this machine, not from a guess."""

import pytest

from edgesmith import profiles
from edgesmith import stages  # noqa: F401
from edgesmith.artifacts import run_stage
from edgesmith.config import DataConfig, Profile, StructuredConfig, TeacherConfig
from edgesmith.errors import EdgesmithError
from edgesmith.finetune import FinetuneConfig
from edgesmith.stages.data import DataStageConfig
from edgesmith.stages.prune import PruneStageConfig
from edgesmith.stages.teacher import TeacherStageConfig


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_bert, tiny_data):
    root = tmp_path_factory.mktemp("fit")
    data = run_stage("data", DataStageConfig(data=DataConfig(source=str(tiny_data), max_length=32), task="classification",
                                             source_digest="x"), {}, root / "00-data", False, print)
    cfg = TeacherStageConfig(teacher=TeacherConfig(model=str(tiny_bert)), task="classification", max_length=32,
                             train=FinetuneConfig(), model_digest="y")
    return root, {"data": data, "teacher": run_stage("teacher", cfg, {"data": data}, root / "01-teacher", False, print)}


def _prune(root, inputs, profile, name):
    cfg = PruneStageConfig(branch="structured", structured=StructuredConfig(importance_samples=16, ffn_multiple_of=8),
                           task="classification", max_length=32, fit=profile)
    return run_stage("prune", cfg, inputs, root / name, False, print)


def test_a_generous_budget_keeps_the_most_structure(teacher):
    root, inputs = teacher
    profile = Profile(name="roomy", description="d", runtimes={"onnxruntime": ("int8-dynamic",)}, threads=1, seq_len=16,
                      budgets={"p90_ms": 10_000})
    fit = _prune(root, inputs, profile, "02-roomy").facts["fit"]
    assert fit["met"] and fit["keep"] == 0.9 and len(fit["curve"]) == 1
    assert 0 < fit["curve"][0]["p50_ms"] <= fit["curve"][0]["p90_ms"] <= 10_000


def test_a_profile_without_a_latency_budget_is_refused(teacher):
    root, inputs = teacher
    with pytest.raises(EdgesmithError, match="needs a CPU profile with budgets.p90_ms"):
        _prune(root, inputs, profiles.load("server-gpu"), "02-gpu")
    assert not (root / "02-gpu").exists()
