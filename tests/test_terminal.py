"""What a run shows: one line per stage and the bundles table by default, with every library's output in the stage's
log file (the quickstart's graph on a tiny model, in a subprocess so that C++ output on fds 1/2 is caught too);
`-v` streams it; a crashing stage names its log; `--dry-run` plans without writing; the Python API."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import edgesmith
from edgesmith import terminal
from edgesmith.artifacts import MANIFEST
from edgesmith.cli import main
from edgesmith.errors import EdgesmithError

# The quickstart's graph (both branches, two CPU profiles: 19 stages) on the tiny model
RECIPE = """name: tiny
task: classification
teacher: {{model: '{model}'}}
data: {{source: '{data}', max_length: 32}}
prune:
  branches: [structured, sparse]
  structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}
  sparse: {{sparsity: 0.5}}
distill: {{max_steps: 2, batch_size: 8, temperature: {temperature}}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5}}
profiles: ['{ort}', '{ov}']
"""
NOISE = re.compile(r"warn|failed to infer|Traceback", re.IGNORECASE)
QUANTIZER_WARNING = "Please consider to run pre-processing before quantization"  # ONNX Runtime, through `logging`


def edgesmith_cli(*args: object) -> subprocess.CompletedProcess[str]:
    """The console entry point in a fresh process: stdout and stderr as a terminal would get them (fd level)."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-P", "-m", "edgesmith.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=900)


def write_recipe(folder: Path, model: Path, data: Path, profiles: Path, temperature: float = 2.0) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(RECIPE.format(model=model, data=data, temperature=temperature, ort=profiles / "tiny-ort.yaml", ov=profiles / "tiny-ov.yaml"))
    return path


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory, tiny_bert, tiny_data, tiny_profiles):
    root = tmp_path_factory.mktemp("terminal")
    recipe, out = write_recipe(root, tiny_bert, tiny_data, tiny_profiles), root / "run"
    done = edgesmith_cli("run", recipe, "--out", out)
    assert done.returncode == 0, done.stderr
    return recipe, out, done


def test_default_output_is_a_line_per_stage_and_the_bundles_table(quiet_run):
    _, out, done = quiet_run
    stages = sorted(p.parent.name for p in out.glob(f"*/{MANIFEST}"))
    lines = (done.stdout + done.stderr).splitlines()
    assert len(stages) == 19 and len(lines) <= 40, "\n".join(lines)
    assert sorted(re.findall(r"\] \[(\d\d-[\w-]+)\] running \(no previous output\)$", done.stderr, re.M)) == stages
    assert len(done.stderr.splitlines()) == len(stages)  # nothing else on stderr
    assert [line for line in lines if NOISE.search(line)] == []
    table = done.stdout.splitlines()
    assert table[0].split()[:3] == ["profile", "bundle", "accuracy"] and table[1].startswith("tiny-ort ") and table[2].startswith("tiny-ov ")
    assert f"report: {out / 'report.html'}" in done.stdout


def test_library_output_lands_in_each_stage_log_outside_the_hashes(quiet_run):
    _, out, _ = quiet_run
    quantize = (out / "06-quantize-structured" / terminal.STAGE_LOG).read_text()
    # ONNX Runtime's dynamic quantizer warns through `logging` (output written straight to fd 2 by C++ code is
    # covered by test_a_crashing_stage_names_its_log_and_restores_the_descriptors)
    assert QUANTIZER_WARNING in quantize
    assert "train_loss" in (out / "03-distill-structured" / terminal.STAGE_LOG).read_text()  # the Trainer's prints
    for manifest in out.glob(f"*/{MANIFEST}"):
        assert (manifest.parent / terminal.STAGE_LOG).is_file()
        assert terminal.STAGE_LOG not in json.loads(manifest.read_text())["files"]


def test_dry_run_of_a_finished_run_skips_every_stage_and_writes_nothing(quiet_run):
    recipe, out, _ = quiet_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    done = edgesmith_cli("run", recipe, "--out", out, "--dry-run")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:-1]]
    assert len(rows) == 19 and {r[1] for r in rows} == {"skip"}
    assert "0 of 19 stages would run" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_dry_run_after_an_edit_names_the_stages_that_rerun_and_why(quiet_run, tmp_path, tiny_bert, tiny_data, tiny_profiles):
    _, out, _ = quiet_run
    edited = write_recipe(tmp_path, tiny_bert, tiny_data, tiny_profiles, temperature=3.0)
    plan = edgesmith.plan(edited, out=out)
    action = {s.folder: s for s in plan.stages}
    for folder in ("00-data", "01-teacher", "02-prune-structured", "02-prune-sparse", "05-export-unpruned", "06-quantize-unpruned"):
        assert action[folder].action == "skip", folder
    for branch in ("structured", "sparse"):
        assert action[f"03-distill-{branch}"].why == "config field distill.temperature changed (2.0 -> 3.0)"
        assert action[f"04-shrink-{branch}"].why == "input distill reruns"
        assert action[f"04-shrink-{branch}"].basis == "last run" and action[f"04-shrink-{branch}"].seconds is not None
    assert action["07-bench-tiny-ort"].action == action["09-report"].action == "run"
    assert action["03-distill-structured"].inputs == ("00-data", "01-teacher", "02-prune-structured")
    assert "03-distill-structured" in plan.table() and "(last run)" in plan.table()


def test_dry_run_scales_the_last_distillation_time_to_the_new_step_count(quiet_run):
    recipe, out, _ = quiet_run
    last = json.loads((out / "03-distill-sparse" / MANIFEST).read_text())["seconds"]
    plan = edgesmith.plan(recipe, out=out, overrides={"distill.max_steps": 6})  # 2 -> 6 steps
    distill = next(s for s in plan.stages if s.folder == "03-distill-sparse")
    assert distill.basis == "last run" and distill.seconds == pytest.approx(3 * last)


def test_dry_run_on_a_fresh_folder_creates_nothing(tmp_path, tiny_bert, tiny_data, tiny_profiles, capsys):
    recipe, out = write_recipe(tmp_path, tiny_bert, tiny_data, tiny_profiles), tmp_path / "fresh"
    assert main(["run", str(recipe), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    assert "19 of 19 stages would run" in printed and "(estimated)" in printed and "does not exist yet" in printed
    assert re.search(r"^03-distill-structured +run +~.* no previous output +<- 00-data, 01-teacher, 02-prune-structured$", printed, re.M)


def test_the_python_api_takes_profile_paths_one_forced_stage_and_section_overrides_that_keep_the_rest(quiet_run, tiny_profiles):
    """Seen by a red-team probe: a Path among `profiles` was refused as an invalid string, force="bench" became five
    one-letter stages, and overrides={"distill": {"max_steps": 3}} dropped the recipe's other distill settings."""
    recipe, out, _ = quiet_run
    plan = edgesmith.plan(recipe, out=out, profiles=[tiny_profiles / "tiny-ort.yaml"])
    assert {s.folder for s in plan.stages if "bench" in s.folder} == {"07-bench-tiny-ort"}
    plan = edgesmith.plan(recipe, out=out, force="bench")
    why = {s.folder: s.why for s in plan.stages if s.action == "run"}
    assert why["07-bench-tiny-ort"] == why["07-bench-tiny-ov"] == "forced" and "06-quantize-structured" not in why, why
    plan = edgesmith.plan(recipe, out=out, overrides={"distill": {"max_steps": 3}})
    why = {s.folder: s.why for s in plan.stages}
    assert "distill.max_steps" in why["03-distill-structured"] and "batch_size" not in why["03-distill-structured"], why
    # red-team 6: a Path value was refused as "not a valid string", overrides given as a list raised a bare TypeError
    source = yaml.safe_load(Path(recipe).read_text())["data"]["source"]
    plan = edgesmith.plan(recipe, out=out, overrides={"data.source": Path(source)})
    assert {s.action for s in plan.stages if s.folder in ("00-data", "01-teacher")} == {"skip"}
    with pytest.raises(EdgesmithError, match="overrides=.*give a dict of dotted recipe fields"):
        edgesmith.plan(recipe, out=out, overrides=[("distill.max_steps", 3)])
    plan = edgesmith.plan(recipe, out=out, overrides={"data": {"source": Path(source)}})
    assert {s.action for s in plan.stages if s.folder in ("00-data", "01-teacher")} == {"skip"}
    with pytest.raises(EdgesmithError, match="overrides key 1 is not a str"):
        edgesmith.plan(recipe, out=out, overrides={1: 2})
    with pytest.raises(EdgesmithError, match="timeout=0: give seconds from 1 to 86400"):
        edgesmith.verify_bundle(out, timeout=0)


def test_a_fresh_dry_run_counts_the_paired_rounds_a_pruned_bundle_may_need(tmp_path, tiny_bert, tiny_data, tiny_profiles):
    """The bundle stage's estimate includes the confirmation rounds (2 x ROUNDS fresh processes): its bare 2 s left
    out about 11 s of the quickstart's bundle stage."""
    from edgesmith.confirm import ROUNDS
    from edgesmith.dryrun import BENCH_ROW_S, QUICKSTART_SECONDS

    plan = edgesmith.plan(write_recipe(tmp_path, tiny_bert, tiny_data, tiny_profiles), out=tmp_path / "fresh")
    bundles = [s for s in plan.stages if s.stage == "bundle"]
    assert bundles and all(s.basis == "estimated" for s in bundles)
    assert all(s.seconds >= QUICKSTART_SECONDS["bundle"] + 2 * ROUNDS * BENCH_ROW_S[0] for s in bundles)


def test_verbose_streams_library_output(quiet_run):
    recipe, out, _ = quiet_run
    done = edgesmith_cli("run", recipe, "--out", out, "--force", "quantize", "-v")
    assert done.returncode == 0, done.stderr
    assert QUANTIZER_WARNING in done.stderr and "[06-quantize-sparse] done in" in done.stderr


def test_python_api_returns_the_summary_and_verifies_a_bundle(quiet_run, tiny_bert, tiny_data, tiny_profiles):
    recipe, out, _ = quiet_run
    summary = edgesmith.run(yaml.safe_load(recipe.read_text()), out=out)  # a dict; the finished run: every stage skipped
    assert set(summary.profiles) == {"tiny-ort", "tiny-ov"} and summary.metric == "accuracy"
    ort = summary.profiles["tiny-ort"]
    assert ort.status == "measured" and ort.bundle == out / "08-bundle-tiny-ort" / "edgesmith-tiny-ort" and ort.within_budgets
    assert ort.artifact == json.loads((out / "summary.json").read_text())["profiles"]["tiny-ort"]["artifact"]
    assert "tiny-ort" in str(summary)
    checks = edgesmith.verify_bundle(ort.bundle)
    assert any("sha256" in line for line in checks)


def test_importing_the_api_names_stays_cheap():
    code = ("import sys, edgesmith; from edgesmith import run, plan, verify_bundle; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'openvino', 'transformers', 'rich') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_a_crashing_stage_names_its_log_and_restores_the_descriptors(tmp_path, tiny_bert, tiny_data, tiny_profiles, monkeypatch, capfd):
    from edgesmith import stages  # noqa: F401  (registers the stages)
    from edgesmith.registry import STAGES, Stage

    def crash(*_: object) -> dict:
        os.write(2, b"C++ says hello on fd 2\n")
        print("python says hello")
        raise RuntimeError("boom\nand a second line")

    real = STAGES["data"]
    monkeypatch.setitem(STAGES, "data", Stage(real.name, crash, real.config, real.version))
    out = tmp_path / "run"
    assert main(["run", str(write_recipe(tmp_path, tiny_bert, tiny_data, tiny_profiles)), "--out", str(out)]) == 1
    os.write(2, b"after the run\n")  # fd 2 is the terminal's (here pytest's) again
    err = capfd.readouterr().err.splitlines()
    log = out / "00-data.failed.log"
    assert err[-2:] == [f"edgesmith: error: stage 00-data failed: RuntimeError: boom; its output and the traceback are in {log}",
                        "after the run"]
    assert not any("hello" in line for line in err)
    text = log.read_text()
    assert "C++ says hello on fd 2" in text and "python says hello" in text and "RuntimeError: boom" in text
    assert not list(out.glob(".*.tmp"))


def test_live_view_draws_a_bar_and_leaves_one_line_per_stage(tmp_path):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Tty()
    with terminal.view(stream=screen) as view:
        assert isinstance(view, terminal.Live)
        view.skipped("00-data")
        with view.running(tmp_path / "03-distill-x", "forced", tmp_path):
            assert terminal.watching()
            for step in range(1, 4):
                print("library noise")
                terminal.progress(step, 3)
        view.done("03-distill-x", 1.5)
    shown = screen.getvalue()
    assert "[00-data] skipped" in shown and "[03-distill-x] done in 1.5 s (forced)" in shown and "library noise" not in shown
    assert (tmp_path / terminal.STAGE_LOG).read_text() == "library noise\n" * 3
    assert not terminal.watching()


def test_a_fresh_dry_run_counts_the_rows_of_the_local_training_file(tmp_path, tiny_data):
    """Before the data stage has run, the distillation estimate counts the training file's lines (an estimate, not
    a parse) instead of assuming the quickstart's 8,803 rows."""
    from types import SimpleNamespace

    from edgesmith.config import DataConfig
    from edgesmith.dryrun import _counted_rows, _train_rows

    assert _counted_rows(DataConfig(source=str(tiny_data))) == 96  # train.tsv beside dev.tsv: every row trains
    assert _counted_rows(DataConfig(source=str(tiny_data / "train.tsv"))) == 86  # a single file: 10% held out
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n')
    assert _counted_rows(DataConfig(source=str(jsonl), eval_source=str(tiny_data))) == 2  # no header, blank skipped
    assert _counted_rows(DataConfig(source="glue/sst2")) is None  # not a local file: nothing to count
    fresh = tmp_path / "fresh-run"
    assert _train_rows(fresh, SimpleNamespace(data=DataConfig(source=str(tiny_data)))) == 96
    assert _train_rows(fresh, SimpleNamespace(data=DataConfig(source=str(tiny_data), max_train_samples=50))) == 50
    assert _train_rows(fresh, SimpleNamespace(data=DataConfig(source="glue/sst2"))) == 8803
