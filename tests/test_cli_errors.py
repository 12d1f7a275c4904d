"""Bad input: one clear line naming the problem and the fix, exit status 2, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


from conftest import make_model_dir
from edgesmith.cli import main


def _run(capsys, args, out):
    code = main(["run", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    return code, err


def _recipe(tmp_path, model, data, extra=""):
    """A recipe for the tiny model, whose 64 positions need a short-sequence profile."""
    prof = tmp_path / "short.yaml"
    prof.write_text("description: short\nruntimes: {onnxruntime: [int8-dynamic]}\nthreads: 1\nseq_len: 16\n")
    path = tmp_path / "r.yaml"
    path.write_text(f"task: classification\nteacher: {{model: {model}}}\ndata: {{source: {data}}}\nprofiles: [{prof}]\n{extra}")
    return path


def test_missing_model_directory(tmp_path, capsys, tiny_data):
    code, err = _run(capsys, [str(_recipe(tmp_path, tmp_path / "nope", tiny_data))], tmp_path / "out")
    assert code == 2 and err.count("\n") == 0 and "not found" in err and "--model" in err
    assert not (tmp_path / "out").exists()


def test_missing_tokenizer(tmp_path, capsys, tiny_data):
    folder = make_model_dir(tmp_path / "m")
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (folder / f).unlink(missing_ok=True)
    code, err = _run(capsys, [str(_recipe(tmp_path, folder, tiny_data))], tmp_path / "out")
    assert code == 2 and "no tokenizer files" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("side", ["truncation_side", "padding_side"])
def test_a_tokenizer_set_to_the_left_is_refused_before_any_work(tmp_path, capsys, tiny_data, side):
    """Accuracy was measured on the ids a left-cutting (or left-padding) tokenizer gives, while predict.py cuts and
    pads on the right: the device would have run other inputs than were measured."""
    folder = make_model_dir(tmp_path / "m")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {side: "left"}))
    code, err = _run(capsys, [str(_recipe(tmp_path, folder, tiny_data))], tmp_path / "out")
    assert code == 2 and err.count("\n") == 0 and f"{side}: left" in err and '"right"' in err, err
    assert not (tmp_path / "out").exists()


def test_an_out_that_cannot_be_created_is_one_line(tmp_path, capsys, tiny_bert, tiny_data):
    """/proc takes no new folders (not even from root): a FileNotFoundError traceback before."""
    code, err = _run(capsys, [str(_recipe(tmp_path, tiny_bert, tiny_data))], Path("/proc/edgesmith-test/run"))
    assert code == 2 and err.count("\n") == 0 and "cannot create the run folder" in err, err


def test_an_unset_max_length_follows_a_model_with_fewer_positions(tmp_path, tiny_bert, tiny_data):
    """The default 128 on the tiny model's 64 positions becomes 64; a value the recipe sets is never changed."""
    from edgesmith.api import prepare

    recipe, _, _ = prepare(str(_recipe(tmp_path, tiny_bert, tiny_data)), tmp_path / "out", None, None, [])
    assert recipe.data.max_length == 64
    recipe, _, _ = prepare(str(_recipe(tmp_path, tiny_bert, tiny_data)), tmp_path / "out", None, {"data.max_length": 32}, [])
    assert recipe.data.max_length == 32 and not (tmp_path / "out").exists()


def test_roberta_positions_start_after_the_padding_id():
    from transformers import AutoConfig

    from edgesmith.arch import max_tokens

    assert max_tokens(AutoConfig.for_model("roberta", max_position_embeddings=514, pad_token_id=1)) == 512
    assert max_tokens(AutoConfig.for_model("bert", max_position_embeddings=512)) == 512


def test_unknown_profile_and_unknown_key(tmp_path, capsys, tiny_bert, tiny_data):
    code, err = _run(capsys, [str(_recipe(tmp_path, tiny_bert, tiny_data)), "--profile", "toaster"], tmp_path / "out")
    assert code == 2 and "unknown profile 'toaster'" in err
    code, err = _run(capsys, [str(_recipe(tmp_path, tiny_bert, tiny_data, "distil: {epochs: 1}\n"))], tmp_path / "out")
    assert code == 2 and "unknown key 'distil'" in err
    assert not (tmp_path / "out").exists()


def test_impossible_budget(tmp_path, capsys, tiny_bert, tiny_data):
    prof = tmp_path / "tight.yaml"
    prof.write_text("description: t\nruntimes: {onnxruntime: [int8-dynamic]}\nthreads: 1\nseq_len: 16\nbudgets: {size_mb: 0.01}\n")
    code, err = _run(capsys, [str(_recipe(tmp_path, tiny_bert, tiny_data)), "--profile", str(prof)], tmp_path / "out")
    assert code == 2 and "impossible" in err and "size_mb" in err


def test_empty_dataset_leaves_nothing(tmp_path, capsys, tiny_bert):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.tsv").write_text("sentence\tlabel\n")
    (tmp_path / "data" / "dev.tsv").write_text("sentence\tlabel\n")
    code, err = _run(capsys, [str(_recipe(tmp_path, tiny_bert, tmp_path / "data"))], tmp_path / "out")
    assert code == 2 and "no rows" in err
    assert not (tmp_path / "out").exists()


def test_too_few_rows_for_a_new_head_are_refused_before_any_work(tmp_path, capsys, tiny_bert, tiny_data):
    """The teacher stage had refused them after the data stage, blaming the data rather than the cap."""
    text = _recipe(tmp_path, tiny_bert, tiny_data).read_text().replace(f"model: {tiny_bert}}}", f"model: {tiny_bert}, reinit_head: true}}")
    (tmp_path / "r2.yaml").write_text(text)
    code, err = _run(capsys, [str(tmp_path / "r2.yaml"), "--max-train-samples", "3"], tmp_path / "out")
    assert code == 2 and err.count("\n") == 0 and "3 remain after data.max_train_samples" in err and "at least 4" in err
    assert not (tmp_path / "out").exists()


def test_missing_label_column(tmp_path, capsys, tiny_bert, tiny_data):
    text = _recipe(tmp_path, tiny_bert, tiny_data).read_text().replace(f"source: {tiny_data}}}", f"source: {tiny_data}, label_column: stars}}")
    (tmp_path / "r2.yaml").write_text(text)
    code, err = _run(capsys, [str(tmp_path / "r2.yaml")], tmp_path / "out")
    assert code == 2 and "label column" in err


def test_unknown_force_stage(tmp_path, capsys, tiny_bert, tiny_data):
    code, err = _run(capsys, [str(_recipe(tmp_path, tiny_bert, tiny_data)), "--force", "distil"], tmp_path / "out")
    assert code == 2 and "unknown stage" in err


def test_console_script_exit_status(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgesmith.cli", "run", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("edgesmith: error:") and len(done.stderr.strip().splitlines()) == 1


def test_profiles_command_lists_builtins(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("mobile-cpu", "embedded", "server-gpu"))


def test_python_dash_m_edgesmith_is_the_command():
    proc = subprocess.run([sys.executable, "-m", "edgesmith", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: edgesmith")


@pytest.mark.parametrize("fit, needles", [
    ("nosuch", ["nosuch"]),
    ("server-gpu", ["needs a CPU profile with budgets.p90_ms"]),
    ("mobile-cpu", ["prune.structured.fit_profile mobile-cpu: seq_len 128 exceeds the model's 64 positions"]),
    ("NOP90", ["needs a CPU profile with budgets.p90_ms", "fit_speedup"]),
])
def test_a_fit_profile_the_walk_cannot_use_is_refused_before_any_work(tmp_path, capsys, tiny_bert, tiny_data, fit, needles):
    """Seen by a red-team probe: each was refused only in the prune stage, after the data, teacher and unpruned export
    stages had run (mobile-cpu's 128 tokens against the tiny model's 64 positions as an ONNX Runtime error)."""
    if fit == "NOP90":
        fit = tmp_path / "nop90.yaml"
        fit.write_text("description: no p90\nruntimes: {onnxruntime: [int8-dynamic]}\nthreads: 1\nseq_len: 16\n")
    code, err = _run(capsys, [str(_recipe(tmp_path, tiny_bert, tiny_data, f"prune: {{structured: {{fit_profile: {fit}}}}}\n"))],
                     tmp_path / "out")
    assert code == 2 and err.count("\n") == 0 and all(n in err for n in needles), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where, needle", [
    ("afile", "a file is in the way"), ("afile/run", "a file is in the way"), ("userdir", "is not empty and not an edgesmith run folder"),
])
def test_a_dry_run_refuses_the_out_the_run_would_refuse(tmp_path, capsys, tiny_bert, tiny_data, where, needle):
    """Seen by a red-team probe: `--dry-run --out FILE` (or a user's folder) printed "12 of 12 stages would run"."""
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "userdir").mkdir()
    (tmp_path / "userdir" / "notes.txt").write_text("mine")
    for dry in (["--dry-run"], []):
        code, err = _run(capsys, [str(_recipe(tmp_path, tiny_bert, tiny_data)), *dry], tmp_path / where)
        assert code == 2 and err.count("\n") == 0 and needle in err, (dry, err)
    assert (tmp_path / "afile").read_text() == "mine" and sorted(p.name for p in (tmp_path / "userdir").iterdir()) == ["notes.txt"]
