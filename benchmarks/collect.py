"""Write docs/results.md from finished runs (their summary.json, bench results and stage manifests).

    python benchmarks/collect.py runs/sst2 runs/quickstart
    python benchmarks/collect.py --out docs/OTHER.md runs/NAME ...

Every figure in docs/results.md comes from these files; nothing is typed in by hand. The targets checked are
those of the end-to-end issue: for SST-2 on mobile-cpu, within 1.5 accuracy points of the teacher, p50 at
least 3x lower than the teacher's PyTorch FP32 p50 in the same run, and files at most 30% of the teacher's.
"""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path

MB = 2**20


def stage_seconds(run: Path) -> float:
    return sum(json.loads(m.read_text())["seconds"] for m in run.glob("*/manifest.json"))


def run_section(run: Path) -> list[str]:
    summary = json.loads((run / "summary.json").read_text())
    lines = [f"## Run `{run.name}` ({summary['task']}, metric: {summary['metric']})", "",
             f"Stage time, summed from the manifests: {stage_seconds(run) / 60:.1f} min "
             "(the wall time of one uninterrupted run; stages skipped on a rerun count their first run).", ""]
    lines += ["| profile | bundle artifact | quality | teacher | drop | p50 ms | teacher p50 ms | speed-up | p90 ms | size MB | size ratio | peak RSS MB | teacher RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary["profiles"].items():
        t = s["teacher"]
        f = lambda v, nd=2: "—" if v is None else f"{v:.{nd}f}"  # noqa: E731
        lines.append(f"| {name} | {s['artifact']} | {f(s['quality'])} | {f(t['quality'])} | {f(s['quality_drop'])} | {f(s['p50_ms'])} | "
                     f"{f(t['p50_ms'])} | {f(s['speedup_p50_vs_teacher'])}x | {f(s['p90_ms'])} | {f(s['size_mb'])} | "
                     f"{f(s['size_ratio_vs_teacher'])} | {f(s['peak_memory_mb'], 0)} | {f(t['peak_memory_mb'], 0)} |")
    lines.append("")
    lines += [f"- {name}, against the teacher quantized alone: {s['verdict']}" for name, s in summary["profiles"].items() if "verdict" in s]
    lines.append("")
    for bench in sorted(run.glob("07-bench-*/manifest.json")):
        facts = json.loads(bench.read_text())["facts"]
        lines += [f"### {bench.parent.name}: all artifacts (CPU {facts['cpu']}, threads {facts['threads']}"
                  + (f", {facts['thread_clamp']}" if facts["thread_clamp"] else "") + ")", "",
                  "| branch | artifact | quality | p50 ms | p90 ms | p99 ms | seq/s | size MB | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
        for r in facts["rows"]:
            lat, q = r["latency"], r["quality"]
            g = lambda k, nd=2, lat=lat: f"{lat[k]:.{nd}f}" if k in lat else "n/m"  # noqa: E731
            lines.append(f"| {r['branch']} | {r['artifact']} | {q.get('metric', float('nan')):.2f} | {g('p50_ms')} | {g('p90_ms')} | "
                         f"{g('p99_ms')} | {g('throughput', 1)} | {r['bytes'] / MB:.1f} | {g('peak_rss_mb', 0)} |")
        lines.append("")
    return lines


def fit_section(run: Path) -> list[str]:
    """Latency-budget targeting (prune.structured.fit_profile): the measured keep-ratio curve and the choice."""
    manifest = run / "02-prune-structured" / "manifest.json"
    fit = json.loads(manifest.read_text())["facts"].get("fit") if manifest.is_file() else None
    if not fit:
        return []
    from edgesmith.fit import describe_target

    lines = [f"### Latency targeting: profile `{fit['profile']}`, {describe_target(fit)}", "",
             "Each keep ratio is the teacher sliced by the Fisher plan, exported and quantized, measured once (40 runs; on a noisy machine neighbouring ratios can swap order) "
             f"before any training. Chosen: keep {fit['keep']:.0%} ({'met' if fit['met'] else 'NOT met'}).", "",
             "| keep | p50 ms | p90 ms | speed-up |", "|---|---|---|---|"]
    lines += [f"| {c['keep']:.0%} | {c['p50_ms']:.2f} | {c['p90_ms']:.2f} | {c['speedup']:.2f}x |" if "speedup" in c else
              f"| {c['keep']:.0%} | {c['p50_ms']:.2f} | {c['p90_ms']:.2f} | |" for c in fit["curve"]]
    return lines + [""]


def targets(run: Path) -> list[str]:
    s = json.loads((run / "summary.json").read_text())["profiles"].get("mobile-cpu")
    if not s:
        return []
    checks = [("accuracy within 1.5 points of the teacher", s["quality_drop"], s["quality_drop"] <= 1.5),
              ("p50 at least 3x lower than the teacher's PyTorch FP32", s["speedup_p50_vs_teacher"], (s["speedup_p50_vs_teacher"] or 0) >= 3),
              ("files at most 30% of the teacher's", s["size_ratio_vs_teacher"], s["size_ratio_vs_teacher"] <= 0.30)]
    return ["### Targets (mobile-cpu bundle)", ""] + [f"- {name}: measured {v:.3f} → **{'met' if ok else 'NOT met'}**" for name, v, ok in checks] + [""]


def main() -> None:
    args = sys.argv[1:]
    target = Path("docs/results.md")
    if args[:1] == ["--out"]:  # another page, so that a partial set of runs does not replace docs/results.md
        target, args = Path(args[1]), args[2:]
    runs = [Path(p) for p in args] or [Path("runs/sst2"), Path("runs/quickstart")]
    import importlib.metadata as md

    versions = ", ".join(f"{p} {md.version(p)}" for p in ("torch", "transformers", "onnxruntime", "openvino", "nncf"))
    out = ["# Measured results", "",
           f"Collected {datetime.date.today()} by `python benchmarks/collect.py {' '.join(sys.argv[1:])}` on "
           f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores; {versions}.",
           "Every latency is measured in its own process at the profile's batch and sequence length, after warm-up; "
           "teacher and artifacts come from the same run.", ""]
    for run in runs:
        if (run / "summary.json").is_file():
            out += run_section(run) + fit_section(run) + (targets(run) if run.name == "sst2" else [])
    target.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
