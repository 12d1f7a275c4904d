"""Tiny random BERT-family models and tiny task data, built in-process (no downloads)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest

WORDS = ("good great fine lovely superb happy bad awful poor boring dull sad the a movie film plot actor "
         "story was is very not quite really and but it this").split()
POSITIVE = {"good", "great", "fine", "lovely", "superb", "happy"}
SHARED = Path(__file__).resolve().parents[2] / "shared"


def write_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [f"w{i}" for i in range(2100)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder / "vocab.txt"


def tiny_config(model_type: str, num_labels: int = 2):
    from transformers import AutoConfig

    common = dict(vocab_size=2140, max_position_embeddings=64, num_labels=num_labels)
    if model_type == "distilbert":
        return AutoConfig.for_model("distilbert", dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common)
    return AutoConfig.for_model(model_type, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, type_vocab_size=2, pad_token_id=0, **common)


def make_model_dir(folder: Path, model_type: str = "bert", task: str = "classification", seed: int = 0) -> Path:
    """A saved (safetensors) random model plus a WordPiece tokenizer over WORDS."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    cls = AutoModelForSequenceClassification if task == "classification" else AutoModel
    model = cls.from_config(tiny_config(model_type))
    model.save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(write_vocab(folder))).save_pretrained(folder)
    return folder


def sentence(rng: random.Random) -> tuple[str, int]:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 10))]
    return " ".join(words), int(sum(w in POSITIVE for w in words) > 0)


def write_tsv(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["sentence\tlabel"] + ["\t".join(map(str, sentence(rng))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-data")
    write_tsv(folder / "train.tsv", 96, seed=1)
    write_tsv(folder / "dev.tsv", 40, seed=2)
    return folder


@pytest.fixture(scope="session")
def tiny_profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small CPU profiles (ONNX Runtime, OpenVINO) and a GPU one, so a full run takes seconds."""
    folder = tmp_path_factory.mktemp("profiles")
    (folder / "tiny-ort.yaml").write_text(
        "description: tiny ORT\nruntimes: {onnxruntime: [int8-dynamic, int8-static]}\nthreads: 8\nseq_len: 16\n"
        "budgets: {p90_ms: 1000, peak_memory_mb: 4000, size_mb: 50}\n")
    (folder / "tiny-gpu.yaml").write_text(
        "description: tiny GPU\ndevice: cuda\nruntimes: {onnxruntime: [fp16]}\nexecution_providers: [CUDAExecutionProvider]\n"
        "\nthreads: 1\nbatch: 4\nseq_len: 16\n")
    (folder / "tiny-ov.yaml").write_text(
        "description: tiny OpenVINO\nruntimes: {openvino: [int8-static]}\nthreads: 1\nseq_len: 16\n")
    return folder


def ship(run_out: Path, profile: str, branch: str, artifact: str, out: Path) -> tuple[Path, dict[str, Any]]:
    """The bundle stage run again on a finished run's own inputs, with a bench table of the teacher and one row, so
    that the row (`branch`, `artifact`) ships whatever the run's timing chose; returns (bundle folder, row). Which
    candidate a run ships follows measured latency, so a path covered only by the run's own bundle is covered by
    chance (a one-text-a-call INT8 tagger's reference check failed in CI only when timing picked it)."""
    from edgesmith.artifacts import Artifact
    from edgesmith.registry import STAGES
    from edgesmith.stages.bundle import BundleStageConfig
    from edgesmith.stages.data import without_unlabeled

    stage = json.loads((run_out / f"08-bundle-{profile}" / "manifest.json").read_text())
    stages = [Artifact.open(folder) for folder in run_out.glob("0*")]
    views = [without_unlabeled(a) for a in stages if a.path.name == "00-data"]  # the data as the bundle stage reads it
    by_digest = {a.digest: a for a in stages + views}
    inputs = {k: by_digest[d] for k, d in stage["parents"].items()}
    bench = inputs["bench"]
    teacher = next(r for r in bench.facts["rows"] if r["branch"] == "teacher")
    row = next(r for r in bench.facts["rows"] if (r["branch"], r["artifact"]) == (branch, artifact))
    only = dataclasses.replace(bench, facts=bench.facts | {"rows": [teacher, row]})
    out.mkdir(parents=True, exist_ok=True)
    chosen = STAGES["bundle"].fn(BundleStageConfig.model_validate(stage["config"]), inputs | {"bench": only}, out)["chosen"]
    assert (chosen["branch"], chosen["artifact"]) == (branch, artifact)
    return next(out.glob("edgesmith-*/")), row


def pytest_configure(config: pytest.Config) -> None:
    """One thread per test process: the machine has two cores and benchmarks may be running beside the suite."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
