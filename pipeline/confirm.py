"""Is the pruned bundle measurably faster than the teacher quantized alone? The bench stage measures every artifact
once, each in its own process; on a shared 2-core machine the same file measured 13.2 to 19.2 ms p50 in three such
processes (ONNX Runtime INT8, 2 threads, AMD EPYC), so one reading can crown a pruned artifact that is not faster
at all: a 50%-sparse model, the same dense graph as the teacher's, came out 1.42x "faster" (docs/reliability.md).

So before a pruned artifact ships in place of the teacher quantized alone, the two are measured again in ROUNDS
paired rounds, each a fresh process per artifact, the two back to back. The pruned one ships only if it was at least
bench.min_speedup faster in every round (at the profile's length and at the longest input the bundle takes);
otherwise the quantized teacher ships (it is within the budget too, and is the teacher's own quality) and the report
says pruning's speed-up was not measurable."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from .config import UNPRUNED

ROUNDS = 3

# A row -> its latency measured now in a fresh process: {"p50_ms"}, plus "longest_len" and "longest_p50_ms" where the
# bundle takes longer inputs than the profile's length (latency.measure's figures)
Measure = Callable[[dict[str, Any]], dict[str, float]]


def alternative(rows: list[dict[str, Any]], teacher_metric: float, budget: float) -> dict[str, Any] | None:
    """The row that ships if pruning does not pay: the fastest measured unpruned (quantized teacher) row within the
    quality budget; None when there is none."""
    ok = [r for r in rows if r["branch"] == UNPRUNED and "metric" in r["quality"] and "p50_ms" in r["latency"]
          and teacher_metric - r["quality"]["metric"] <= budget]
    return min(ok, key=lambda r: r["latency"]["p50_ms"]) if ok else None


def needed(chosen: dict[str, Any], alt: dict[str, Any] | None) -> bool:
    """A pruned artifact was chosen on measured latency over a quantized teacher that could ship instead."""
    return alt is not None and chosen["branch"] != UNPRUNED and "p50_ms" in chosen["latency"]


def confirm(chosen: dict[str, Any], alt: dict[str, Any], measure: Measure, rounds: int = ROUNDS,
            min_speedup: float = 1.0) -> dict[str, Any]:
    """ROUNDS paired rounds, each artifact in a fresh process, the order swapped every round (whatever the first of a
    pair gains or loses, both get it); measurable only when the chosen artifact was faster by at least min_speedup (1.0:
    faster at all) in every round, at the profile's length and, where the bundle takes longer inputs, at the longest
    of them too (a bundle must not be slower than the quantized teacher at any length it accepts). speedup: the median
    of the rounds' ratios at the profile's length."""
    pairs = [_pair(chosen, alt, measure, swap=i % 2 == 1) for i in range(rounds)]
    ratios = [a["p50_ms"] / c["p50_ms"] for c, a in pairs]
    at_longest = [a["longest_p50_ms"] / c["longest_p50_ms"] if "longest_p50_ms" in c and "longest_p50_ms" in a else None
                  for c, a in pairs]  # per round; None where a process did not time that length
    longest = [r for r in at_longest if r is not None]
    faster = [_gains(r, min_speedup) and (lr is None or _gains(lr, min_speedup)) for r, lr in zip(ratios, at_longest)]
    out = {"artifact": f"{chosen['branch']}:{chosen['artifact']}", "against": f"{alt['branch']}:{alt['artifact']}",
           "rounds": [_round(c, a) for c, a in pairs], "speedups": ratios, "speedup": statistics.median(ratios),
           "faster_rounds": sum(faster), "measurable": all(faster), "min_speedup": min_speedup}
    if longest:
        out |= {"longest_len": pairs[0][0]["longest_len"], "longest_speedups": longest}
    return out


def _gains(ratio: float, min_speedup: float) -> bool:
    return ratio >= min_speedup if min_speedup > 1 else ratio > 1


def _round(c: dict[str, float], a: dict[str, float]) -> dict[str, float]:
    return {"p50_ms": c["p50_ms"], "against_p50_ms": a["p50_ms"]} | (
        {"longest_p50_ms": c["longest_p50_ms"], "against_longest_p50_ms": a["longest_p50_ms"]}
        if "longest_p50_ms" in c and "longest_p50_ms" in a else {})


def _pair(chosen: dict[str, Any], alt: dict[str, Any], measure: Measure, swap: bool) -> tuple[dict[str, float], dict[str, float]]:
    if swap:
        a = measure(alt)
        return measure(chosen), a
    c = measure(chosen)
    return c, measure(alt)


def sentence(c: dict[str, Any]) -> str:
    """The confirmation in words, for the report."""
    longest = f"; at {c['longest_len']} tokens {_span(c['longest_speedups'])}" if "longest_speedups" in c else ""
    span = _span(c["speedups"]) + longest
    n = len(c["speedups"])
    least = c.get("min_speedup", 1.0)  # absent from bundles made before bench.min_speedup
    if c["measurable"]:
        by = f"at least {least:.2f}x " if least > 1 else ""
        return f"{by}faster in all {n} paired rounds against {c['against']} ({_span(c['speedups'])}, median {c['speedup']:.2f}x{longest})"
    if least > 1:  # three decimals: a 1.046x round must not read as the 1.05x it fell short of
        longest = f"; at {c['longest_len']} tokens {_span(c['longest_speedups'], 3)}" if "longest_speedups" in c else ""
        return (f"{c['artifact']} was {_span(c['speedups'], 3)} as fast as {c['against']} in {n} paired rounds{longest}: "
                f"below bench.min_speedup ({least:.2f}x) in {n - c['faster_rounds']} of them")
    rounds = f"{c['faster_rounds']} of {n} paired rounds only" if c["faster_rounds"] else f"none of {n} paired rounds"
    return f"{c['artifact']} was faster than {c['against']} in {rounds} ({span}): its speed-up is not measurable on this machine"


def _span(ratios: list[float], places: int = 2) -> str:
    return f"{min(ratios):.{places}f}x to {max(ratios):.{places}f}x"
