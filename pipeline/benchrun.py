"""Measure one artifact in a fresh process, so its peak memory is its own: `python -m edgesmith.benchrun ...`.

Prints one JSON line: load_ms, latency p50/p90/p99 (ms, after warm-up), throughput (sequences/s),
rss_before_load_mb and peak_rss_mb (resident set size of this process, MiB), and session: the
runtimes.session_settings dict the model was opened with. With --longest N, also longest_p50_ms/longest_p90_ms at
sequence length N: a bundle that accepts inputs longer than the profile's sequence length is held to its p90 budget
at the longest of them, not only at the profile's length.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.runtimes import REFERENCE, RUNTIMES, get, open_session


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: Linux carries that across exec from the
    parent that forked us, so a child of a big process would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _import_runtime(kind: str) -> None:
    """Import the runtime before the baseline reading, so the model's own memory is peak minus baseline."""
    for module in get(kind).modules:
        __import__(module)


def feed(names: list[str], batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed pseudo-random token ids at full length: the profile's worst case, same for every artifact."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(1000, vocab // 2), vocab, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    out = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {n: out[n] for n in names}


def measure(kind: str, path: Path, threads: int, batch: int, seq: int, vocab: int, warmup: int, iterations: int,
            providers: tuple[str, ...], lengths: list[int] | None = None, output: str | None = None,
            longest: int | None = None) -> dict[str, Any]:
    """`output`: the graph output each call fetches (the task's, as the bundle fetches it). `longest`: also time
    max(10, iterations // 2) calls at that sequence length (same batch)."""
    _import_runtime(kind)
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    session = open_session(kind, path, threads, providers, output=output)
    load_ms = (time.perf_counter() - start) * 1000
    times = _timed(session, feed(session.input_names, batch, seq, vocab), warmup, iterations)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    peak = _status_mb("VmHWM")
    real = _real_lengths(session, lengths, vocab) if lengths else {}
    return {"load_ms": load_ms, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "mean_ms": float(np.mean(times)),
            "throughput": batch * 1000 / float(np.mean(times)), "rss_before_load_mb": before, "peak_rss_mb": peak,
            "session": session.settings} | real | (_longest(session, batch, longest, vocab, iterations) if longest else {})


def _timed(session: Any, inputs: dict[str, np.ndarray], warmup: int, iterations: int) -> list[float]:
    for _ in range(warmup):
        session.run(inputs)
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        session.run(inputs)
        times.append((time.perf_counter() - t) * 1000)
    return times


def _longest(session: Any, batch: int, seq: int, vocab: int, iterations: int) -> dict[str, float]:
    """p50/p90 and the peak memory so far, at the longest input the bundle accepts (after the profile's length)."""
    times = _timed(session, feed(session.input_names, batch, seq, vocab), 3, max(10, iterations // 2))
    p50, p90 = np.percentile(times, [50, 90])
    return {"longest_len": seq, "longest_p50_ms": float(p50), "longest_p90_ms": float(p90),
            "longest_peak_rss_mb": _status_mb("VmHWM")}


def _real_lengths(session: object, lengths: list[int], vocab: int) -> dict[str, float]:
    """Batch-1 latency over a list of real token lengths (e.g. every dev sentence): p50/p90 in ms."""
    times = []
    for n in lengths:
        inputs = feed(session.input_names, 1, n, vocab)  # type: ignore[attr-defined]
        t = time.perf_counter()
        session.run(inputs)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t) * 1000)
    p50, p90 = np.percentile(times, [50, 90])
    return {"real_p50_ms": float(p50), "real_p90_ms": float(p90), "real_mean_len": float(np.mean(lengths))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runtime", required=True, choices=[REFERENCE.name, *RUNTIMES])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--vocab", type=int, default=30522, help="token ids are drawn below this")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--providers", default="CPUExecutionProvider")
    p.add_argument("--lengths", type=Path, help="JSON list of token lengths: also measure batch-1 latency at these")
    p.add_argument("--longest", type=int, help="also time calls at this sequence length (the longest input a bundle takes)")
    p.add_argument("--output", help="the graph output to fetch (the task's output_name); default: the graph's only one")
    a = p.parse_args()
    result = measure(a.runtime, a.model, a.threads, a.batch, a.seq, a.vocab, a.warmup, a.iterations, tuple(a.providers.split(",")),
                     json.loads(a.lengths.read_text()) if a.lengths else None, a.output, a.longest)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
