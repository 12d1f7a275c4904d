"""Several processes, one run (edgesmith.distributed): `torchrun --nproc_per_node 2` on CPU (gloo) fine-tunes the
teacher and distils both students data-parallel on the Trainer, runs every other stage once on rank 0, and leaves
the run folder one process leaves, with the same trained weights at the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_config, write_vocab
from edgesmith import distributed, stages  # noqa: F401  (registers the stages)
from edgesmith.cli import main
from edgesmith.errors import EdgesmithError
from edgesmith.registry import STAGES
from edgesmith.verify import verify

TRAINED = ("01-teacher/model/model.safetensors", "03-distill-structured/model/model.safetensors",
           "03-distill-sparse/model/model.safetensors")
# Float rounding only: the shares' gradients are summed across processes in another order than one process sums
# the batch (measured: 3e-8). Per-token terms averaged over each share's own tokens moved them 2e-4 (measured).
ATOL = 1e-6


def recipe(model: Path, data: Path, profile: Path) -> str:
    """The tiny pipeline (JSON is YAML) with a bare encoder, so the teacher stage fine-tunes a new head (under DDP
    too), and the attention and label terms on, so every part of the distillation loss is compared; ONNX only and
    one profile, to keep the two runs short."""
    structured = {"keep_heads": 0.5, "keep_ffn": 0.5, "importance_samples": 16, "ffn_multiple_of": 8, "steps": 2}
    return json.dumps({
        "name": "tiny", "task": "classification", "teacher": {"model": str(model)}, "data": {"source": str(data), "max_length": 32},
        "prune": {"branches": ["structured", "sparse"], "structured": structured, "sparse": {"sparsity": 0.7}},
        "distill": {"max_steps": 4, "batch_size": 8, "label_weight": 0.5, "attention_weight": 0.5},
        "export": {"formats": ["onnx"]}, "quantize": {"calibration_samples": 8, "accuracy_budget": 100},
        "bench": {"warmup": 1, "iterations": 5}, "profiles": [str(profile)],
    })


def bare_encoder(folder: Path) -> Path:
    """A random BERT without a classification head and without dropout: each process draws its own dropout masks,
    so with dropout N processes match one only in distribution, not weight for weight."""
    import torch
    from transformers import AutoModel, BertTokenizerFast

    config = tiny_config("bert")
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(write_vocab(folder))).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data, tiny_profiles):
    root = tmp_path_factory.mktemp("distributed")
    path = root / "tiny.yaml"
    path.write_text(recipe(bare_encoder(root / "model"), tiny_data, tiny_profiles / "tiny-ort.yaml"))
    assert main(["run", str(path), "--out", str(root / "one")]) == 0
    (root / "cwd").mkdir()
    (root / "tmp").mkdir()
    env = os.environ | {"OMP_NUM_THREADS": "1", "TMPDIR": str(root / "tmp")}
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "-m", "edgesmith.cli", "run", str(path), "--out", str(root / "two")],
                              cwd=root / "cwd", env=env, capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-4000:]
    return root, launched


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_two_processes_train_the_weights_one_process_trains(runs):
    from safetensors.torch import load_file

    root, _ = runs
    for name in TRAINED:
        one, two = load_file(str(root / "one" / name)), load_file(str(root / "two" / name))
        assert one.keys() == two.keys(), name
        worst = max(float((one[k] - two[k]).abs().max()) for k in one)
        assert worst < ATOL, f"{name}: {worst}"


def test_the_same_steps_ran_at_the_same_global_batch(runs):
    root, _ = runs
    for stage, steps in (("01-teacher", lambda f: f["finetune"]["steps"]), ("03-distill-sparse", lambda f: f["steps"])):
        one, two = (json.loads((root / run / stage / "manifest.json").read_text())["facts"] for run in ("one", "two"))
        assert steps(one) == steps(two) == 4, stage


def test_only_rank_0_wrote_and_printed(runs):
    root, launched = runs
    assert _files(root / "one") == _files(root / "two")  # no file of a second process, none missing
    assert not list((root / "cwd").iterdir())
    assert not list((root / "tmp").glob("edgesmith-rank*"))  # the other process's scratch folders are gone
    assert launched.stdout.count(str(root / "two" / "summary.json")) == 1  # one summary table, from rank 0


def test_the_two_process_bundle_verifies(runs):
    root, _ = runs
    assert verify(root / "two" / "08-bundle-tiny-ort" / "edgesmith-tiny-ort")


def test_training_stages_are_marked_and_an_unsplittable_batch_is_refused(monkeypatch):
    assert {name for name, s in STAGES.items() if s.distributed} == {"teacher", "distill"}
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(EdgesmithError, match="batch_size 8 does not split evenly over 3 processes"):
        with distributed.join(8):
            pass
