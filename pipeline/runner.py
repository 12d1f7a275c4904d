"""The stage graph of one run:

    data -> teacher -> export (the teacher unpruned: the plain-quantization baseline, a candidate like any branch)
                    -> per branch: prune -> distill -> shrink -> export
                    -> quantize (each branch, every profile's pairs) -> per profile: bench -> bundle
                    -> report

Each node writes RUN/NN-stage[-branch][-profile]/ with a manifest; unchanged nodes are skipped on proof.
The whole run holds the run folder's lock; an error never deletes a finished stage (see runfolder.py).
Under torchrun or accelerate launch every process walks the graph: the training stages run in all of them, every
other stage on rank 0 alone, which alone holds the lock and writes (see distributed.py).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

from . import distributed
from .artifacts import Artifact, cache_key, reusable, run_stage, sha256_file
from .config import UNPRUNED, Profile, Recipe
from .distributed import World
from .errors import EdgesmithError
from .modeling import resolve_model_dir
from .registry import STAGES
from .runfolder import LOCK_FILE, RunLock, check_run_folder, child, is_empty_run, recover, write_top
from .signing import SigningKey


def source_digest(source: str) -> str:
    """Content hash of the local data files read (so edited files rerun the graph); the name itself for other sources.
    Only the files the loader reads: a run folder inside the data folder had been hashed whole on every run, and its
    own new files had made the data stage rerun each time."""
    from .data import source_files

    files = sorted(source_files(source))
    if not files:
        return source
    return hashlib.sha256("".join(sha256_file(p) for p in files).encode()).hexdigest()[:16]


def model_digest(model: str) -> str:
    folder = resolve_model_dir(model)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + sorted(folder.glob("config.json"))
    return hashlib.sha256("".join(sha256_file(p) for p in files).encode()).hexdigest()[:16] if files else model


def run(recipe: Recipe, profiles: list[Profile], out: Path, force: set[str], log: Callable[[str], None],
        sign_key: Path | None = None) -> dict[str, Artifact]:
    """Run the graph into `out` under its lock. A fresh run that fails before any stage finished leaves nothing;
    otherwise every finished stage stays, and the top-level recipe.json and reports are written only on success.
    Launched as several processes, each calls this and returns when rank 0 has written the whole run folder."""
    signing = SigningKey.of(sign_key)  # a bad key fails now, not after the training stages
    with distributed.join(recipe.distill.batch_size) as world, ExitStack() as lock:
        fresh = world.share(lambda: _claim(out, lock, log))
        try:
            arts = _graph(recipe, profiles, out, force, log, signing, world)
        except BaseException:
            if world.is_main and fresh and is_empty_run(out):  # nothing finished: leave no trace of this run
                (out / LOCK_FILE).unlink()
                out.rmdir()
            raise
        world.share(lambda: _publish(recipe, arts["09-report"], out))
    return arts


def plan(recipe: Recipe, profiles: list[Profile], out: Path, force: set[str], planner: Any, sign_key: Path | None = None) -> None:
    """Walk the graph without running or writing anything (`run --dry-run`, dryrun.py): `planner` is the view each
    run_stage call hands its skip-or-run decision to."""
    check_run_folder(out)  # what the run itself would refuse, the dry run refuses too
    _graph(recipe, profiles, out, force, planner, SigningKey.of(sign_key), World())


def _publish(recipe: Recipe, report: Artifact, out: Path) -> None:
    """After the last stage: the reports at the top of the run folder, and the recipe that made them."""
    for name in ("report.md", "report.html", "summary.json"):
        write_top(out, name, (report.path / name).read_bytes())
    write_top(out, "recipe.json", json.dumps(recipe.model_dump(mode="json"), indent=1).encode())


def _claim(out: Path, lock: ExitStack, log: Callable[[str], None]) -> bool:
    """Check and create the run folder, take its lock (held until `lock` closes) and recover an interrupted swap.
    True when the folder is new."""
    fresh = not out.exists()
    check_run_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise EdgesmithError(f"--out {out}: a file is in the way of the run folder; pass a folder path") from None
    except OSError as err:  # a read-only or virtual file system (/sys, /proc), no permission
        raise EdgesmithError(f"--out {out}: cannot create the run folder ({err.strerror}); pass a folder you can write") from None
    lock.enter_context(RunLock(out))
    for line in recover(out):
        log(f"[recover] {line}")
    return fresh


def _train(world: World, name: str, cfg: Any, inputs: dict[str, Artifact], out: Path, forced: bool,
           log: Callable[[str], None]) -> Artifact:
    """A training stage in every process: the Trainer cuts each batch among them. Rank 0 trains into the run folder
    (run_stage: temp folder, manifest, swap), the others into a scratch folder they delete; all return rank 0's
    artifact. Whether it runs at all is rank 0's cache decision, sent to all (a skipped stage's files are hashed
    twice on rank 0: to decide, then in run_stage)."""
    if world.size == 1:
        return run_stage(name, cfg, inputs, out, forced, log)
    trains = world.share(lambda: forced or reusable(out, cache_key(name, cfg, inputs), name, cfg, inputs)[0] is None)
    if trains and not world.is_main:
        with tempfile.TemporaryDirectory(prefix=f"edgesmith-rank{world.rank}-") as scratch:
            STAGES[name].fn(cfg, inputs, Path(scratch))
    return world.share(lambda: run_stage(name, cfg, inputs, out, forced, log))  # trains on rank 0 with the others


def _graph(recipe: Recipe, profiles: list[Profile], out: Path, force: set[str], log: Callable[[str], None],
           signing: SigningKey | None, world: World) -> dict[str, Artifact]:
    from edgesmith import profiles as profile_store

    from . import stages  # noqa: F401  (registers the stages)
    from .finetune import FinetuneConfig
    from .stages.bench import BenchStageConfig
    from .stages.bundle import BundleStageConfig
    from .stages.data import DataStageConfig, without_unlabeled
    from .stages.distill import DistillStageConfig
    from .stages.export import ExportStageConfig
    from .stages.prune import PruneStageConfig
    from .stages.quantize import QuantizeStageConfig
    from .stages.report import ReportStageConfig
    from .stages.shrink import ShrinkStageConfig
    from .stages.teacher import TeacherStageConfig, trains

    task, max_len = recipe.task, recipe.data.max_length
    arts: dict[str, Artifact] = {}

    def node(name: str, folder: str, cfg: Any, inputs: dict[str, Artifact]) -> Artifact:
        path, forced = child(out, folder), name in force
        if STAGES[name].distributed:
            arts[folder] = _train(world, name, cfg, inputs, path, forced, log)
        else:  # once, on rank 0; the others wait for its artifact
            arts[folder] = world.share(lambda: run_stage(name, cfg, inputs, path, forced, log))
        return arts[folder]

    # data.augment is read by the distill stage alone (it makes the copies): editing it reruns distillation, not the teacher
    data = node("data", "00-data", DataStageConfig(data=recipe.data.model_copy(update={"augment": None}), task=task,
                                                   source_digest=source_digest(recipe.data.source)), {})
    # Only distillation reads data.unlabeled: every other stage sees the data without it, so an edit there (or to
    # the file it names) reruns distillation and what follows it, not the teacher, pruning or the unpruned baseline.
    everything, data = data, without_unlabeled(data)
    teacher = node("teacher", "01-teacher", TeacherStageConfig(
        teacher=recipe.teacher, task=task, max_length=max_len,
        train=FinetuneConfig.of(recipe.distill) if trains(recipe) else None,
        model_digest=model_digest(recipe.teacher.model)),
        {"data": data})
    base = {"data": data, "teacher": teacher}
    # The teacher itself, unpruned, exported and quantized like every branch: what one line of Optimum or NNCF
    # gives. It is a candidate of every profile, so a bundle that plain quantization beats never ships.
    unpruned = node("export", f"05-export-{UNPRUNED}", ExportStageConfig(export=recipe.export, task=task, max_length=max_len),
                    {"data": data, "shrink": teacher})
    branch_arts: dict[str, Artifact] = {f"shrink-{UNPRUNED}": teacher, f"export-{UNPRUNED}": unpruned}
    candidates = (*recipe.prune.branches, UNPRUNED)
    fit_name = recipe.prune.structured.fit_profile
    fit = profile_store.load(fit_name) if fit_name else None
    for b in recipe.prune.branches:
        prune = node("prune", f"02-prune-{b}", PruneStageConfig.of(b, recipe.prune, task, max_len, fit), base)
        distill = node("distill", f"03-distill-{b}", DistillStageConfig.of(b, recipe.distill, task, max_len, recipe.data.augment),
                       base | {"data": everything, "prune": prune})
        shrink = node("shrink", f"04-shrink-{b}", ShrinkStageConfig(branch=b), {"teacher": teacher, "distill": distill})
        export = node("export", f"05-export-{b}", ExportStageConfig(export=recipe.export, task=task, max_length=max_len),
                      {"data": data, "shrink": shrink})
        branch_arts |= {f"prune-{b}": prune, f"shrink-{b}": shrink, f"export-{b}": export}
    # Each branch is quantized once with every pair any profile lists (a pair two profiles share is built once);
    # each profile's bench measures its own pairs.
    pairs = tuple(dict.fromkeys(pair for p in profiles for pair in p.candidates()))
    quants = {f"quantize-{b}": node("quantize", f"06-quantize-{b}", QuantizeStageConfig(
        candidates=pairs, calibration_samples=recipe.quantize.calibration_samples,
        fidelity_samples=recipe.quantize.fidelity_samples, task=task, max_length=max_len),
        base | {"export": branch_arts[f"export-{b}"], "shrink": branch_arts[f"shrink-{b}"]}) for b in candidates}
    per_profile: dict[str, Artifact] = {}
    for p in profiles:
        bench = node("bench", f"07-bench-{p.name}", BenchStageConfig(
            bench=recipe.bench.measurement(), profile=p.measurement(), task=task, max_length=max_len, branches=candidates),
            base | branch_arts | quants)
        bundle = node("bundle", f"08-bundle-{p.name}", BundleStageConfig(
            profile=p, task=task, max_length=max_len, budget=recipe.quantize.accuracy_budget, bench=recipe.bench,
            recipe_json=recipe.canonical_json(), signing=signing), base | branch_arts | {"bench": bench})
        per_profile |= {f"bench-{p.name}": bench, f"bundle-{p.name}": bundle}
    node("report", "09-report", ReportStageConfig(
        name=recipe.name, task=task, accuracy_budget=recipe.quantize.accuracy_budget, branches=recipe.prune.branches,
        profiles=tuple(p.name for p in profiles)), base | branch_arts | per_profile | {"data": everything})  # it names what unlabeled rows were left out
    return arts
