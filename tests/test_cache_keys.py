"""Precise cache keys: a stage's key holds only what it reads, and a rerun says which input or field changed."""

from __future__ import annotations

import json
import re

import pytest

import edgesmith

from conftest import make_model_dir
from edgesmith.artifacts import Artifact, run_stage
from edgesmith.cli import main
from edgesmith.config import Frozen, Recipe, load_recipe
from edgesmith.registry import STAGES, Stage
from edgesmith.stages.teacher import trains

RECIPE = """
name: keys
task: classification
teacher: {{model: {model}}}
data: {{source: {data}, max_length: 32{augment}{unlabeled}}}
prune:
  branches: [structured, sparse]
  structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}
  sparse: {{sparsity: {sparsity}}}
distill: {{max_steps: 2, batch_size: {batch}, seed: {seed}, temperature: {temperature}}}
export: {{formats: [onnx]}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5}}
profiles: [{profile}]
"""


@pytest.fixture(scope="module")
def keys_run(tmp_path_factory, tiny_bert, tiny_data):
    """One run folder reused by every step; `rerun(**recipe values)` runs the recipe again and returns the log."""
    root = tmp_path_factory.mktemp("keys")
    profile = root / "one-ort.yaml"
    recipe, out = root / "keys.yaml", root / "out"

    def rerun(capsys, *args: str, temperature: float = 2.0, sparsity: float = 0.7, p90: int = 1000,
              augment: str = "", unlabeled: str = "", seed: int = 0, batch: int = 8, dry: bool = False) -> dict[str, str]:
        profile.write_text("description: one ORT candidate\nruntimes: {onnxruntime: [int8-dynamic]}\nthreads: 1\nseq_len: 16\n"
                           f"budgets: {{p90_ms: {p90}}}\n")
        recipe.write_text(RECIPE.format(model=tiny_bert, data=tiny_data, profile=profile, temperature=temperature,
                                        seed=seed, batch=batch,
                                        sparsity=sparsity, augment=augment and f", augment: {augment}",
                                        unlabeled=unlabeled and f", unlabeled: {unlabeled}"))
        if dry:  # the dry run's decisions instead: folder -> "skip" or "run"
            return {s.folder: s.action for s in edgesmith.plan(recipe, out=out).stages}
        capsys.readouterr()
        assert main(["run", str(recipe), "--out", str(out), *args]) == 0
        lines = re.findall(r"\[([0-9]{2}-[\w-]+)\] (skipped|running.*)", capsys.readouterr().err)
        return {folder: what for folder, what in lines}

    rerun.out = out  # type: ignore[attr-defined]
    return rerun


def test_a_distillation_edit_skips_data_teacher_and_pruning(keys_run, capsys):
    first = keys_run(capsys)
    assert all(what == "running (no previous output)" for what in first.values()), first
    log = keys_run(capsys, temperature=3.0)
    for folder in ("00-data", "01-teacher", "02-prune-structured", "02-prune-sparse", "05-export-unpruned"):
        assert log[folder] == "skipped", (folder, log[folder])
    for branch in ("structured", "sparse"):
        assert log[f"03-distill-{branch}"] == "running (config field distill.temperature changed (2.0 -> 3.0))"
    assert "input distill changed" in log["04-shrink-structured"]


def test_a_sparse_edit_skips_the_structured_branch_and_a_forced_stage_says_so(keys_run, capsys):
    log = keys_run(capsys, "--force", "data", temperature=3.0, sparsity=0.6, p90=900)
    assert log["00-data"] == "running (forced)"
    assert log["01-teacher"] == "skipped"  # the forced data stage wrote the same files: nothing downstream of it reruns
    assert log["02-prune-structured"] == "skipped" and log["03-distill-structured"] == "skipped"
    assert log["02-prune-sparse"] == "running (config field sparse.sparsity changed (0.7 -> 0.6))"
    assert log["03-distill-sparse"] == "running (input prune changed)"
    assert log["06-quantize-structured"] == "skipped"  # a profile's budget is the bundle's business
    assert "profile.budgets.p90_ms (1000.0 -> 900.0)" in log["08-bundle-one-ort"]


def test_an_augmentation_edit_reruns_distillation_not_the_teacher(keys_run, capsys):
    log = keys_run(capsys, temperature=3.0, sparsity=0.6, p90=900, augment="{copies: 1}")
    assert log["00-data"] == log["01-teacher"] == log["02-prune-structured"] == "skipped"
    assert log["03-distill-structured"].startswith("running (config field augment changed (null -> {")


def test_unlabeled_text_reruns_distillation_not_the_teacher_pruning_or_the_baseline(keys_run, capsys, tmp_path):
    more = tmp_path / "more.txt"
    more.write_text("a quiet film\nthe plot drags\n")
    edited = dict(temperature=3.0, sparsity=0.6, p90=900, augment="{copies: 1}", unlabeled=str(more))
    planned = keys_run(capsys, dry=True, **edited)  # the dry run had said the teacher and everything after it would rerun
    log = keys_run(capsys, **edited)
    assert log["00-data"].startswith("running (config field") and "data.unlabeled" in log["00-data"], log["00-data"]
    for folder in ("01-teacher", "02-prune-structured", "02-prune-sparse", "05-export-unpruned",
                   "06-quantize-unpruned"):
        assert log[folder] == "skipped", (folder, log[folder])
    assert {f for f, action in planned.items() if action == "skip"} == {f for f, what in log.items() if what == "skipped"}
    assert log["03-distill-structured"] == "running (input data changed)"
    more.write_text("a quiet film\nthe plot drags\nwarm and funny\n")  # the same path, new content
    log = keys_run(capsys, **edited)
    assert log["00-data"].startswith("running") and log["01-teacher"] == "skipped"
    assert log["03-distill-sparse"] == "running (input data changed)"


def test_a_budget_edit_re_picks_the_bundle_without_re_measuring(keys_run, capsys, tmp_path):
    more = tmp_path / "more.txt"
    more.write_text("a quiet film\nthe plot drags\nwarm and funny\n")
    edited = dict(temperature=3.0, sparsity=0.6, augment="{copies: 1}", unlabeled=str(more))
    keys_run(capsys, p90=900, **edited)
    log = keys_run(capsys, p90=800, **edited)
    assert log["07-bench-one-ort"] == "skipped"
    assert log["08-bundle-one-ort"] == "running (config field profile.budgets.p90_ms changed (900.0 -> 800.0))"


def test_unlabeled_rows_edited_behind_the_cache_are_rebuilt_and_nothing_downstream_reruns(keys_run, capsys, tmp_path):
    more = tmp_path / "more.txt"
    more.write_text("a quiet film\nthe plot drags\nwarm and funny\n")
    edited = dict(temperature=3.0, sparsity=0.6, p90=800, augment="{copies: 1}", unlabeled=str(more))
    keys_run(capsys, **edited)
    (keys_run.out / "00-data" / "unlabeled.jsonl").write_text('{"text": ["planted"], "label": null}\n')
    log = keys_run(capsys, **edited)
    assert log["00-data"] == "running (unlabeled.jsonl changed since it was built)"
    for folder in ("01-teacher", "03-distill-structured", "03-distill-sparse"):  # rebuilt from the source: the same rows
        assert log[folder] == "skipped", (folder, log[folder])
    assert "planted" not in (keys_run.out / "00-data" / "unlabeled.jsonl").read_text()


def test_a_seed_or_batch_edit_reruns_distillation_not_a_teacher_that_trains_nothing(keys_run, capsys, tmp_path):
    """The tiny teacher's head is trained: its stage fine-tunes nothing, so distill.seed and distill.batch_size are
    not in its key (they were, and a new seed reran teacher, pruning and the unpruned baseline)."""
    more = tmp_path / "more.txt"
    more.write_text("a quiet film\nthe plot drags\nwarm and funny\n")
    edited = dict(temperature=3.0, sparsity=0.6, p90=800, augment="{copies: 1}", unlabeled=str(more))
    keys_run(capsys, **edited)
    log = keys_run(capsys, seed=1, batch=4, **edited)
    for folder in ("00-data", "01-teacher", "02-prune-structured", "02-prune-sparse", "05-export-unpruned",
                   "06-quantize-unpruned"):
        assert log[folder] == "skipped", (folder, log[folder])
    assert "distill.seed (0 -> 1)" in log["03-distill-structured"], log["03-distill-structured"]


def test_only_a_teacher_that_fine_tunes_keeps_the_training_settings_in_its_key(tiny_bert, tiny_data, tmp_path):
    bare = make_model_dir(tmp_path / "bare", task="embedding")

    def recipe(model: Path, task: str = "classification", reinit: bool = False) -> Recipe:
        return load_recipe({"name": "t", "task": task, "teacher": {"model": str(model), "reinit_head": reinit},
                            "data": {"source": str(tiny_data)}}, {})

    assert not trains(recipe(tiny_bert))  # a trained head
    assert not trains(recipe(bare, task="embedding"))  # nothing to train for a sentence encoder
    assert trains(recipe(tiny_bert, reinit=True))
    assert trains(recipe(bare))  # a bare encoder under a classification task gets a new head


class Probe(Frozen):
    level: int


def test_the_log_names_the_stage_version_and_each_changed_input(tmp_path, monkeypatch):
    monkeypatch.setitem(STAGES, "probe", Stage("probe", lambda cfg, inputs, out: {}, Probe, 1))
    log: list[str] = []
    parent = Artifact(tmp_path, "aaaa", {})
    run_stage("probe", Probe(level=1), {"up": parent}, tmp_path / "p", False, log.append)
    run_stage("probe", Probe(level=1), {"up": parent}, tmp_path / "p", False, log.append)
    run_stage("probe", Probe(level=1), {"up": Artifact(tmp_path, "bbbb", {})}, tmp_path / "p", False, log.append)
    monkeypatch.setitem(STAGES, "probe", Stage("probe", lambda cfg, inputs, out: {}, Probe, 2))
    run_stage("probe", Probe(level=2), {"up": parent}, tmp_path / "p", False, log.append)
    running = [line for line in log if "running" in line]
    assert running == ["[p] running (no previous output)", "[p] running (input up changed)",
                       "[p] running (stage version changed (1 -> 2); input up changed; "
                       "config field level changed (1 -> 2))"]
    assert "[p] skipped" in log[2]


def test_a_json_string_field_names_the_fields_inside_it_that_changed():
    """The bundle's key holds the recipe as canonical JSON: a rerun names the recipe field, not two long strings."""
    from edgesmith.artifacts import changed_leaves

    old, new = '{"distill":{"epochs":2.0},"name":"q"}', '{"distill":{"epochs":3.0},"name":"q"}'
    assert changed_leaves({"recipe_json": old}, {"recipe_json": new}) == ["recipe_json.distill.epochs (2.0 -> 3.0)"]
    assert changed_leaves({"note": "{not json"}, {"note": "{still not"}) == ['note ("{not json" -> "{still not")']


def test_every_field_added_after_caches_were_written_stays_out_of_the_key_at_its_old_value_and_in_it_otherwise():
    """Frozen.added_defaults: a recipe that does not set a later field keeps its cache keys (no cached stage reruns
    on upgrade); one that sets it gets a key of its own."""
    from edgesmith import stages  # noqa: F401  (the stage configs are Frozen subclasses too)
    from edgesmith.config import DataConfig, DistillConfig, StructuredConfig
    from edgesmith.stages.prune import PruneStageConfig

    def subclasses(cls):
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    # fields a recipe sets (a computed one, DataStageConfig.unlabeled_rule, follows the field it is computed from)
    added = {cls: fields for cls in subclasses(Frozen)
             if (fields := {k: v for k, v in cls.added_defaults.items() if k not in cls.model_computed_fields})}
    assert {DataConfig, StructuredConfig, DistillConfig, PruneStageConfig} <= set(added)
    set_to = {"min_words": 5, "fit_speedup": 2.0, "layers": (0, 2), "teacher_precision": "bf16", "fit_longest": 64,
              "hidden_targets": "block_end"}
    for cls, fields in added.items():
        base = {DataConfig: {"source": "x"}, PruneStageConfig: {"branch": "structured", "structured": StructuredConfig(),
                                                               "task": "classification", "max_length": 32}}.get(cls, {})
        for name, old in fields.items():
            assert name not in json.loads(cls(**base, **{name: old}).canonical_json()), (cls, name)
            extra = {"fit_profile": "mobile-cpu"} if name == "fit_speedup" else {}
            assert name in json.loads(cls(**base, **extra, **{name: set_to[name]}).canonical_json()), (cls, name)


def test_the_data_digest_covers_the_files_the_loader_reads_and_nothing_else_in_the_folder(tmp_path, tiny_data):
    """Seen by a red-team probe: with --out inside the data folder, every run re-hashed the whole run folder and its
    own new files made the data stage rerun each time."""
    import shutil

    from edgesmith.runner import source_digest

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = source_digest(str(data))
    (data / "run" / "01-teacher").mkdir(parents=True)
    (data / "run" / "01-teacher" / "model.safetensors").write_bytes(b"weights")
    (data / "notes.txt").write_text("mine")
    assert source_digest(str(data)) == before
    (data / "dev.tsv").write_text((data / "dev.tsv").read_text() + "one more film\t1\n")
    assert source_digest(str(data)) != before  # an edited held-out file reruns the graph
    assert source_digest(str(data / "train.tsv")) != source_digest(str(data)) and source_digest("glue/sst2") == "glue/sst2"


def test_the_default_data_and_distill_keys_are_the_ones_cached_runs_were_written_with():
    """Pinned (the same at dc5a510, before Frozen.added_defaults): a change here reruns every user's cached data or
    distillation stage, so it must be deliberate."""
    from edgesmith.config import DataConfig, DistillConfig

    assert DistillConfig().canonical_json() == (
        '{"attention_weight":0.0,"batch_size":32,"epochs":1.0,"hidden_weight":1.0,"label_weight":0.0,"learning_rate":0.0001,'
        '"max_steps":null,"seed":0,"temperature":2.0,"warmup_ratio":0.06}')
    assert DataConfig(source="x").canonical_json() == (
        '{"augment":null,"eval_fraction":0.1,"eval_source":null,"label_column":"label","max_eval_samples":null,"max_length":128,'
        '"max_train_samples":null,"score_column":"score","source":"x","text_columns":null,"unlabeled":null}')
