"""Latency measured, not predicted: run pipeline.benchrun in a fresh process at a profile's settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import Profile

ROOT = Path(__file__).resolve().parents[1]


def measure(runtime: str, path: Path, profile: Profile, threads: int, vocab: int, warmup: int, iterations: int) -> dict[str, Any]:
    """benchrun's figures (p50/p90/p99 ms, throughput, load ms, RSS), or {'not_measured': why}."""
    cmd = [sys.executable, "-m", "pipeline.benchrun", "--runtime", runtime, "--model", str(path), "--threads", str(threads),
           "--batch", str(profile.batch), "--seq", str(profile.seq_len), "--vocab", str(vocab), "--warmup", str(warmup),
           "--iterations", str(iterations), "--providers", ",".join(profile.execution_providers)]
    env = os.environ | {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else f"exit {done.returncode}"
        return {"not_measured": f"benchmark process failed: {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def effective_threads(profile: Profile) -> tuple[int, str | None]:
    """The profile's thread count, clamped to this machine's cores (and the note that says so)."""
    cores = os.cpu_count() or 1
    if profile.threads > cores:
        return cores, f"threads clamped from {profile.threads} to {cores} (this machine's cores)"
    return profile.threads, None
