"""`edgesmith run --dry-run` (`edgesmith.plan`): walk the run's stage graph and say, for each stage, whether it would
be skipped (unchanged, proven the way a run proves it: the same cache key and re-hashed files) or run and why, with
an estimate of its time. Nothing runs and nothing is written: the run folder is not even created.

The graph is runner._graph itself; the `Planner` is the view it hands to artifacts.run_stage, which makes its usual
decision and then, instead of running a stage, reports it here and returns a placeholder artifact (digest
PENDING), so that the stages downstream of one that reruns say so too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import MANIFEST, Artifact, _first_few
from .config import Frozen, Profile, Recipe
from .terminal import Lines

PENDING = "pending"  # the digest of a stage that would rerun: known only once it has run

# Seconds per stage of the quickstart (all-MiniLM-L6-v2, 22.7M parameters, 8,803 training rows, seq 128) on 2 CPU
# cores, from its manifests (runs/quickstart, 2026-11-26): the base of a stage's estimate when no earlier run of it
# in this folder says better. Scaled by model size, and training by its optimizer steps.
# The bundle's 2 s leave out the paired rounds that confirm a pruned pick's speed-up, added in `_rough`.
QUICKSTART_SECONDS = {"data": 5.0, "teacher": 5.0, "shrink": 1.0, "export": 5.0, "bundle": 2.0, "report": 1.0}
QUICKSTART_PARAMS = 22.7e6
DISTILL_STEP_S = 0.33  # one optimizer step at batch 32, seq 128 (552 steps in 168-200 s)
STRUCTURED_PRUNE_S = 3.0  # Fisher scores on 256 samples
FIT_PRUNE_S = 60.0  # prune.structured.fit_profile: a latency curve of about ten ratios
QUANTIZE_PAIR_S = 9.0  # one (runtime, precision) candidate: 11-19 s for 2-3 pairs; 27 s for 3 with dynamic INT8 scored a text a call (2026-12-07)
BENCH_ROW_S = 1.0, 2.5  # one benchmark process: starting it, and 100 iterations (47-54 s for 13-16 rows)


@dataclass(frozen=True)
class PlannedStage:
    folder: str  # 03-distill-structured
    stage: str  # distill
    inputs: tuple[str, ...]  # the folders it reads
    action: str  # "skip" or "run"
    why: str
    seconds: float | None  # when it runs: the estimate
    basis: str  # "last run" (its previous manifest's duration) or "estimated" (from the recipe's size)


@dataclass(frozen=True)
class Plan:
    out: Path
    stages: list[PlannedStage]

    @property
    def seconds(self) -> float:
        return sum(s.seconds or 0.0 for s in self.stages if s.action == "run")

    def table(self) -> str:
        """One line per stage: folder, skip/run, estimate, why, and the folders it reads (the graph's edges)."""
        state = "" if self.out.exists() else f" ({self.out} does not exist yet)"
        rows = [[s.folder, s.action, _estimate(s), s.why + ("  <- " + _first_few(list(s.inputs), 4) if s.inputs else "")]
                for s in self.stages]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"dry run of {self.out}{state}: nothing is run or written"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3] for r in rows]
        runs = [s for s in self.stages if s.action == "run"]
        bases = sorted({s.basis for s in runs})
        lines.append(f"{len(runs)} of {len(self.stages)} stages would run, about {_duration(self.seconds)} "
                     f"({' and '.join(bases) or 'nothing to do'}); {len(self.stages) - len(runs)} skipped")
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        return self.table()


class Planner(Lines):
    """The dry run's view: collects run_stage's decisions instead of printing them."""
    dry = True

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(lambda line: None)
        self.recipe = recipe
        self.stages: list[PlannedStage] = []
        self._scale: float | None = None

    def planned(self, stage_name: str, cfg: Frozen, inputs: dict[str, Artifact], out: Path, old: dict[str, Any] | None,
                why: str) -> Artifact:
        """run_stage's decision: skip (`old`: the finished stage's manifest) or run (`why`). Returns the finished
        artifact, or a placeholder for one that would run."""
        if old is not None:
            self.stages.append(PlannedStage(out.name, stage_name, _folders(inputs), "skip", "unchanged", None, ""))
            return Artifact(out, old["digest"], old["facts"], old["files"])
        pending = sorted(k for k, a in inputs.items() if a.digest == PENDING)
        if pending and why.startswith(("input", "stage version", "config")):  # why_rerun's reasons: name the rerun inputs
            own = [r for r in why.split("; ") if not r.startswith("input")]
            why = "; ".join([f"input{'s' if len(pending) > 1 else ''} {_first_few(pending)} rerun{'' if len(pending) > 1 else 's'}"] + own)
        seconds, basis = self._last(stage_name, cfg, out), "last run"
        if seconds is None:
            seconds, basis = self._rough(stage_name, cfg, out), "estimated"
        self.stages.append(PlannedStage(out.name, stage_name, _folders(inputs), "run", why, seconds, basis))
        return _placeholder(stage_name, cfg, out)

    def _last(self, stage_name: str, cfg: Any, out: Path) -> float | None:
        """The stage's duration in its previous manifest here (distillation's scaled to the new step count)."""
        try:
            old = json.loads((out / MANIFEST).read_text())
            seconds = float(old["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        steps = old.get("facts", {}).get("steps") if stage_name == "distill" else None
        return seconds * self._distill_steps(cfg, out) / steps if steps else seconds

    def _distill_steps(self, cfg: Any, out: Path) -> float:
        d = cfg.distill
        rows = _train_rows(out.parent, self.recipe) * (1 + (cfg.augment.copies if cfg.augment else 0))
        return d.max_steps or math.ceil(rows / d.batch_size) * d.epochs

    def _rough(self, stage_name: str, cfg: Any, out: Path) -> float:
        """A stage's time from the quickstart's, scaled by the teacher's size (and training by its steps)."""
        scale = self._model_scale()
        if stage_name == "distill":
            batch = cfg.distill.batch_size
            return DISTILL_STEP_S * self._distill_steps(cfg, out) * scale * (batch / 32) * (cfg.max_length / 128)
        if stage_name == "prune":
            if cfg.branch == "sparse":
                return 0.5 * scale
            return (STRUCTURED_PRUNE_S * cfg.structured.importance_samples / 256 + (FIT_PRUNE_S if cfg.fit else 0.0)) * scale
        if stage_name == "quantize":
            return QUANTIZE_PAIR_S * len(cfg.candidates) * scale
        if stage_name == "bench":
            p: Profile = cfg.profile
            rows = 1 + len(cfg.branches) * (len(p.runtimes) + len(p.candidates()))
            return rows * (BENCH_ROW_S[0] + BENCH_ROW_S[1] * scale * cfg.bench.iterations / 100)
        if stage_name == "bundle":  # at most: a pruned pick re-measured against the quantized teacher (confirm.py)
            from .confirm import ROUNDS

            per_run = BENCH_ROW_S[0] + BENCH_ROW_S[1] * scale * cfg.bench.iterations / 3 / 100
            return QUICKSTART_SECONDS["bundle"] + 2 * ROUNDS * per_run
        return QUICKSTART_SECONDS.get(stage_name, 5.0) * (scale if stage_name in ("teacher", "export") else 1.0)

    def _model_scale(self) -> float:
        if self._scale is None:
            from .arch import dims
            from .modeling import read_config, resolve_model_dir

            config = read_config(resolve_model_dir(self.recipe.teacher.model))
            d = dims(config)
            params = config.vocab_size * d["hidden"] + d["layers"] * (4 * d["hidden"] ** 2 + 2 * d["hidden"] * d["ffn"])
            self._scale = params / QUICKSTART_PARAMS
        return self._scale


def plan(recipe: Recipe, profiles: list[Profile], out: Path, force: set[str], sign_key: Path | None = None) -> Plan:
    """What `runner.run` with these arguments would do (see the module docstring); reads, never writes."""
    from . import runner

    planner = Planner(recipe)
    runner.plan(recipe, profiles, out, force, planner, sign_key)
    return Plan(out, planner.stages)


def _placeholder(stage_name: str, cfg: Frozen, out: Path) -> Artifact:
    """What a stage that would rerun hands downstream: digest PENDING. The data stage's, when only fields that
    distillation alone reads changed (stages.data.DISTILL_ONLY_FIELDS: data.unlabeled), also carries its previous files
    and facts, so that every other stage's view of it (without_unlabeled) is the previous one, as the run will find:
    the dry run had promised to rerun the teacher, pruning and the unpruned baseline, which the run then skipped."""
    from .artifacts import changed_leaves
    from .registry import STAGES
    from .stages.data import DISTILL_ONLY_FIELDS

    try:
        old = json.loads((out / MANIFEST).read_text()) if stage_name == "data" else None
        changed = [leaf.split(" ", 1)[0] for leaf in changed_leaves(old["config"], json.loads(cfg.canonical_json()))] if old else []
        if old and old.get("stage_version") == STAGES[stage_name].version and changed and set(changed) <= set(DISTILL_ONLY_FIELDS):
            return Artifact(out, PENDING, old["facts"], old["files"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return Artifact(out, PENDING, {})


def _folders(inputs: dict[str, Artifact]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.path.name for a in inputs.values()))


def _train_rows(run: Path, recipe: Recipe) -> int:
    """The training rows: the data stage's count when it ran before, else the local training file's lines (capped
    by the recipe), else the recipe's cap, else the quickstart's. Without the file's count a fresh run of a large
    data set was estimated at the quickstart's 8,803 rows (sst2-fast: 12 min planned for about 55)."""
    try:
        return int(json.loads((run / "00-data" / MANIFEST).read_text())["facts"]["train_rows"])
    except (OSError, ValueError, KeyError, TypeError):
        counted = _counted_rows(recipe.data)
        cap = recipe.data.max_train_samples
        return min(counted, cap or counted) if counted else cap or 8803


def _counted_rows(d: Any) -> int | None:
    """Non-blank lines of a local training file (less a TSV/CSV header, and less the held-out share when the
    evaluation rows are split from it); None for other sources. A line count, not a parse: an estimate."""
    from .data import EVAL_NAMES, _find

    path = Path(d.source)
    if path.is_dir():
        train, split = _find(path, ("train",)), d.eval_source is None and _find(path, EVAL_NAMES) is None
    elif path.is_file():
        train, split = path, d.eval_source is None
    else:
        return None
    if train is None:
        return None
    with train.open("rb") as f:
        rows = sum(1 for line in f if line.strip()) - (train.suffix in (".tsv", ".csv"))
    return max(0, int(rows * (1 - d.eval_fraction)) if split else rows)


def _estimate(s: PlannedStage) -> str:
    return "" if s.seconds is None else f"~{_duration(s.seconds)} ({s.basis})"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
