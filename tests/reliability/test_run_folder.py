"""The run folder never loses finished work and never writes outside itself: names, locks, swaps, late
failures, corrupted caches, kill -9 at every stage, and a working directory with its own `pipeline/` package."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_model_dir, write_tsv
from edgesmith.artifacts import MANIFEST, Artifact, sha256_file
from edgesmith.runfolder import RunLock, recover, replace_folder
from edgesmith.stages.data import without_unlabeled
from harness import assert_refused, edgesmith, tree

RECIPE = """name: tiny
teacher: {{model: '{model}'}}
data: {{source: '{data}', max_length: 32}}
prune: {{structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}}}
distill: {{max_steps: 2, batch_size: 8}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5}}
profiles: ['{profile}']
"""
STAGE_FOLDERS = ("00-data", "01-teacher", "05-export-unpruned", "02-prune-structured", "03-distill-structured", "04-shrink-structured",
                 "05-export-structured", "06-quantize-structured", "06-quantize-unpruned", "07-bench-tiny", "08-bundle-tiny", "09-report")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model, data, a two-runtime profile and a recipe using them (one branch: fast)."""
    root = tmp_path_factory.mktemp("inputs")
    make_model_dir(root / "model")
    (root / "data").mkdir()
    write_tsv(root / "data" / "train.tsv", 64, seed=1)
    write_tsv(root / "data" / "dev.tsv", 24, seed=2)
    (root / "tiny.yaml").write_text("description: tiny\nruntimes: {onnxruntime: [int8-dynamic], openvino: [int8-static]}\n"
                                    "threads: 1\nseq_len: 16\n")
    (root / "recipe.yaml").write_text(RECIPE.format(model=root / "model", data=root / "data", profile=root / "tiny.yaml"))
    return root


@pytest.fixture(scope="module")
def clean_run(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    done = edgesmith("run", inputs / "recipe.yaml", "--out", out)
    assert done.code == 0, done.stderr
    return out


def build_fingerprint(run: Path) -> dict[str, dict[str, str]]:
    """The recorded sha256 of every file of every stage that builds models (all but bench, bundle and report, which
    hold fresh latency measurements): a rerun after a kill must rebuild them byte for byte."""
    return {p.parent.name: json.loads(p.read_text())["files"] for p in run.glob(f"*/{MANIFEST}")
            if not p.parent.name.startswith(("07-", "08-", "09-"))}


def chosen(run: Path) -> tuple[str, str]:
    manifest = json.loads((run / "08-bundle-tiny" / "edgesmith-tiny" / "manifest.json").read_text())
    return manifest["branch"], manifest["artifact"]


def assert_bundle_ships_a_built_candidate(run: Path) -> None:
    """The bundle's model file is byte for byte the candidate file the bench measured."""
    branch, artifact = chosen(run)
    rows = json.loads((run / "07-bench-tiny" / "results.json").read_text())
    row = next(r for r in rows if (r["branch"], r["artifact"]) == (branch, artifact))
    folder = run / "08-bundle-tiny" / "edgesmith-tiny"
    shipped = json.loads((folder / "manifest.json").read_text())["model_file"]
    assert sha256_file(folder / shipped) == sha256_file(run / row["path"])


def bundle_fingerprint(run: Path) -> dict[str, str]:
    """sha256 of every bundle file, with the bundle manifest's measured latency/memory blanked: those are fresh
    measurements on each run; everything else (model, tokenizer, reference outputs, quality) must be identical."""
    folder = run / "08-bundle-tiny" / "edgesmith-tiny"
    out = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("metrics", "teacher", "files", "libraries"):
        manifest.pop(key, None)
    out["manifest.json (without measurements)"] = json.dumps(manifest, sort_keys=True)
    return out


def test_recipe_name_cannot_escape_the_run_folder(inputs: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    recipe = work / "evil.yaml"
    recipe.write_text((inputs / "recipe.yaml").read_text().replace("name: tiny", "name: 'x/../../../victim'"))
    assert_refused(edgesmith("run", recipe, cwd=work), "name", "not a safe name")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert tree(work) == {"evil.yaml": recipe.stat().st_size}


def test_profile_name_cannot_escape_the_run_folder(inputs: Path, tmp_path: Path) -> None:
    profile = tmp_path / "evil.yaml"
    profile.write_text((inputs / "tiny.yaml").read_text() + "name: '../../victim'\n")
    assert_refused(edgesmith("run", inputs / "recipe.yaml", "--profile", profile, "--out", tmp_path / "out"), "not a safe name")
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused_and_kept(inputs: Path, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert_refused(edgesmith("run", inputs / "recipe.yaml", "--out", target), "file", "--out")
    assert target.read_text() == "mine"


def test_second_run_on_a_locked_folder_says_who_holds_it(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        result = edgesmith("run", inputs / "recipe.yaml", "--out", out)
    assert_refused(result, "in use", f"pid {os.getpid()}")
    assert sorted(p.name for p in out.iterdir()) == [".edgesmith.lock"]


def test_late_failure_keeps_finished_stages_and_rerun_reuses_them(inputs: Path, tmp_path: Path, monkeypatch) -> None:
    """A fresh run that fails at shrink keeps every stage before it; recipe.json is not written; the rerun skips them."""
    from edgesmith import stages  # noqa: F401  (registers the stages)
    from edgesmith.cli import main
    from edgesmith.errors import EdgesmithError
    from edgesmith.registry import STAGES, Stage

    out = tmp_path / "run"
    real = STAGES["shrink"]

    def refuse(*_: object) -> dict:
        raise EdgesmithError("shrink refused (injected)")

    monkeypatch.setitem(STAGES, "shrink", Stage(real.name, refuse, real.config, real.version))
    assert main(["run", str(inputs / "recipe.yaml"), "--out", str(out)]) == 2
    finished = {p.parent.name for p in out.glob(f"*/{MANIFEST}")}
    assert finished == set(STAGE_FOLDERS[:5])  # data, teacher, the unpruned export, prune, distill
    assert not (out / "recipe.json").exists() and not list(out.glob(".*.tmp"))
    distilled = sha256_file(out / "03-distill-structured" / MANIFEST)
    monkeypatch.setitem(STAGES, "shrink", real)
    log = edgesmith("run", inputs / "recipe.yaml", "--out", out)
    assert log.code == 0, log.stderr
    assert "[03-distill-structured] skipped" in log.stderr and sha256_file(out / "03-distill-structured" / MANIFEST) == distilled
    assert json.loads((out / "recipe.json").read_text())["name"] == "tiny"


def test_a_bundle_verify_would_refuse_is_never_written(clean_run: Path, inputs: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The bundle stage applies verify's PyTorch-agreement check before it finishes: a chosen model that fails it
    stops the run with one line, leaves no bundle, and keeps the measurements."""
    from edgesmith.cli import main
    from edgesmith.tasks.classification import Classification

    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    shutil.rmtree(out / "08-bundle-tiny")
    bench = sha256_file(out / "07-bench-tiny" / MANIFEST)
    monkeypatch.setattr(Classification, "fidelity", lambda self, got, pytorch, mask=None: (False, "0% class agreement with PyTorch"))
    assert main(["run", str(inputs / "recipe.yaml"), "--out", str(out)]) == 2
    assert "(0% class agreement with PyTorch), so edgesmith verify would refuse the bundle" in capsys.readouterr().err
    assert not (out / "08-bundle-tiny").exists() and not list(out.glob(".*.tmp"))
    assert sha256_file(out / "07-bench-tiny" / MANIFEST) == bench


def test_a_copied_run_folder_ships_its_own_files_with_the_original_gone(clean_run: Path, inputs: Path, tmp_path: Path) -> None:
    """Bench rows name their models relative to the run folder. They had held the path as given to --out, so a copied
    folder whose bench stage was reused shipped the model out of the original folder (or crashed, run from another
    directory): here the original is deleted and the copy is run again from elsewhere with a setting only the bundle
    stage reads changed."""
    original = tmp_path / "original"
    shutil.copytree(clean_run, original)
    measured = edgesmith("run", inputs / "recipe.yaml", "--out", original, "--force", "bench")  # rows recorded in `original`
    assert measured.code == 0, measured.stderr
    assert all(not Path(r["path"]).is_absolute() for r in json.loads((original / "07-bench-tiny" / "results.json").read_text()))
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((inputs / "recipe.yaml").read_text().replace("iterations: 5}", "iterations: 5, min_speedup: 1.0}"))
    done = edgesmith("run", recipe, "--out", "copy", cwd=copy.parent)
    assert done.code == 0, done.stderr
    assert "[07-bench-tiny] skipped" in done.stderr and "[08-bundle-tiny] skipped" not in done.stderr
    assert_bundle_ships_a_built_candidate(copy)


def test_failed_rerun_keeps_the_recipe_json_that_describes_the_stages(clean_run: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    before = (out / "recipe.json").read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text((inputs / "recipe.yaml").read_text().replace(f"source: '{inputs / 'data'}'", f"source: '{tmp_path / 'none.tsv'}'"))
    assert edgesmith("run", broken, "--out", out).code == 2
    assert (out / "recipe.json").read_text() == before


def test_a_rerun_that_fails_in_a_stage_keeps_the_recipe_json_of_the_stages_on_disk(clean_run: Path, inputs: Path, tmp_path: Path, monkeypatch) -> None:
    """The case above fails before any stage (preflight); here a changed recipe passes preflight and its bench stage
    fails: recipe.json still describes the stages on disk, not the recipe that did not finish."""
    from edgesmith import stages  # noqa: F401  (registers the stages)
    from edgesmith.cli import main
    from edgesmith.errors import EdgesmithError
    from edgesmith.registry import STAGES, Stage

    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    before, bench = (out / "recipe.json").read_text(), sha256_file(out / "07-bench-tiny" / MANIFEST)
    changed = tmp_path / "changed.yaml"
    changed.write_text((inputs / "recipe.yaml").read_text().replace("iterations: 5}", "iterations: 6}"))
    assert changed.read_text() != (inputs / "recipe.yaml").read_text()
    real = STAGES["bench"]

    def refuse(*_: object) -> dict:
        raise EdgesmithError("bench refused (injected)")

    monkeypatch.setitem(STAGES, "bench", Stage(real.name, refuse, real.config, real.version))
    assert main(["run", str(changed), "--out", str(out)]) == 2
    assert (out / "recipe.json").read_text() == before and sha256_file(out / "07-bench-tiny" / MANIFEST) == bench
    assert not list(out.glob(".*.tmp"))


def test_swap_interrupted_between_renames_is_recovered(tmp_path: Path) -> None:
    """A kill after the old folder was renamed aside but before the new one arrived: the old one comes back."""
    stage = tmp_path / "05-export-x"
    stage.mkdir()
    (stage / "model.onnx").write_text("finished")
    stage.rename(tmp_path / ".05-export-x.old")  # what replace_folder does first
    (tmp_path / ".05-export-x.tmp").mkdir()  # the new, unfinished output
    assert recover(tmp_path) == ["restored 05-export-x from an interrupted swap", "removed the unfinished .05-export-x.tmp"]
    assert (stage / "model.onnx").read_text() == "finished" and sorted(p.name for p in tmp_path.iterdir()) == ["05-export-x"]


def test_swap_replaces_a_folder_by_renames(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "a").write_text("old")
    (tmp_path / ".new").mkdir()
    (tmp_path / ".new" / "a").write_text("new")
    replace_folder(tmp_path / ".new", tmp_path / "old")
    assert (tmp_path / "old" / "a").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["old"]


@pytest.mark.parametrize("victim", ["05-export-structured/model.onnx", "01-teacher/model/model.safetensors",
                                    "08-bundle-tiny/edgesmith-tiny/manifest.json"])
def test_corrupted_stage_file_reruns_that_stage(clean_run: Path, inputs: Path, tmp_path: Path, victim: str) -> None:
    """The cache re-hashes before reuse: a corrupted file reruns its stage, which restores it, and every stage's
    recorded parents still match its parents' digests (so nothing downstream was built from other bytes)."""
    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    stage = victim.split("/")[0]
    good = sha256_file(out / victim)
    with (out / victim).open("ab") as f:
        f.write(b"\0corrupt")
    log = edgesmith("run", inputs / "recipe.yaml", "--out", out)
    assert log.code == 0, log.stderr
    assert f"[{stage}] running ({victim.split('/', 1)[1]} changed since it was built)" in log.stderr
    if stage != "08-bundle-tiny":  # the bundle holds fresh measurements; the model stages are deterministic
        assert sha256_file(out / victim) == good
    assert_parents_consistent(out)


def assert_parents_consistent(out: Path) -> None:
    manifests = {p.parent.name: json.loads(p.read_text()) for p in out.glob(f"*/{MANIFEST}")}
    digests = {m["digest"] for m in manifests.values()}
    if "00-data" in manifests:  # what every stage but distill reads: the data without its unlabeled rows
        digests.add(without_unlabeled(Artifact.open(out / "00-data")).digest)
    for name, m in manifests.items():
        assert set(m["parents"].values()) <= digests, f"{name} was built from a parent that no longer exists"
        for rel, digest in m["files"].items():
            assert sha256_file(out / name / rel) == digest, f"{name}/{rel}"


def _run_until(inputs: Path, out: Path, stage: str, delay: float) -> str:
    """Start a run, kill -9 its whole process group `delay` seconds after `stage` starts; returns its stderr."""
    proc = subprocess.Popen([sys.executable, "-P", "-m", "edgesmith.cli", "run", str(inputs / "recipe.yaml"), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    seen = []
    for line in proc.stderr:  # type: ignore[union-attr]
        seen.append(line)
        if f"[{stage}] running" in line:
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    return "".join(seen)


@pytest.mark.parametrize("stage", STAGE_FOLDERS)
def test_kill_9_during_each_stage_then_rerun_gives_the_same_bundle(clean_run: Path, inputs: Path, tmp_path: Path, stage: str) -> None:
    rng = random.Random(stage)
    out = tmp_path / "run"
    stderr = _run_until(inputs, out, stage, delay=rng.uniform(0.0, 0.5))
    assert f"[{stage}] running" in stderr, stderr
    assert not (out / "summary.json").exists()
    rerun = edgesmith("run", inputs / "recipe.yaml", "--out", out)
    assert rerun.code == 0, rerun.stderr
    assert build_fingerprint(out) == build_fingerprint(clean_run)  # every model, export and quantized file
    assert_bundle_ships_a_built_candidate(out)
    if chosen(out) == chosen(clean_run):  # the choice follows fresh latency measurements; the tiny candidates are near-ties
        assert bundle_fingerprint(out) == bundle_fingerprint(clean_run)
    assert not [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert_parents_consistent(out)


def test_benchmark_runs_from_a_folder_with_its_own_pipeline_package(inputs: Path, tmp_path: Path) -> None:
    """A user's project with `pipeline/`, `exporters/`, `profiles/` and even `edgesmith/` packages that would break
    any import: the run (and its benchmark subprocesses) still uses the installed edgesmith."""
    project = tmp_path / "project"
    for name in ("pipeline", "exporters", "profiles", "edgesmith"):
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text("raise ImportError('the user project was imported')\n")
    (project / "edgesmith" / "benchrun.py").write_text("raise SystemExit('the user project was imported')\n")
    result = edgesmith("run", inputs / "recipe.yaml", "--out", tmp_path / "run", cwd=project)
    assert result.code == 0, result.stderr
    rows = json.loads((tmp_path / "run" / "07-bench-tiny" / "results.json").read_text())
    assert rows and all("p50_ms" in r["latency"] for r in rows)


def test_a_failing_benchmark_process_is_an_error_not_not_measured(tmp_path: Path) -> None:
    """'not measured' is only for absent hardware; a benchmark process that crashes stops the stage with its stderr."""
    from edgesmith.config import Profile
    from edgesmith.errors import EdgesmithError
    from edgesmith.latency import measure

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    profile = Profile(name="p", description="p", runtimes={"onnxruntime": ("fp32",)}, threads=1, seq_len=16)
    with pytest.raises(EdgesmithError, match=r"benchmark of .*model.onnx failed \(exit 1\): .*(INVALID_PROTOBUF|Protobuf|protobuf)"):
        measure("onnxruntime", broken, profile, threads=1, vocab=100, warmup=1, iterations=5)


def test_out_that_is_someone_elses_folder_is_refused_and_kept(inputs: Path, tmp_path: Path) -> None:
    """`--out ~/Documents` by mistake: not empty, not a run folder; nothing there is written, renamed or deleted."""
    home = tmp_path / "Documents"
    (home / ".drafts.tmp").mkdir(parents=True)
    (home / ".drafts.tmp" / "draft.txt").write_text("unsaved work")
    (home / "notes.txt").write_text("mine")
    before = tree(home)
    assert_refused(edgesmith("run", inputs / "recipe.yaml", "--out", home), "not empty", "not an edgesmith run folder")
    assert tree(home) == before


def test_a_folder_that_only_looks_like_a_run_folder_is_refused_and_kept(inputs: Path, tmp_path: Path) -> None:
    """A dataset laid out as `00-data/{train.tsv, dev.tsv, manifest.json}` (its own manifest) beside a report.md: the
    stage-like name and a manifest.json had passed for a run folder, and the run replaced 00-data (the data was
    deleted) and overwrote report.md. Only edgesmith's own manifests (or its lock file) make a run folder."""
    project = tmp_path / "project"
    (project / "00-data").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(inputs / "data" / name, project / "00-data" / name)
    (project / "00-data" / "manifest.json").write_text(json.dumps({"name": "my dataset", "rows": 96}))
    (project / "report.md").write_text("my notes")
    before = tree(project)
    assert_refused(edgesmith("run", inputs / "recipe.yaml", "--out", project), "not an edgesmith run folder")
    assert tree(project) == before


def test_recovery_touches_only_edgesmiths_own_leftovers(tmp_path: Path) -> None:
    (tmp_path / ".drafts.tmp").mkdir()
    (tmp_path / ".photos.old").mkdir()
    (tmp_path / ".03-distill-structured.tmp").mkdir()
    assert recover(tmp_path) == ["removed the unfinished .03-distill-structured.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".drafts.tmp", ".photos.old"]


def test_a_profile_file_name_that_is_no_safe_name_is_named_as_the_culprit(inputs: Path, tmp_path: Path) -> None:
    """A profile without `name:` is named after its file: the error must say so, not blame a key the user never wrote."""
    profile = tmp_path / "my phone.yaml"
    profile.write_text((inputs / "tiny.yaml").read_text())
    assert_refused(edgesmith("run", inputs / "recipe.yaml", "--profile", profile, "--out", tmp_path / "out"),
                   "'my phone' is not a safe name", "taken from the file name", "rename the file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", [".edgesmith.lock", "report.md", "recipe.json"])
def test_a_link_at_the_top_of_the_run_folder_is_never_written_through(clean_run: Path, inputs: Path, tmp_path: Path, name: str) -> None:
    """A run folder received from someone else (or planted in a shared runs/): its lock file or a report linked to a
    file of the user's. Refused before the lock is taken; the linked file is untouched."""
    out = Path(shutil.copytree(clean_run, tmp_path / "out", symlinks=True))
    victim = tmp_path / "notes.txt"
    victim.write_text("mine")
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(victim)
    assert_refused(edgesmith("run", inputs / "recipe.yaml", "--out", out), name, "symbolic link")
    assert victim.read_text() == "mine"


def test_the_lock_never_truncates_a_links_target(tmp_path: Path) -> None:
    """Even past the folder check (a link planted between the check and the lock): O_NOFOLLOW."""
    from edgesmith.errors import EdgesmithError

    victim = tmp_path / "notes.txt"
    victim.write_text("mine")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".edgesmith.lock").symlink_to(victim)
    with pytest.raises(EdgesmithError, match="symbolic link"):
        RunLock(tmp_path / "run").__enter__()
    assert victim.read_text() == "mine"


def test_reports_replace_a_link_planted_during_the_run_instead_of_writing_through_it(tmp_path: Path) -> None:
    from edgesmith.runfolder import write_top

    victim = tmp_path / "todo.md"
    victim.write_text("mine")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.md").symlink_to(victim)
    write_top(tmp_path / "run", "report.md", b"# report")
    assert victim.read_text() == "mine"
    assert not (tmp_path / "run" / "report.md").is_symlink() and (tmp_path / "run" / "report.md").read_text() == "# report"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["report.md"]  # no temporary file left


def test_two_profiles_of_one_name_are_refused_before_any_work(inputs: Path, tmp_path: Path) -> None:
    """The built-in profile and an edited copy of its file share a name: the second's bench and bundle would replace
    the first's finished ones in the same run."""
    copy = tmp_path / "mine" / "tiny.yaml"
    copy.parent.mkdir()
    copy.write_text((inputs / "tiny.yaml").read_text().replace("threads: 1", "threads: 2"))
    out = tmp_path / "out"
    assert_refused(edgesmith("run", inputs / "recipe.yaml", "--profile", inputs / "tiny.yaml", "--profile", copy, "--out", out),
                   "both named 'tiny'", "rename one")
    assert not out.exists()


def test_a_profile_name_too_long_for_its_bundle_folder_is_refused_before_any_work(inputs: Path, tmp_path: Path) -> None:
    profile = tmp_path / f"{'p' * 75}.yaml"
    profile.write_text((inputs / "tiny.yaml").read_text())
    out = tmp_path / "out"
    assert_refused(edgesmith("run", inputs / "recipe.yaml", "--profile", profile, "--out", out), "at most 70", "08-bundle-NAME")
    assert not out.exists()
