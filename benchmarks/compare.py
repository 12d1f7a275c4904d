"""edgesmith against what users pick today, measured side by side in one run on this machine (`make bench`).

    python benchmarks/compare.py                     (needs `pip install -e .[bench]`; `make bench` does both)
    python benchmarks/compare.py --only sst2-fast    (one level; --only takes a comma-separated list and writes
                                                      docs/only-<levels>/, leaving docs/benchmarks.md alone)
    python benchmarks/compare.py --only sst2-fast --seeds 1,2
                                                     (some seeds only: writes docs/only-sst2-fast-seeds-1+2/; a
                                                      target counts as met only over 3 seeds)
    python benchmarks/compare.py --smoke             (1 seed, 300 rows, few iterations: checks the code paths in
                                                      10-20 minutes; writes runs/compare-smoke/, never docs/)

Every level of `benchmarks/levels.py` (recipes/sst2.yaml, recipes/sst2-fast.yaml, recipes/minilm-sts.yaml) runs
with 3 seeds, and recipes/sst2-sparse.yaml (structured against sparse on the same rows) with seed 0. Against them: the teacher in PyTorch FP32, the teacher quantized the way Optimum and optimum-intel users
do it (`benchmarks/peers.py`, SST-2), and edgesmith's own quantized-teacher candidates of every run. All at 1
thread, batch 1: p50/p90 at seq 128 (interleaved rounds, medians), latency at the held-out sentences' own lengths,
batch-8 throughput, quality, file size, peak memory and the physical floor. Writes docs/benchmarks.md,
docs/structural-vs-sparse.md, docs/benchmarks.json and docs/benchmarks.png. Rerunning resumes: edgesmith reuses
finished stages, the peers are reused when built for the same teacher; every measurement is fresh.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
TEACHER, SST2 = ROOT.parent / "shared" / "models" / "minilm-sst2", ROOT.parent / "shared" / "data" / "sst2"
SEEDS = (0, 1, 2)
CALIBRATION = 300  # training sentences NNCF calibrates the optimum-intel peer on


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_peers(work: Path, calibration: int) -> list[dict[str, Any]]:
    """The SST-2 teacher as Optimum and optimum-intel users quantize it; reused when built for the same teacher."""
    import peers

    from edgesmith.data import load_splits
    from edgesmith.runner import model_digest

    folder = work / "peers"
    done = folder / "done.json"
    key = {"teacher": model_digest(str(TEACHER)), "calibration": calibration}
    if done.is_file() and json.loads(done.read_text())["key"] == key:
        log("peers: reusing the ones built for this teacher")
        return json.loads(done.read_text())["entries"]
    folder.mkdir(parents=True, exist_ok=True)
    sentences = [r["sentence"] for r in load_splits(str(SST2), 0.1)["train"][:calibration]]
    log("peers: Optimum ONNX + INT8, O2 + INT8, optimum-intel OpenVINO FP32 and NNCF INT8")
    dyn, o2 = peers.optimum_dynamic(TEACHER, folder), peers.optimum_o2_int8(folder)
    ov32, ov8 = peers.openvino_fp32_int8(TEACHER, folder, sentences)
    entries = [{"name": "Optimum ONNX + ORTQuantizer INT8", "runtime": "onnxruntime", "int8": True} | dyn,
               {"name": "Optimum O2 fusions + INT8", "runtime": "onnxruntime", "int8": True} | o2,
               {"name": "optimum-intel OpenVINO FP32", "runtime": "openvino", "int8": False} | ov32,
               {"name": "optimum-intel OpenVINO NNCF INT8", "runtime": "openvino", "int8": True, "role": "ov-int8"} | ov8]
    entries = [e | {"group": "peer", "suite": "sst2", "path": str(e["path"])} for e in entries]
    done.write_text(json.dumps({"key": key, "entries": entries}, indent=1))
    return entries


def suite_data(run: Any, work: Path) -> dict[str, Any]:
    """A suite's held-out rows (as the run's data and teacher stages made them), its tokenizer, and the token
    length of every held-out sentence (each STS sentence on its own, as it is embedded) in a JSON file."""
    from edgesmith.artifacts import Artifact
    from edgesmith.modeling import load_tokenizer
    from edgesmith.stages.teacher import labelled_rows

    rows = labelled_rows(Artifact.open(run.out / "00-data"), Artifact.open(run.out / "01-teacher"), "eval")
    tokenizer = load_tokenizer(run.out / "01-teacher" / "model")
    texts = [t for r in rows for t in r["text"]] if "score" in rows[0] else [r["text"][0] for r in rows]
    lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
    path = work / f"{run.level.suite}-lengths.json"
    path.write_text(json.dumps(lengths))
    return {"rows": rows, "tokenizer": tokenizer, "lengths": str(path)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    from levels import LEVELS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="1 seed, 300 rows, few iterations; writes runs/compare-smoke only")
    p.add_argument("--only", help=f"comma-separated levels ({', '.join(LEVELS)})")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated distill.seed values (default "
                   "%(default)s); a target counts as met only over 3 seeds")
    p.add_argument("--jobs", type=int, default=1, help="edgesmith runs side by side, each with cores/JOBS threads "
                   "(bench stages that ran beside another run are redone alone)")
    p.add_argument("--recipe", action="append", default=[], metavar="LEVEL=PATH", help="another recipe file for a level "
                   "(e.g. to try a variant, or to check the code paths while a recipe does not validate yet)")
    a = p.parse_args(argv)
    a.levels = list(dict.fromkeys((a.only or ",".join(LEVELS)).split(",")))  # each level once, in the order given
    try:
        a.seeds = sorted({int(x) for x in a.seeds.split(",")})
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, e.g. 0,1,2 (got {a.seeds!r})")
    if a.jobs < 1:
        p.error(f"--jobs takes a whole number of runs at a time, 1 or more (got {a.jobs})")
    unknown = [k for k in a.levels + [r.split("=")[0] for r in a.recipe] if k not in LEVELS]
    if unknown or any("=" not in r for r in a.recipe):
        p.error(f"unknown level {unknown} (known: {', '.join(LEVELS)}); --recipe takes LEVEL=PATH")
    return a


def collect(runs: list[Any], work: Path, smoke: bool) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """(every artifact to measure, each suite's held-out data, seconds spent building peers)."""
    import levels as lv

    t = time.time()
    seed0 = {r.level.suite: r for r in reversed(lv.first_runs(runs))}  # the first level of each suite
    peers = build_peers(work, 32 if smoke else CALIBRATION) if "sst2" in seed0 else []
    peer_seconds = time.time() - t
    suites = {s: suite_data(r, work) for s, r in seed0.items()}
    entries = [lv.teacher_entry(r) for r in seed0.values()] + peers + lv.run_entries(runs)
    plans = {e["suite"]: e["plan"] for e in entries if e["group"] == "teacher"}
    for e in entries:
        e |= {"lengths": suites[e["suite"]]["lengths"], "plan": e.get("plan", plans[e["suite"]]), "note": e.get("note", "")}
        if e["group"] == "unpruned" and e["suite"] == "sts" and e["artifact"] == "unpruned:openvino-int8-static":
            e["role"] = "ov-int8"  # no optimum-intel peer for the encoder: edgesmith's NNCF INT8 teacher is the reference
    return entries, suites, peer_seconds


def measure_all(entries: list[dict[str, Any]], suites: dict[str, Any], plan: Any) -> dict[str, float]:
    """Every figure of every artifact, side by side; returns the measured GEMM throughput (GFLOP/s)."""
    import measure
    from gemm import gemm_gflops

    gemm = gemm_gflops(plan.threads)
    measure.latency(entries, plan, log)
    measure.op_breakdowns(entries, plan.threads)
    measure.quality(entries, suites)
    measure.sizes_and_floor(entries, gemm)
    measure.fill_copies(entries)
    return gemm


def level_meta(chosen: list[Any], runs: list[Any], smoke: bool) -> list[dict[str, Any]]:
    """Each level that ran, as the page records it; a level none of whose seeds ran (sst2-sparse runs seed 0 only,
    so `--seeds 1,2` leaves it out) has no figures and no entry."""
    import dataclasses

    import levels as lv

    return [{"key": x.key, "recipe": str(x.recipe.relative_to(ROOT) if x.recipe.is_relative_to(ROOT) else x.recipe),
             "suite": x.suite, "target": dataclasses.asdict(x.target), "overrides": x.overrides | (lv.SMOKE if smoke else {}),
             "seeds": [r.seed for r in runs if r.level.key == x.key]}
            for x in chosen if any(r.level.key == x.key for r in runs)]


def docs_folder(a: argparse.Namespace) -> Path:
    """docs/ for the full harness; docs/only-<levels>[-seeds-<seeds>]/ for a part of it, never over the full report."""
    part = ("+".join(a.levels) if a.only else "") + (f"-seeds-{'+'.join(map(str, a.seeds))}" if a.seeds != list(SEEDS) else "")
    return ROOT / "docs" / f"only-{part.lstrip('-')}" if part else ROOT / "docs"


def main(argv: list[str] | None = None) -> None:
    import dataclasses

    import levels as lv
    import measure

    a = parse(argv)
    start = time.time()
    work = ROOT / "runs" / ("compare-smoke" if a.smoke else "compare")
    # a smoke run never touches docs/; a run of some levels only writes docs/only-<levels>/, never over the full report
    docs = work / "docs" if a.smoke else docs_folder(a)
    swaps = dict(r.split("=", 1) for r in a.recipe)
    chosen = [dataclasses.replace(lv.LEVELS[k], recipe=Path(swaps[k]).resolve()) if k in swaps else lv.LEVELS[k] for k in a.levels]
    cold = not work.exists()
    runs = lv.plan(chosen, [0] if a.smoke else a.seeds, work, a.smoke)
    if not runs:  # e.g. --only sst2-sparse --seeds 1,2: that level runs seed 0 only
        raise SystemExit(f"no run to do: {', '.join(x.key for x in chosen)} with seeds {a.seeds} (sst2-sparse runs seed 0 only)")
    run_seconds = lv.run_all(runs, log, a.jobs)
    built = lv.stage_seconds(runs)  # final now: read before the measurement, so an odd manifest costs no measured figures
    entries, suites, peer_seconds = collect(runs, work, a.smoke)
    plan = measure.Plan(rounds=2, iterations=20, warmup=5, b8_iterations=3) if a.smoke else measure.Plan()
    t = time.time()
    gemm = measure_all(entries, suites, plan)
    timing = {"runs": run_seconds, "peers": peer_seconds, "measure": time.time() - t, "total": time.time() - start}
    levels = level_meta(chosen, runs, a.smoke)
    meta = {"date": str(datetime.date.today()), "threads": plan.threads, "plan": dataclasses.asdict(plan), "gemm_gflops": gemm,
            "seconds": timing["total"], "started": start, "timing": timing, "cold": cold, "jobs": a.jobs,
            "stage_seconds": built, "smoke": a.smoke, "only": ",".join(a.levels) if a.only else None,
            "work": str(work.relative_to(ROOT)), "eval_rows": {s: len(d["rows"]) for s, d in suites.items()}, "levels": levels}
    write(entries, meta, docs)


def write(entries: list[dict[str, Any]], meta: dict[str, Any], docs: Path) -> None:
    import importlib.metadata as md

    from edgesmith.stages.bench import _cpu_name
    from report import render
    from sparse_doc import render as render_sparse

    meta |= {"cpu": _cpu_name(), "versions": {p: md.version(p) for p in ("torch", "transformers", "onnxruntime", "openvino", "nncf",
                                                                          "optimum", "optimum-onnx", "optimum-intel")}}
    docs.mkdir(parents=True, exist_ok=True)
    src = docs / "benchmarks.json"
    src.write_text(json.dumps({"meta": meta, "entries": entries}, indent=1, default=str))
    render(src, docs)
    sparse = render_sparse(src, docs)
    log(f"done in {meta['seconds'] / 60:.1f} min; wrote {docs / 'benchmarks.md'}" + (f" and {docs / 'structural-vs-sparse.md'}" if sparse else ""))


if __name__ == "__main__":
    main()
