"""Artifacts are folders with a manifest; a stage reruns only when its config, inputs or version changed.

A stage writes into a hidden temporary folder that is renamed into place when the stage succeeds, so a failed
or interrupted stage never leaves a half-written output behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Frozen
from .registry import STAGES

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    path: Path
    digest: str
    facts: dict[str, Any]

    @staticmethod
    def open(folder: Path) -> "Artifact":
        m = json.loads((folder / MANIFEST).read_text())
        return Artifact(folder, m["digest"], m["facts"])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


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


def run_stage(stage_name: str, cfg: Frozen, inputs: dict[str, Artifact], out: Path, force: bool, log: Any) -> Artifact:
    """Run (or skip, on proof) one stage; returns its artifact."""
    key = cache_key(stage_name, cfg, inputs)
    if not force and (out / MANIFEST).is_file():
        old = json.loads((out / MANIFEST).read_text())
        if old.get("key") == key:
            log(f"[{out.name}] skipped: config, inputs and stage version unchanged")
            return Artifact(out, old["digest"], old["facts"])
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"[{out.name}] running")
    start = time.perf_counter()
    try:
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
        "files": files, "facts": facts,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"[{out.name}] done in {manifest['seconds']} s")
    return Artifact(out, digest, facts)
