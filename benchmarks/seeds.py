"""Levels over seeds: mean and spread of each bundle's quality drop and speed-ups, and the target verdicts.

A target counts as met only on the mean over at least 3 seeds (`Target.seeds`), with every seed's drop within the
target's spread (0.5 points) of it.
"""

from __future__ import annotations

from statistics import mean
from typing import Any


def teacher(entries: list[dict[str, Any]], suite: str) -> dict[str, Any]:
    return next(e for e in entries if e["suite"] == suite and e["group"] == "teacher")


def quantized_teachers(entries: list[dict[str, Any]], suite: str) -> list[dict[str, Any]]:
    """The teacher quantized to INT8 without pruning: the peers' builds and edgesmith's own `unpruned` candidates."""
    return [e for e in entries if e["suite"] == suite and e["group"] in ("peer", "unpruned") and e["int8"]]


def reference(entries: list[dict[str, Any]], suite: str, against: str, key: str = "p50_ms") -> dict[str, Any]:
    """`ov-int8`: the teacher quantized with OpenVINO + NNCF INT8; `best-peer`: the fastest quantized teacher by `key`."""
    if against == "ov-int8":
        return next(e for e in entries if e["suite"] == suite and e.get("role") == "ov-int8")
    return min(quantized_teachers(entries, suite), key=lambda e: e[key])


def spread(values: list[float], nd: int = 2, unit: str = "") -> str:
    """'mean (min to max)', or the single value for one seed."""
    if len(values) == 1:
        return f"{values[0]:.{nd}f}{unit}"
    return f"{mean(values):.{nd}f}{unit} ({min(values):.{nd}f} to {max(values):.{nd}f})"


def summary(entries: list[dict[str, Any]], level: dict[str, Any]) -> dict[str, Any]:
    """Per seed and over seeds: the bundle's quality, drop, p50 and speed-ups at seq 128 and at real lengths."""
    suite, target = level["suite"], level["target"]
    bundles = sorted((e for e in entries if e.get("level") == level["key"] and e.get("bundle")), key=lambda e: e["seed"])
    t = teacher(entries, suite)
    ref, best = reference(entries, suite, target["against"]), reference(entries, suite, "best-peer")
    real_best = reference(entries, suite, "best-peer", "real_p50_ms")
    drops = [t["quality"] - b["quality"] for b in bundles]
    speed = [ref["p50_ms"] / b["p50_ms"] for b in bundles]
    s = {"bundles": bundles, "teacher": t, "ref": ref, "best": best, "real_best": real_best, "drops": drops, "speedups": speed,
         "vs_best": [best["p50_ms"] / b["p50_ms"] for b in bundles],
         "real_speedups": [real_best["real_p50_ms"] / b["real_p50_ms"] for b in bundles]}
    worst = max(abs(d - mean(drops)) for d in drops)
    s |= {"speed_met": mean(speed) >= target["speedup"], "drop_met": mean(drops) <= target["drop"],
          "spread_met": worst <= target["spread"], "worst_spread": worst,
          "real_met": mean(s["real_speedups"]) >= target["speedup"]}
    s["seeds_met"] = len(bundles) >= target.get("seeds", 3)
    s["met"] = s["speed_met"] and s["drop_met"] and s["spread_met"] and s["seeds_met"]
    return s


def student_summary(entries: list[dict[str, Any]], level: dict[str, Any]) -> dict[str, Any] | None:
    """The same figures for the pruned student (structured OpenVINO INT8) of every seed, shipped or not."""
    students = sorted((e for e in entries if e.get("level") == level["key"] and e.get("student")), key=lambda e: e["seed"])
    if not students:
        return None
    return summary([e for e in entries if not e.get("bundle")] + [e | {"bundle": True} for e in students], level)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def target_lines(entries: list[dict[str, Any]], level: dict[str, Any]) -> list[str]:
    """The target of one level in a few lines, with the measured figures behind each verdict."""
    s, target = summary(entries, level), level["target"]
    n, ref, t = len(s["bundles"]), s["ref"], s["teacher"]
    metric = "accuracy" if level["suite"] == "sst2" else "Spearman"
    against = f"{ref['name']}, {ref['p50_ms']:.2f} ms"
    per_seed = ", ".join(f"s{b['seed']} {d:.2f}" for b, d in zip(s["bundles"], s["drops"]))
    ref_name = "the teacher quantized with OpenVINO + NNCF INT8"
    if target["against"] == "best-peer":
        ref_name = "the fastest quantized teacher"
    short = "" if s["seeds_met"] else f" (a verdict needs {target.get('seeds', 3)} seeds)"
    lines = [f"### {level['key']} (`{level['recipe']}`): {verdict(s['met'])} over {n} seed{'s' * (n > 1)}{short}", "",
             f"- p50 at seq 128, speed-up over {ref_name} ({against}): **{spread(s['speedups'], unit='x')}** "
             f"(target ≥ {target['speedup']:g}x on the mean: {verdict(s['speed_met'])})",
             f"- {metric} drop against the teacher ({t['name']}, {t['quality']:.2f}): **{spread(s['drops'])} points**; per seed {per_seed} "
             f"(target ≤ {target['drop']:g} on the mean: {verdict(s['drop_met'])}; every seed within {target['spread']:g} of the mean: "
             f"{verdict(s['spread_met'])}, largest distance {s['worst_spread']:.2f})",
             f"- bundle p50 {spread([b['p50_ms'] for b in s['bundles']], unit=' ms')}; {metric} {spread([b['quality'] for b in s['bundles']])}; "
             f"artifacts shipped: {', '.join(sorted({b['artifact'] for b in s['bundles']}))}",
             f"- at real lengths (every held-out sentence at its own length, batch 1, p50): bundle "
             f"{spread([b['real_p50_ms'] for b in s['bundles']], unit=' ms')} against the fastest quantized teacher there "
             f"({s['real_best']['name']}, {s['real_best']['real_p50_ms']:.2f} ms): **{spread(s['real_speedups'], unit='x')}** "
             f"(the same {target['speedup']:g}x bar: {verdict(s['real_met'])})"]
    if target["against"] != "best-peer":
        lines.append(f"- against the fastest quantized teacher at seq 128 ({s['best']['name']}, {s['best']['p50_ms']:.2f} ms): "
                     f"{spread(s['vs_best'], unit='x')}")
    st = student_summary(entries, level)
    if st is not None:
        per = ", ".join(f"s{b['seed']} {d:.2f}" for b, d in zip(st["bundles"], st["drops"]))
        lines.append(f"- the pruned student itself (structured, OpenVINO INT8, every seed, whether or not it shipped): "
                     f"**{spread(st['speedups'], unit='x')}** over {ref_name}, {metric} drop **{spread(st['drops'])} points** "
                     f"(per seed {per}), at real lengths {spread(st['real_speedups'], unit='x')} over the fastest quantized teacher there: "
                     f"the target on the student alone is {verdict(st['met'])}")
    return lines + [""]
