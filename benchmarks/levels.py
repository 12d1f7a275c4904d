"""The edgesmith levels `benchmarks/compare.py` measures, and their runs.

A level is a recipe, the overrides that keep the harness inside its time budget, and the target it must meet.
Each level runs once per seed (the recipe's `distill.seed`; a level's `seeds` can narrow them) into
runs/compare/<level>-seed<N> from a copy of the recipe written beside it, with the `embedded` profile only: the
targets are measured at 1 thread, the profile's thread count, and a second profile would cost about 1.5 minutes
more per run (quantize + bench stages). Finished stages are reused by edgesmith on a rerun, so an interrupted
harness picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "embedded"
PATH_KEYS = ("teacher.model", "data.source", "data.eval_source", "data.unlabeled")
# Distillation rows per run for sts and sst2-sparse: 20k rows (about 2 min each on 2 cores) keep their runs short
# (docs/benchmarks.md, "Where the harness time went"). sst2 and sst2-fast run their recipes' own rows.
TRAIN_ROWS = 20000
SMOKE = {"data.max_train_samples": 300, "data.max_eval_samples": 200, "prune.structured.importance_samples": 64,
         "quantize.calibration_samples": 32, "bench.iterations": 10, "bench.warmup": 2}


@dataclass(frozen=True)
class Target:
    """Met when the mean p50 speed-up (batch 1, seq 128, 1 thread) over `against` reaches `speedup` and the mean
    quality drop against the teacher is at most `drop` points, with every seed's drop within `spread` of that mean."""

    speedup: float
    against: str  # "ov-int8": the teacher quantized with OpenVINO + NNCF INT8; "best-peer": the fastest INT8 teacher
    drop: float
    spread: float = 0.5
    seeds: int = 3  # a verdict needs this many seeds: one lucky seed is not a claim


@dataclass(frozen=True)
class Level:
    key: str
    recipe: Path
    suite: str  # "sst2": accuracy on SST-2 dev (peers built by benchmarks/peers.py); "sts": Spearman x100 on STS-B dev
    target: Target
    overrides: dict[str, Any] = field(default_factory=dict)
    sparse_seed0: bool = False  # seed 0 also runs the sparse branch (docs/structural-vs-sparse.md); others do not
    seeds: tuple[int, ...] | None = None  # only these of the harness's seeds (None: all of them)
    minutes: float = 10.0  # a run's time on 2 cores, estimated from earlier runs: with --jobs the longest start first


LEVELS = {
    # sst2 and sst2-fast run as shipped, on all 67k sentences and their augmented copies: capped at 20k sentences
    # the medium level's 4-layer student lost 1.83 against 0.69 at seed 1, sst2-fast's about a point more (docs/recovery.md)
    "sst2": Level("sst2", ROOT / "recipes" / "sst2.yaml", "sst2", Target(2.0, "best-peer", 1.0), minutes=30.0),
    "sst2-fast": Level("sst2-fast", ROOT / "recipes" / "sst2-fast.yaml", "sst2", Target(3.0, "ov-int8", 1.0), minutes=30.0),
    # structural against sparse on the same 20k rows, seed 0 only (docs/structural-vs-sparse.md): the old medium
    # level, whose target it keeps; one seed gives no verdict, and the page says so
    "sst2-sparse": Level("sst2-sparse", ROOT / "recipes" / "sst2-sparse.yaml", "sst2", Target(2.0, "best-peer", 1.0),
                         {"data.max_train_samples": TRAIN_ROWS}, sparse_seed0=True, seeds=(0,)),
    "sts": Level("sts", ROOT / "recipes" / "minilm-sts.yaml", "sts", Target(2.0, "ov-int8", 1.0),
                 {"data.max_train_samples": TRAIN_ROWS}),
}


@dataclass(frozen=True)
class Run:
    level: Level
    seed: int
    recipe: Path  # the per-seed copy
    out: Path

    @property
    def name(self) -> str:
        return self.out.name


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[leaf] = value


def _get(data: dict[str, Any], dotted: str) -> Any:
    for p in dotted.split("."):
        data = data.get(p) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def write_recipe(level: Level, seed: int, work: Path, smoke: bool) -> Path:
    """The level's recipe for one seed, with the harness's overrides and paths made absolute (edgesmith resolves
    relative paths from where it runs); written as work/<level>-seed<N>.yaml."""
    recipe = yaml.safe_load(level.recipe.read_text())
    for dotted in PATH_KEYS:
        value = _get(recipe, dotted)
        if isinstance(value, str) and (ROOT / value).exists():
            _set(recipe, dotted, str((ROOT / value).resolve()))
    for dotted, value in (level.overrides | (SMOKE if smoke else {})).items():
        _set(recipe, dotted, value)
    _set(recipe, "distill.seed", seed)
    _set(recipe, "prune.branches", ["structured", "sparse"] if level.sparse_seed0 and seed == 0 else ["structured"])
    recipe |= {"name": f"{level.key}-seed{seed}", "profiles": [PROFILE]}
    path = work / f"{level.key}-seed{seed}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def plan(levels: list[Level], seeds: list[int], work: Path, smoke: bool) -> list[Run]:
    """Every (level, seed) run, its recipe copy written and validated now: a recipe edgesmith refuses stops the
    harness before an hour of work, not in the middle of it."""
    from edgesmith.config import load_recipe
    from edgesmith.errors import EdgesmithError

    work.mkdir(parents=True, exist_ok=True)
    runs = [Run(lv, s, write_recipe(lv, s, work, smoke), work / f"{lv.key}-seed{s}") for lv in levels for s in seeds
            if lv.seeds is None or s in lv.seeds]
    for r in runs:
        try:
            load_recipe(r.recipe, {})
        except EdgesmithError as err:
            raise SystemExit(f"{r.level.recipe.name} ({r.recipe}): {err}\nfix the recipe, or leave the level out with --only") from None
    return runs


def run_all(runs: list[Run], log: Any, jobs: int = 1) -> dict[str, float]:
    """Run (or resume) every edgesmith run; returns each run's wall seconds in this harness run. With `jobs` > 1
    the runs go `jobs` at a time, each in its own process with cores // jobs threads (two distillations at one
    thread each on 2 cores did 1.4x the work of one at two threads, docs/recovery.md), longest first; then every
    bench stage that ran beside another run is redone alone, so that the bundle each run ships is chosen on
    uncontended latency."""
    if jobs <= 1:
        return _run_in_turn(runs, log)
    seconds = _run_side_by_side(sorted(runs, key=lambda r: -r.level.minutes), log, jobs)
    from edgesmith.cli import main

    for r in runs:
        if _contended(r).exists():
            log(f"{r.name}: its bench stage ran beside other runs; redoing it alone")
            if main(["run", str(r.recipe), "--out", str(r.out), "--force", "bench"]) != 0:
                raise SystemExit(f"edgesmith run {r.name} --force bench failed (recipe {r.recipe}); rerun the harness to resume")
            _contended(r).unlink()
    return seconds


def branches(r: Run) -> list[str]:
    """The branches of the run's recipe as written now, and `unpruned`: a branch the recipe dropped leaves its old
    folders behind, which neither the page nor the time count reads."""
    return yaml.safe_load(r.recipe.read_text())["prune"]["branches"] + ["unpruned"]


def stage_seconds(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Each run's stages and the seconds their manifests record for building them, whenever that was: what the run
    costs from nothing, where the harness resumed from stages an earlier run built. Only the stages the run's recipe
    has now: a branch it dropped, or another profile, leaves folders behind that it no longer builds; a manifest
    that cannot be read counts nothing rather than losing the page."""
    out: dict[str, dict[str, float]] = {}
    for r in runs:
        suffixes = set(branches(r)) | {PROFILE}
        out[r.name] = {}
        for p in sorted(r.out.glob("[0-9][0-9]-*/manifest.json")):
            suffix = p.parent.name.split("-", 2)[2:]  # 00-data: none; 03-distill-structured: structured
            if suffix and suffix[0] not in suffixes:
                continue
            try:
                out[r.name][p.parent.name] = float(json.loads(p.read_text())["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return out


def _contended(r: Run) -> Path:
    """Marks a run whose bench stage may have run beside another run until it is redone alone; kept on disk, so a
    harness killed before that redo still does it when started again."""
    return r.out.with_name(r.out.name + ".bench-contended")


def _run_in_turn(runs: list[Run], log: Any) -> dict[str, float]:
    from edgesmith.cli import main

    seconds: dict[str, float] = {}
    start = time.time()
    for i, r in enumerate(runs):
        t = time.time()
        log(f"edgesmith run {r.name} ({i + 1}/{len(runs)})")
        if main(["run", str(r.recipe), "--out", str(r.out)]) != 0:
            raise SystemExit(f"edgesmith run {r.name} failed (recipe {r.recipe}); rerun the harness to resume")
        seconds[r.name] = time.time() - t
        projected = (time.time() - start) / (i + 1) * len(runs)
        log(f"{r.name}: {seconds[r.name] / 60:.1f} min; runs so far {(time.time() - start) / 60:.1f} min, "
            f"all runs projected at {projected / 60:.1f} min")
    return seconds


def _run_side_by_side(runs: list[Run], log: Any, jobs: int) -> dict[str, float]:
    """Each run in its own `edgesmith run` process, `jobs` at a time; its terminal output goes to <out>.log."""
    import os
    import subprocess
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    env = os.environ | {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}
    failed = threading.Event()

    def one(r: Run) -> float:
        if failed.is_set():  # after a failure no queued run starts
            return 0.0
        t, marked_before = time.time(), _contended(r).exists()
        log(f"edgesmith run {r.name} (side by side, {jobs} at a time; output in {r.out}.log)")
        _contended(r).touch()  # before the run: a harness killed during it leaves the mark
        with open(f"{r.out}.log", "w") as out:
            rc = subprocess.run([sys.executable, "-m", "edgesmith", "run", str(r.recipe), "--out", str(r.out)],
                                stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        bench = r.out / f"07-bench-{PROFILE}" / "manifest.json"
        if rc == 0 and not marked_before and bench.stat().st_mtime < t:
            _contended(r).unlink()  # its bench was reused from an earlier harness run, measured alone
        if rc != 0:  # said now: the harness stops once the runs still going have finished (their work is kept)
            failed.set()
            log(f"{r.name} failed (see {r.out}.log); the harness stops when the runs still going finish")
            raise SystemExit(f"edgesmith run {r.name} failed (see {r.out}.log); rerun the harness to resume")
        log(f"{r.name}: {(time.time() - t) / 60:.1f} min")
        return time.time() - t

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip([r.name for r in runs], pool.map(one, runs)))


LABELS = {"openvino-int8-static": "OpenVINO INT8", "onnxruntime-int8-dynamic": "ORT INT8 dynamic",
          "onnxruntime-int8-static": "ORT INT8 static", "openvino-fp32": "OpenVINO FP32", "onnxruntime-fp32": "ORT FP32"}


def _plan_dir(out: Path, branch: str) -> Path:
    """The folder with the shape plan (FLOPs) of a branch: sparse weights keep the teacher's dense shapes."""
    return out / ("01-teacher" if branch in ("unpruned", "sparse") else f"04-shrink-{branch}") / "model"


def _entry(r: Run, branch: str, artifact: str, runtime: str, path: Path) -> dict[str, Any]:
    return {"suite": r.level.suite, "level": r.level.key, "seed": r.seed, "runtime": runtime, "path": str(path),
            "plan": str(_plan_dir(r.out, branch)), "artifact": f"{branch}:{artifact}", "int8": "int8" in artifact,
            "precision": artifact.removeprefix(f"{runtime}-"),
            "label": LABELS.get(artifact, artifact)}


def bundle_entry(r: Run) -> dict[str, Any]:
    """The run's bundle: what a user of the recipe ships."""
    folder = r.out / f"08-bundle-{PROFILE}" / f"edgesmith-{PROFILE}"
    m = json.loads((folder / "manifest.json").read_text())
    e = _entry(r, m["branch"], m["artifact"], m["runtime"], folder / m["model_file"])
    shipped = "the quantized teacher (pruning did not pay)" if m["branch"] == "unpruned" else f"{m['branch']} branch"
    return e | {"name": f"edgesmith {r.level.key} s{r.seed} bundle ({e['label']})", "group": "edgesmith", "bundle": True,
                "note": f"{r.level.recipe.name}, distill.seed {r.seed}: ships {shipped}, {m['artifact']}"}


def candidate_entries(r: Run, branch: str) -> list[dict[str, Any]]:
    """The run's INT8 candidates of one branch (`unpruned`: the teacher quantized as is)."""
    folder = r.out / f"06-quantize-{branch}"  # the harness runs one profile (PROFILE): every candidate is its
    facts = json.loads((folder / "manifest.json").read_text())["facts"]
    out = []
    for c in facts["candidates"]:
        e = _entry(r, branch, f"{c['runtime']}-{c['precision']}", c["runtime"], folder / c["file"])
        if branch == "unpruned":
            who = "teacher" if r.level.suite == "sst2" else "MiniLM"
            e |= {"name": f"edgesmith {r.level.key} s{r.seed} quantized {who} ({e['label']})", "group": "unpruned",
                  "note": f"the teacher unpruned, exported and quantized by edgesmith ({r.name})"}
        else:
            what = "sparse 80%" if branch == "sparse" else "structured"
            e |= {"name": f"edgesmith {r.level.key} s{r.seed} {what} ({e['label']})", "group": branch if branch == "sparse" else "edgesmith",
                  "note": f"{branch} branch candidate of {r.name}"}
        out.append(e)
    return out


STUDENT = "structured:openvino-int8-static"  # the pruned student as the recipes' profiles build it


def first_runs(runs: list[Run]) -> list[Run]:
    """The run of each level with its smallest seed (seed 0 unless the harness was given other `--seeds`): the one
    whose every candidate is measured, and whose teacher and held-out rows stand for its suite."""
    first = {r.level.key: min(x.seed for x in runs if x.level.key == r.level.key) for r in runs}
    return [r for r in runs if r.seed == first[r.level.key]]


def run_entries(runs: list[Run]) -> list[dict[str, Any]]:
    """Bundles of every seed; for each level's first seed also every INT8 candidate (structured, sparse, and the
    quantized teacher); for every seed the pruned student (`student`: True), so a level whose bundle is the quantized
    teacher (pruning did not pay within the recipe's budget) still shows over 3 seeds what its student reaches."""
    entries = [bundle_entry(r) for r in runs]
    firsts = first_runs(runs)
    for r in runs:
        # the branches of the run's recipe as written now: a branch the recipe dropped leaves its old folders behind
        for branch in [b for b in ("structured", "sparse", "unpruned") if b in branches(r)] if r in firsts else ("structured",):
            if (r.out / f"06-quantize-{branch}").is_dir():
                entries += [e for e in candidate_entries(r, branch) if r in firsts or e["artifact"] == STUDENT]
    for e in entries:
        e["student"] = e["artifact"] == STUDENT and not e.get("bundle")
        e["first_seed"] = any(e["level"] == r.level.key and e["seed"] == r.seed for r in firsts)
    return mark_copies(entries)


def mark_copies(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Artifacts with the same bytes (a bundle is a copy of one candidate; two recipes' quantized teachers can be
    byte-identical) are measured once: each later one gets `same_as`, the name of the first, and its figures."""
    import hashlib

    first: dict[str, str] = {}
    for e in entries:
        p = Path(e["path"])
        h = hashlib.sha256()
        for f in [p] + ([p.with_suffix(".bin")] if p.suffix == ".xml" else []):
            h.update(f.read_bytes())
        name = first.setdefault(h.hexdigest(), e["name"])
        if name != e["name"]:
            e["same_as"] = name
    return entries


def teacher_entry(r: Run) -> dict[str, Any]:
    who = "teacher" if r.level.suite == "sst2" else "MiniLM (all-MiniLM-L6-v2)"
    model = r.out / "01-teacher" / "model"
    return {"name": f"{who} PyTorch FP32", "group": "teacher", "suite": r.level.suite, "runtime": "torch", "path": str(model),
            "plan": str(model), "int8": False, "note": "where users start"}
