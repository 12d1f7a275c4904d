"""Stage `bench` (per profile): the teacher in PyTorch FP32 and every compressed artifact, in one run, at the
profile's threads, batch and sequence length, and at data.max_length too where the bundle accepts longer inputs than
that (the profile's p90 and memory budgets hold at the longest). Each latency/memory measurement runs in its own process
(edgesmith.benchrun); quality comes from the quantize stage or is measured here for the FP32 exports. Each row
records the session settings it was measured with: the bundle stage ships exactly those."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import BenchMeasurement, Frozen, Measurement, Task
from ..errors import require
from ..evaluate import first_rows, outputs, quality
from ..latency import effective_threads, measure
from ..modeling import load_tokenizer
from ..registry import stage
from ..runtimes import REFERENCE, RUNTIMES, get, open_session, session_settings
from ..tasks import get as get_task
from ..terminal import progress
from .teacher import labelled_rows


class BenchStageConfig(Frozen):
    bench: BenchMeasurement
    profile: Measurement  # where and how the profile runs models; not its budgets, which only the bundle reads
    task: Task
    max_length: int
    branches: tuple[str, ...]


def hardware_gap(profile: Measurement) -> str | None:
    """Why this machine cannot measure the profile (the first of its runtimes that says why), or None when it can."""
    return next(filter(None, (RUNTIMES[r].hardware_gap(profile) for r in profile.runtimes)), None)


def model_path(row: dict[str, Any], run: Path) -> Path:
    """A bench row's model file, in the run folder `run`. Rows record it relative to the run folder: they had held the
    path as given to --out, so a copied run folder (or one run again from another directory) whose bench stage was
    reused shipped the model out of the original folder, measured or not."""
    recorded = Path(row["path"])
    require(not recorded.is_absolute() and ".." not in recorded.parts,
            f"a bench row's model path {row['path']!r} is not inside the run folder; rerun with --force bench")
    return run / recorded


# 5: its profile's pairs of a quantize stage shared by every profile; 6: also at data.max_length when that is longer
# than the profile's sequence length (longest_*), the length the budgets hold the bundle to; 7: rows' model paths
# relative to the run folder (model_path); 8: rows name their precision
@stage("bench", BenchStageConfig, version=8)
def run(cfg: BenchStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    threads, clamp = effective_threads(cfg.profile)
    teacher = inputs["teacher"]
    run_folder = teacher.path.parent  # every input is a stage folder of this run

    def row(branch: str, runtime: str, precision: str, path: Path, q: dict[str, Any], facts: dict[str, Any] | None) -> dict[str, Any]:
        return _row(branch, runtime, precision, path, run_folder, q, facts)

    vocab = load_tokenizer(teacher.path / "model").vocab_size
    gap = hardware_gap(cfg.profile)
    rows = [_row("teacher", REFERENCE.name, "fp32", teacher.path / "model", run_folder, teacher.facts["quality"], None)
            | {"artifact": "pytorch-fp32"}]
    for b in cfg.branches:
        export, quant = inputs[f"export-{b}"], inputs[f"quantize-{b}"]
        for runtime in cfg.profile.runtimes:
            fp32 = export.path / export.facts["files"][runtime]
            rows.append(row(b, runtime, "fp32", fp32, _fp32_quality(cfg, runtime, fp32, inputs, b), export.facts))
        for c in (c for c in quant.facts["candidates"] if (c["runtime"], c["precision"]) in cfg.profile.candidates()):
            rows.append(row(b, c["runtime"], c["precision"], quant.path / c["file"], c["quality"], c))
    for i, r in enumerate(rows):
        progress(i, len(rows))  # one benchmark process per row: the terminal's bar and ETA
        r["latency"], settings = _measure(r, run_folder, cfg, threads, vocab, gap)
        r["session"] = {"runtime": r["runtime"], "settings": settings}
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    return {"rows": rows, "threads": threads, "thread_clamp": clamp, "not_measured": gap, "cpu": _cpu_name()}


def _row(branch: str, runtime: str, precision: str, path: Path, run_folder: Path, q: dict[str, Any],
         facts: dict[str, Any] | None) -> dict[str, Any]:
    row = {"branch": branch, "artifact": f"{runtime}-{precision}", "runtime": runtime, "precision": precision,
           "path": str(path.relative_to(run_folder)), "bytes": get(runtime).bytes(path), "quality": q}
    return row | {k: facts[k] for k in ("quantizer", "widened_intervals") if facts and k in facts}  # how the quantize stage built it


def _fp32_quality(cfg: BenchStageConfig, runtime: str, path: Path, inputs: dict[str, Any], branch: str) -> dict[str, Any]:
    tokenizer = load_tokenizer(inputs[f"shrink-{branch}"].path / "model")
    evals, reference = first_rows(labelled_rows(inputs["data"], inputs["teacher"], "eval"),
                                  np.load(inputs["teacher"].path / "eval_outputs.npy"), cfg.bench.eval_samples, cfg.task)
    session = open_session(runtime, path, threads=2, output=get_task(cfg.task).output_name)
    out = outputs(session, evals, tokenizer, cfg.max_length, cfg.task)
    return quality(out, evals, cfg.task, reference, inputs["teacher"].facts["label_names"])


def _measure(row: dict[str, Any], run_folder: Path, cfg: BenchStageConfig, threads: int, vocab: int,
             gap: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(latency figures, the session settings the benchmark process applied). Without the profile's hardware:
    not measured, and the settings that hardware would be opened with."""
    if gap:
        return {"not_measured": gap}, session_settings(row["runtime"], threads, cfg.profile.execution_providers)
    lat = measure(row["runtime"], model_path(row, run_folder), cfg.profile, threads, vocab, cfg.bench.warmup, cfg.bench.iterations,
                  get_task(cfg.task).output_name, longest=cfg.max_length)
    return lat, lat.pop("session")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
