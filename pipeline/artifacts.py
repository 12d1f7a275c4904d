"""Artifacts are folders with a manifest; a stage reruns only when its config, inputs or version changed.

A stage writes into a hidden temporary folder that is swapped into place when the stage succeeds
(`runfolder.replace_folder`), so a failed or interrupted stage never leaves a half-written output behind and
never deletes the finished one it was replacing. A stage is reused only after its files are re-hashed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Frozen
from .registry import STAGES
from .runfolder import replace_folder, temp_for
from .terminal import STAGE_LOG, Lines

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    path: Path
    digest: str
    facts: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # each file's sha256, as its manifest records them

    @staticmethod
    def open(folder: Path) -> "Artifact":
        m = json.loads((folder / MANIFEST).read_text())
        return Artifact(folder, m["digest"], m["facts"], m["files"])

    def without(self, files: tuple[str, ...], facts: tuple[str, ...]) -> "Artifact":
        """This artifact as a stage sees it that reads neither these files nor these facts. Its digest covers only
        the rest of its content, so a change confined to what is left out (the data stage's unlabeled rows, which only
        distillation reads) does not rerun that stage. A placeholder without files (a dry run's stage that would
        rerun, dryrun._placeholder) stays one."""
        if not self.files:
            return self
        kept_files = {k: v for k, v in self.files.items() if k not in files}
        kept_facts = {k: v for k, v in self.facts.items() if k not in facts}
        digest = hashlib.sha256(json.dumps({"files": kept_files, "facts": kept_facts}, sort_keys=True, default=str).encode())
        return Artifact(self.path, digest.hexdigest()[:16], kept_facts, kept_files)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stage_files(folder: Path) -> list[Path]:
    """Every file of a stage folder but its own top-level manifest (a bundle's manifest.json inside is data) and the
    log of what the libraries printed (timings differ from run to run: hashing it would rerun every dependent)."""
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p not in (folder / MANIFEST, folder / STAGE_LOG)]


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in stage_files(folder)}


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("edgesmith", "torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def cache_key(stage_name: str, cfg: Frozen, inputs: dict[str, Artifact]) -> str:
    spec = STAGES[stage_name]
    payload = json.dumps({
        "stage": stage_name, "version": spec.version, "config": json.loads(cfg.canonical_json()),
        "inputs": {k: a.digest for k, a in sorted(inputs.items())},
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


ABSENT = "<absent>"  # a field the recorded config did not have, or the new one lacks


def changed_leaves(old: Any, new: Any, path: str = "") -> list[str]:
    """The leaf fields that differ between two JSON configs, each as `dotted.path (old -> new)`."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for k in sorted(old.keys() | new.keys())
                for line in changed_leaves(old.get(k, ABSENT), new.get(k, ABSENT), f"{path}.{k}" if path else k)]
    if isinstance(old, str) and isinstance(new, str) and old != new and old.startswith("{") and new.startswith("{"):
        try:  # a JSON object kept as a string (the bundle's recipe_json): name the fields inside it that changed
            return changed_leaves(json.loads(old), json.loads(new), path)
        except ValueError:
            pass
    return [] if old == new else [f"{path} ({_short(old)} -> {_short(new)})"]


def _short(value: Any) -> str:
    text = value if value is ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


def why_rerun(old: dict[str, Any], stage_name: str, cfg: Frozen, inputs: dict[str, Artifact]) -> str:
    """Why a recorded stage no longer matches its cache key: the stage version, each changed input, and the first
    few changed config fields (dotted paths, old -> new), compared with what its manifest recorded."""
    reasons = []
    if old.get("stage_version") != STAGES[stage_name].version:
        reasons.append(f"stage version changed ({old.get('stage_version')} -> {STAGES[stage_name].version})")
    parents = old.get("parents", {})
    changed = [k for k, a in sorted(inputs.items()) if parents.get(k) != a.digest] + sorted(parents.keys() - inputs.keys())
    if changed:  # a bench or report stage has many inputs: name a few
        reasons.append(f"input{'s' if len(changed) > 1 else ''} {_first_few(changed)} changed")
    fields = changed_leaves(old.get("config"), json.loads(cfg.canonical_json()))
    if len(fields) == 1:  # "config field distill.temperature changed (2.0 -> 3.0)"
        path, change = fields[0].split(" ", 1)
        reasons.append(f"config field {path} changed {change}")
    elif fields:
        reasons.append(f"config fields changed: {_first_few(fields)}")
    return "; ".join(reasons) or "cache key changed"


def _first_few(names: list[str], few: int = 3) -> str:
    return ", ".join(names[:few]) + (f" and {len(names) - few} more" if len(names) > few else "")


def reusable(out: Path, key: str, stage_name: str, cfg: Frozen, inputs: dict[str, Artifact]) -> tuple[dict[str, Any] | None, str]:
    """(manifest, "") when the finished stage in `out` has this key and its files are exactly those it recorded;
    else (None, why it must run). Sizes are compared first, then every file's sha256."""
    if not (out / MANIFEST).is_file():
        return None, "no previous output"
    try:
        old = json.loads((out / MANIFEST).read_text())
        recorded: dict[str, str] = old["files"]
    except (ValueError, KeyError, TypeError):
        return None, "its manifest is unreadable"
    if old.get("key") != key:
        return None, why_rerun(old, stage_name, cfg, inputs)
    present = {str(p.relative_to(out)) for p in stage_files(out)}
    if present != set(recorded):
        changed = sorted(present ^ set(recorded))
        return None, f"files added or missing since it was built ({', '.join(changed[:3])})"
    sizes = old.get("sizes", {})
    for name, digest in recorded.items():
        if (name in sizes and (out / name).stat().st_size != sizes[name]) or sha256_file(out / name) != digest:
            return None, f"{name} changed since it was built"
    return old, ""


def run_stage(stage_name: str, cfg: Frozen, inputs: dict[str, Artifact], out: Path, force: bool, log: Any) -> Artifact:
    """Run (or skip, on proof) one stage; returns its artifact. `log` is a terminal view (terminal.Lines and its
    kinds: the default ones send library output to the stage's log file) or a plain callable that takes lines."""
    view = log if isinstance(log, Lines) else Lines(log)
    key = cache_key(stage_name, cfg, inputs)
    old, why = reusable(out, key, stage_name, cfg, inputs)
    skip, why = old is not None and not force, "forced" if old is not None else why
    if view.dry:  # --dry-run (dryrun.Planner): the decision is reported, nothing runs
        return view.planned(stage_name, cfg, inputs, out, old if skip else None, why)
    if skip:
        view.skipped(out.name)
        return Artifact(out, old["digest"], old["facts"], old["files"])
    tmp = temp_for(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    try:
        with view.running(out, why, tmp):
            facts = STAGES[stage_name].fn(cfg, inputs, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = file_hashes(tmp)
    # The digest covers the output files too: a forced rerun that changes them makes downstream stages rerun.
    digest = hashlib.sha256((key + json.dumps(files, sort_keys=True)).encode()).hexdigest()[:16]
    manifest = {
        "stage": stage_name, "stage_version": STAGES[stage_name].version, "key": key, "digest": digest,
        "config": json.loads(cfg.canonical_json()), "parents": {k: a.digest for k, a in inputs.items()},
        "libraries": library_versions(), "seconds": round(time.perf_counter() - start, 2),
        "files": files, "sizes": {name: (tmp / name).stat().st_size for name in files}, "facts": facts,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
    replace_folder(tmp, out)
    view.done(out.name, manifest["seconds"])
    return Artifact(out, digest, facts, files)
