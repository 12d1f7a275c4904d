"""Latency measured, not predicted: run edgesmith.benchrun in a fresh process at a profile's settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import Measurement
from .errors import EdgesmithError


def measure(runtime: str, path: Path, profile: Measurement, threads: int, vocab: int, warmup: int, iterations: int,
            output: str | None = None, longest: int | None = None) -> dict[str, Any]:
    """benchrun's figures (p50/p90/p99 ms, throughput, load ms, RSS), each call fetching the graph output `output`
    (the task's output_name, as the bundle does); with `longest` beyond the profile's sequence length, the
    longest_* figures at that length too. A failed benchmark process is an error, never
    "not measured" (that is only for hardware this machine lacks, decided before anything runs).

    `-P` keeps the working directory off sys.path: a user's own `edgesmith/` or `pipeline/` folder there cannot
    stand in for the installed package."""
    cmd = [sys.executable, "-P", "-m", "edgesmith.benchrun", "--runtime", runtime, "--model", str(path), "--threads", str(threads),
           "--batch", str(profile.batch), "--seq", str(profile.seq_len), "--vocab", str(vocab), "--warmup", str(warmup),
           "--iterations", str(iterations), "--providers", ",".join(profile.execution_providers)]
    cmd += ["--output", output] if output is not None else []
    cmd += ["--longest", str(longest)] if longest is not None and longest > profile.seq_len else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(done.stderr)  # what the runtime printed: into the stage's log (on the terminal with -v)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else "no output"
        raise EdgesmithError(f"benchmark of {path} failed (exit {done.returncode}): {last}; "
                             f"rerun `{' '.join(cmd[1:])}` to see the whole error")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise EdgesmithError(f"benchmark of {path} printed no result ({lines[-1][:200]!r}); rerun it by hand to see why") from None


def budget_p90(lat: dict[str, Any]) -> float | None:
    """The p90 a profile's budget holds a build to: at the longest input the bundle accepts where that is longer
    than the profile's sequence length (benchrun's longest_*), else at the profile's length. A bundle that takes
    128 tokens but was held to an embedded profile's 20 ms at 64 could miss it on every long input."""
    return lat.get("longest_p90_ms", lat.get("p90_ms"))


def budget_peak_mb(lat: dict[str, Any]) -> float | None:
    """The peak resident memory a profile's budget holds a build to, by the same rule as `budget_p90`."""
    return lat.get("longest_peak_rss_mb", lat.get("peak_rss_mb"))


def effective_threads(profile: Measurement) -> tuple[int, str | None]:
    """The profile's thread count, clamped to this machine's cores (and the note that says so)."""
    cores = os.cpu_count() or 1
    if profile.threads > cores:
        return cores, f"threads clamped from {profile.threads} to {cores} (this machine's cores)"
    return profile.threads, None
