"""Stage `quantize` (per branch and profile): one candidate per precision the profile allows, each measured
again for quality on the held-out rows, with its drop from the teacher. The bundle stage judges the drops against
the recipe's accuracy budget and ships the fastest candidate within it (a breach is recorded there, never hidden).

Calibration reads the first `calibration_samples` training rows; where a runtime can build a precision more than
one way (OpenVINO INT8: NNCF with or without SmoothQuant) and the recipe sets `fidelity_samples`, the next that many
training rows choose the way closest to FP32. The eval split never takes part in a choice: it only measures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import Frozen, Precision, Runtime, Task
from ..evaluate import batches, outputs, quality
from ..modeling import load_tokenizer
from ..registry import stage
from ..runtimes import RUNTIMES, Held, open_session
from ..tasks import get as get_task
from .common import read_rows
from .teacher import labelled_rows


class QuantizeStageConfig(Frozen):
    """Only what quantization reads: the profile's (runtime, precision) pairs, not its threads or budgets, and not
    the accuracy budget, so that editing those reruns the benchmark or the bundle but never quantization."""
    candidates: tuple[tuple[Runtime, Precision], ...]  # every profile's Profile.candidates(), each pair once, in order
    calibration_samples: int  # quantize.calibration_samples
    fidelity_samples: int  # quantize.fidelity_samples
    task: Task
    max_length: int


# 5: ORT int8-static quantizes the unfused graph; 6: fidelity_samples may choose OpenVINO INT8's SmoothQuant setting;
# 7: OpenVINO INT8 widens negative-heavy activation intervals; 8: and says how many (widened_intervals); 9: ORT dynamic
# INT8 scored one text per call (Runtime.texts_per_call), as predict.py runs it
@stage("quantize", QuantizeStageConfig, version=9)
def run(cfg: QuantizeStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    export = inputs["export"]
    tokenizer = load_tokenizer(inputs["shrink"].path / "model")
    feeds, held = _calibration(inputs["data"].path, tokenizer, cfg, export.facts["input_names"])
    evals = labelled_rows(inputs["data"], inputs["teacher"], "eval")
    reference = np.load(inputs["teacher"].path / "eval_outputs.npy")
    teacher_metric = inputs["teacher"].facts["quality"]["metric"]
    candidates = []
    for runtime, precision in cfg.candidates:
        path, facts = RUNTIMES[runtime].quantize_choosing(precision, export.path / export.facts["files"][runtime], out, feeds,
                                                           export.path / "model.raw.onnx", held)
        q = _quality(runtime, precision, path, evals, tokenizer, cfg, reference, inputs["teacher"].facts["label_names"])
        drop = teacher_metric - q["metric"] if "metric" in q else None
        candidates.append({
            "precision": precision, "runtime": runtime, "file": str(path.relative_to(out)), "bytes": RUNTIMES[runtime].bytes(path),
            "quality": q, "drop": drop,
        } | facts)  # how the runtime built it, where it says (e.g. OpenVINO INT8: widened_intervals, quantizer)
    return {"candidates": candidates, "teacher_metric": teacher_metric}


def _calibration(data_dir: Path, tokenizer: Any, cfg: QuantizeStageConfig, names: list[str]) -> tuple[list[dict[str, Any]], Held]:
    """(calibration feeds: the first calibration_samples training rows, the held-out training rows after them that
    choose between a runtime's ways of quantizing: none when the training split has no more rows)."""
    rows = read_rows(data_dir / "train.jsonl")
    n = cfg.calibration_samples

    def feeds(part: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: b[k] for k in names} for b in batches(part, tokenizer, cfg.max_length, batch_size=1)]

    return feeds(rows[:n]), Held(feeds(rows[n: n + cfg.fidelity_samples]), get_task(cfg.task).output_name)


def _quality(runtime: str, precision: str, path: Path, rows: list[dict[str, Any]], tokenizer: Any, cfg: QuantizeStageConfig,
             reference: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Quality on this machine's CPU, the rows run as the bundle's predict.py runs them (one at a time where the
    quantization scales are per call). FP16 graphs may use kernels the CPU provider lacks: then say so."""
    try:
        session = open_session(runtime, path, threads=2, output=get_task(cfg.task).output_name)
        out = outputs(session, rows, tokenizer, cfg.max_length, cfg.task, RUNTIMES[runtime].texts_per_call(precision))
        return quality(out, rows, cfg.task, reference, names)
    except Exception as err:  # onnxruntime raises bare RuntimeError/Fail subclasses for missing kernels
        return {"not_measured": f"cannot run {path.name} on this machine's CPU: {str(err).splitlines()[0][:160]}"}
