"""How close NNCF's INT8 stays to FP32 on finished edgesmith runs, with the quantize stage's settings and with one
setting changed at a time (docs/recovery.md, "OpenVINO INT8 on the narrow students"); results are appended to
docs/recovery.jsonl:

    python benchmarks/quant_fidelity.py runs/compare/sst2-fast-seed1 [RUN ...] [--branch structured|unpruned]
        [--variants pipeline,smoothquant-off,random-calibration,full-bias-correction] [--latency-rounds 5]

"pipeline" is NNCF's default for transformers (SmoothQuant on), what the quantize stage builds by default; with
`quantize.fidelity_samples` set it builds that and "smoothquant-off" and ships the one closer to FP32 on training
rows past the calibration rows.

Each variant quantizes the run's exported OpenVINO FP32 graph (05-export-<branch>/openvino/model.xml) and is scored
on the run's eval rows (accuracy and drop from the teacher) and against that FP32 graph: prediction agreement and
mean absolute logit difference on the eval rows and on 2,000 training rows the calibration never saw. Accuracy
moves by 1/872 = 0.11 points per SST-2 dev sentence, so the logit distance is the finer reading. Classification
runs only. 1 thread. With --latency-rounds N (N > 0) the variants of a run are also timed side by side: p50 at
1 thread, batch 1, seq 128, N interleaved rounds of 100 runs, median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from recovery import record  # noqa: E402  (appends to docs/recovery.jsonl)

HELD = 2000


def nncf_variant(name: str) -> tuple[dict[str, Any], bool]:
    """(extra nncf.quantize arguments, calibrate on random training rows instead of the first ones)."""
    from edgesmith.runtimes.openvino import nncf_settings

    table = {
        "pipeline": ({}, False),
        "smoothquant-off": (nncf_settings()["smoothquant-off"], False),  # the quantize stage's own setting
        "random-calibration": ({}, True),
        "full-bias-correction": ({"fast_bias_correction": False}, False),
    }
    if name not in table:
        raise SystemExit(f"unknown variant {name!r}; pick from {', '.join(table)}")
    return table[name]


class Artifact:
    """The facts of one finished stage folder, as the stages read them."""

    def __init__(self, path: Path) -> None:
        self.path, self.facts = path, json.loads((path / "manifest.json").read_text())["facts"]


def logits(xml: Path, rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> np.ndarray:
    from edgesmith.evaluate import outputs
    from edgesmith.runtimes import open_session

    return outputs(open_session("openvino", xml, threads=1, output="logits"), rows, tokenizer, max_length, "classification")


def quantize(src: Path, dst: Path, rows: list[dict[str, Any]], tokenizer: Any, max_length: int, extra: dict[str, Any]) -> Path:
    import nncf
    import openvino as ov

    from edgesmith.evaluate import batches
    from edgesmith.exporters.openvino import save_ir
    from edgesmith.runtimes.openvino import nncf_int8

    names = [i.get_any_name() for i in ov.Core().read_model(str(src)).inputs]
    feeds = [{n: b[n] for n in names} for b in batches(rows, tokenizer, max_length, batch_size=1)]
    if not extra:  # the product's own call with NNCF's default setting
        return nncf_int8(src, dst, feeds)
    model = ov.Core().read_model(str(src))
    return save_ir(nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                 subset_size=len(feeds), **extra), dst)


def p50_side_by_side(xmls: dict[str, Path], vocab: int, rounds: int) -> dict[str, float]:
    """Median over `rounds` interleaved rounds of each IR's p50 (1 thread, batch 1, seq 128, 100 runs)."""
    import statistics

    from edgesmith.config import Profile
    from edgesmith.latency import measure as time_ir

    profile = Profile(name="one-thread", description="1 thread, batch 1, seq 128", runtimes={"openvino": ("int8-static",)}, threads=1)
    p50: dict[str, list[float]] = {name: [] for name in xmls}
    for _ in range(rounds):
        for name, xml in xmls.items():
            p50[name].append(time_ir("openvino", xml, profile, 1, vocab, 10, 100)["p50_ms"])
    return {name: statistics.median(values) for name, values in p50.items()}


def measure(run: Path, branch: str, variants: list[str], scratch: Path, latency_rounds: int = 0) -> None:
    from edgesmith.evaluate import quality
    from edgesmith.modeling import load_tokenizer
    from edgesmith.stages.common import read_rows
    from edgesmith.stages.teacher import labelled_rows

    needed = [run / "00-data" / "manifest.json", run / "01-teacher" / "manifest.json", run / "recipe.json",
              run / f"05-export-{branch}" / "openvino" / "model.xml"]
    missing = [str(p.relative_to(run)) for p in needed if not p.is_file()]
    if missing:
        raise SystemExit(f"{run}: not a finished edgesmith run with a {branch} OpenVINO export (missing {', '.join(missing)}); "
                         f"pass a run folder whose `edgesmith run` completed, or pick its other --branch")
    data, teacher = Artifact(run / "00-data"), Artifact(run / "01-teacher")
    if teacher.facts["task"] != "classification":
        raise SystemExit(f"{run}: a run of task {teacher.facts['task']!r}; this script reads classification runs only")
    recipe = json.loads((run / "recipe.json").read_text())
    max_length, calibration = recipe["data"]["max_length"], recipe["quantize"]["calibration_samples"]
    tokenizer = load_tokenizer(run / ("04-shrink-structured/model" if branch == "structured" else "01-teacher/model"))
    src = run / f"05-export-{branch}" / "openvino" / "model.xml"
    evals, train = labelled_rows(data, teacher, "eval"), read_rows(data.path / "train.jsonl")
    held_ids = set(random.Random(1).sample(range(calibration, len(train)), HELD))  # never calibrated on, either way
    held, rest = [train[i] for i in sorted(held_ids)], [r for i, r in enumerate(train) if i not in held_ids]
    reference, teacher_metric = np.load(run / "01-teacher" / "eval_outputs.npy"), teacher.facts["quality"]["metric"]
    fp32 = {"eval": logits(src, evals, tokenizer, max_length), "held": logits(src, held, tokenizer, max_length)}
    score = lambda out: quality(out, evals, "classification", reference, teacher.facts["label_names"])["metric"]
    base = {"experiment": "quant-fidelity", "run": run.name, "branch": branch, "teacher": teacher_metric,
            "fp32_accuracy": score(fp32["eval"])}
    entries, xmls = {}, {}
    for name in variants:
        extra, shuffled = nncf_variant(name)
        rows = random.Random(0).sample(rest, calibration) if shuffled else train[:calibration]
        t = time.time()
        xmls[name] = xml = quantize(src, scratch / f"{run.name}-{branch}-{name}" / "model.xml", rows, tokenizer, max_length, extra)
        out = {"eval": logits(xml, evals, tokenizer, max_length), "held": logits(xml, held, tokenizer, max_length)}
        acc = score(out["eval"])
        entries[name] = (base | {"variant": name, "int8_accuracy": acc, "drop": teacher_metric - acc, "seconds": round(time.time() - t)}
                         | {f"{k}_agreement": float(100 * (out[k].argmax(-1) == fp32[k].argmax(-1)).mean()) for k in out}
                         | {f"{k}_mean_abs_logit_diff": float(np.abs(out[k] - fp32[k]).mean()) for k in out})
    p50 = p50_side_by_side(xmls, tokenizer.vocab_size, latency_rounds) if latency_rounds > 0 else {}
    for name, entry in entries.items():
        record(entry | ({"p50_ms_seq128_1_thread": p50[name], "latency_rounds": latency_rounds} if p50 else {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--branch", default="structured", choices=("structured", "unpruned"))
    parser.add_argument("--variants", default="pipeline,smoothquant-off,random-calibration,full-bias-correction")
    parser.add_argument("--latency-rounds", type=int, default=0, help="time the variants side by side in N interleaved rounds")
    args = parser.parse_args()
    variants = args.variants.split(",")
    for v in variants:
        nncf_variant(v)  # an unknown name stops here, before any quantization
    with tempfile.TemporaryDirectory() as scratch:
        for run in args.runs:
            measure(run.resolve(), args.branch, variants, Path(scratch), args.latency_rounds)


if __name__ == "__main__":
    main()
