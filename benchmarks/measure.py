"""Measure every artifact side by side: latency in fresh processes, interleaved rounds; quality, size and the
physical floor in this process. Each entry is a dict (name, runtime, path, plan, suite, ...) that gains figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ("p50_ms", "p90_ms", "rounds", "real_p50_ms", "real_p90_ms", "real_mean_len", "throughput_b8", "peak_rss_mb",
            "load_ms", "quality", "texts_per_call", "drop_se", "bytes", "gzip_bytes", "gflop", "floor_ms", "ops")


SUITE_TASKS = {"sst2": "classification", "sts": "embedding"}  # each suite's edgesmith task (edgesmith.tasks)


def output_name(entry: dict[str, Any]) -> str:
    """The graph output the suite's task reads, fetched by name as its bundles do (an embedding bundle's graph also
    outputs last_hidden_state, for Hugging Face loaders)."""
    from edgesmith.tasks import get

    return get(SUITE_TASKS[entry["suite"]]).output_name


@dataclass(frozen=True)
class Plan:
    """How hard to measure: `rounds` rounds of `iterations` timed runs (after `warmup`) at batch 1, seq 128."""

    threads: int = 1
    rounds: int = 3
    iterations: int = 200
    warmup: int = 20
    b8_iterations: int = 20


def benchrun(entry: dict[str, Any], threads: int, *extra: str) -> dict[str, Any]:
    """One run of edgesmith.benchrun in a fresh process (its peak memory is the artifact's own)."""
    cmd = [sys.executable, "-m", "edgesmith.benchrun", "--runtime", entry["runtime"], "--model", str(entry["path"]),
           "--threads", str(threads), "--output", output_name(entry), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise RuntimeError(f"{entry['name']}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def latency(entries: list[dict[str, Any]], plan: Plan, log: Any) -> None:
    """Batch 1, seq 128 in `plan.rounds` rounds, each visiting every artifact once, so a slow spell on a shared
    machine hits all artifacts alike; p50/p90 are medians over rounds. The first round also times every held-out
    sentence at its own length (the entry's `lengths` file) and batch-8 throughput."""
    import numpy as np

    seq128 = ("--batch", "1", "--seq", "128", "--warmup", str(plan.warmup), "--iterations", str(plan.iterations))
    unique = [e for e in entries if "same_as" not in e]
    for r in range(plan.rounds):
        log(f"latency round {r + 1}/{plan.rounds} over {len(unique)} artifacts")
        for e in unique:
            first = r == 0
            one = benchrun(e, plan.threads, *seq128, *(("--lengths", str(e["lengths"])) if first else ()))
            if first:
                e |= {k: one[k] for k in ("real_p50_ms", "real_p90_ms", "real_mean_len", "peak_rss_mb", "load_ms")}
                e["throughput_b8"] = benchrun(e, plan.threads, "--batch", "8", "--seq", "128", "--warmup", "3",
                                              "--iterations", str(plan.b8_iterations))["throughput"]
                e["rounds"] = []
            e["rounds"].append({"p50_ms": one["p50_ms"], "p90_ms": one["p90_ms"]})
    for e in unique:
        e["p50_ms"] = float(np.median([x["p50_ms"] for x in e["rounds"]]))
        e["p90_ms"] = float(np.median([x["p90_ms"] for x in e["rounds"]]))


def quality(entries: list[dict[str, Any]], suites: dict[str, dict[str, Any]]) -> None:
    """Quality on the suite's held-out rows, the same code for every artifact: accuracy (%) on SST-2 dev with the
    paired standard error of the drop against the teacher; Spearman x100 on STS-B dev pairs. Each artifact is scored
    `texts_per_call` texts a call: one for ONNX Runtime's dynamic INT8 (its scales come from each call's whole
    input), as edgesmith's bundles run it and as a batch-1 device would, the peers' too; 32 for the others, whose
    outputs do not depend on the texts beside them beyond float rounding."""
    from edgesmith.evaluate import outputs
    from edgesmith.evaluate import quality as score
    from edgesmith.runtimes import open_session

    for suite, s in suites.items():
        ours = [e for e in entries if e["suite"] == suite and "same_as" not in e]
        teacher = next(e for e in ours if e["group"] == "teacher")
        reference = None
        for e in [teacher] + [e for e in ours if e is not teacher]:
            task = SUITE_TASKS[suite]
            e["texts_per_call"] = texts_per_call(e)
            out = outputs(open_session(e["runtime"], Path(e["path"]), threads=2, output=output_name(e)), s["rows"],
                          s["tokenizer"], 128, task, e["texts_per_call"])
            reference = out if reference is None else reference
            e["quality"] = score(out, s["rows"], task, reference)["metric"]
            if task == "classification":
                e["right"] = [int(p == r["label"]) for p, r in zip(out.argmax(-1), s["rows"])]
        teacher_right = teacher.get("right")
        for e in ours:
            if "right" in e:
                e["drop_se"] = paired_drop_se(teacher_right, e.pop("right"))


def precision(entry: dict[str, Any]) -> str:
    """The entry's precision as edgesmith's runtimes name it: edgesmith's as `levels._entry` records it; the peers'
    ONNX Runtime INT8 builds are dynamic (ORTQuantizer with is_static=False, or quantize_dynamic where it failed,
    benchmarks/peers.py), their OpenVINO INT8 is NNCF's static quantization."""
    if "precision" in entry:
        return entry["precision"]
    if not entry["int8"]:
        return "fp32"
    return "int8-dynamic" if entry["runtime"] == "onnxruntime" else "int8-static"


def texts_per_call(entry: dict[str, Any]) -> int:
    """How many held-out texts go into one call when the entry is scored: the runtime's own rule
    (Runtime.texts_per_call), the one edgesmith scores and ships with; PyTorch (the teacher) 32 a call."""
    from edgesmith.runtimes import RUNTIMES
    from edgesmith.tasks.base import EVAL_BATCH

    runtime = RUNTIMES.get(entry["runtime"])
    return runtime.texts_per_call(precision(entry)) if runtime else EVAL_BATCH


def paired_drop_se(teacher_right: list[int], right: list[int]) -> float:
    """Standard error, in points, of (teacher accuracy - this accuracy) on the same sentences (paired, as in
    McNemar's test): only the sentences where exactly one of the two is right carry information."""
    n = len(right)
    b = sum(t and not r for t, r in zip(teacher_right, right))
    c = sum(r and not t for t, r in zip(teacher_right, right))
    return 100 * math.sqrt(max(b + c - (b - c) ** 2 / n, 0)) / n


def model_files(entry: dict[str, Any]) -> list[Path]:
    p = Path(entry["path"])
    if p.is_dir():
        return sorted(p.glob("*.safetensors"))
    return [p] + ([p.with_suffix(".bin")] if p.suffix == ".xml" else [])


def sizes_and_floor(entries: list[dict[str, Any]], gemm: dict[str, float]) -> None:
    """Bytes on disk and after gzip -6 (what a device stores, and downloads: zeros compress); GFLOP of the encoder
    at seq 128 from its shape plan, and the floor: those FLOPs at the measured GEMM throughput."""
    import gzip

    from gemm import encoder_gflop

    for e in (e for e in entries if "same_as" not in e):
        files = model_files(e)
        e["bytes"], e["gzip_bytes"] = sum(f.stat().st_size for f in files), sum(len(gzip.compress(f.read_bytes(), 6)) for f in files)
        plan = json.loads((Path(e["plan"]) / "shape_plan.json").read_text())
        hidden = json.loads((Path(e["plan"]) / "config.json").read_text())["hidden_size"]
        e["gflop"] = encoder_gflop(plan, hidden, 128)
        e["floor_ms"] = e["gflop"] / gemm["int8" if e["int8"] else "fp32"] * 1000


def op_breakdowns(entries: list[dict[str, Any]], threads: int) -> None:
    """OpenVINO's per-op counters for the OpenVINO artifacts of each level's first seed and the peers (other seeds
    add nothing)."""
    from opprofile import op_breakdown

    for e in entries:
        if e["runtime"] == "openvino" and e.get("first_seed", True) and "same_as" not in e:
            e["ops"] = op_breakdown(Path(e["path"]), threads)


def fill_copies(entries: list[dict[str, Any]]) -> None:
    """Give each byte-identical copy the figures of the artifact it copies."""
    by_name = {e["name"]: e for e in entries}
    for e in entries:
        if "same_as" in e:
            e |= {k: by_name[e["same_as"]][k] for k in MEASURED if k in by_name[e["same_as"]]}
