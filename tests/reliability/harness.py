"""Shared harness for the reliability suites (import it: `from harness import ...`; it is not a conftest.py, so
that `from conftest import make_model_dir` keeps meaning tests/conftest.py): run the real console entry point in a subprocess and check the
contract every refusal must keep: exit status 2, exactly one line on stderr that starts with `edgesmith: error:`
and names the problem, no traceback, and the disk state the caller expects afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conftest.py helpers (make_model_dir, write_tsv)


@dataclass(frozen=True)
class Refusal:
    code: int
    stderr: str
    stdout: str


def edgesmith(*args: str, cwd: Path | None = None, timeout: int = 600) -> Refusal:
    """`python -P -m edgesmith.cli ARGS` in a fresh process (the working directory kept off sys.path)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-P", "-m", "edgesmith.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
    return Refusal(done.returncode, done.stderr, done.stdout)


def assert_refused(result: Refusal, *needles: str) -> None:
    """Exit 2, one line on stderr naming the problem (every needle appears, case-insensitive), no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 2, f"exit {result.code}, stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("edgesmith: error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"


def tree(folder: Path) -> dict[str, int]:
    """Every file under folder with its size: the disk state compared before and after a refusal."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def short_profile(tmp_path: Path) -> Path:
    """A one-candidate CPU profile whose sequence length fits the tiny models' 64 positions."""
    path = tmp_path / "short.yaml"
    path.write_text("description: short\nruntimes: {onnxruntime: [int8-dynamic]}\nthreads: 1\nseq_len: 16\n")
    return path


def write_recipe(folder: Path, model: Path | str, data: Path | str, profile: Path, extra: str = "", name: str = "tiny") -> Path:
    """A small recipe for the tiny models; `extra` is appended YAML (top-level keys other than those written here)."""
    path = folder / "recipe.yaml"
    path.write_text(f"name: {name}\ntask: classification\nteacher: {{model: '{model}'}}\ndata: {{source: '{data}'}}\n"
                    f"profiles: ['{profile}']\n{extra}")
    return path
