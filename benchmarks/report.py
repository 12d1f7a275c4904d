"""Render docs/benchmarks.md and docs/benchmarks.png from docs/benchmarks.json (written by compare.py).

    python benchmarks/report.py      (re-renders without re-measuring)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MB = 2**20


def _targets(entries: list[dict[str, Any]], teacher: dict[str, Any], best: dict[str, Any]) -> list[str]:
    medium = next((e for e in entries if e.get("level") == "medium" and e.get("profile") == "mobile-cpu"), None)
    if not medium:
        return []
    ratio = best["p50_ms"] / medium["p50_ms"]
    drop = teacher["accuracy"] - medium["accuracy"]
    return ["## Target: medium mobile-cpu bundle vs the best peer", "",
            f"- p50 speed-up over the best peer ({best['name']}, {best['p50_ms']:.2f} ms): **{ratio:.2f}x** "
            f"(target 2x: **{'met' if ratio >= 2 else 'NOT met'}**)",
            f"- accuracy drop vs the teacher: **{drop:.2f} points** (target ≤ 1.0: **{'met' if drop <= 1.0 else 'NOT met'}**)"
            + (f"; paired standard error of that drop on these 872 sentences: ±{medium['drop_se']:.2f} points" if "drop_se" in medium else ""),
            ""]


def _ops(entries: list[dict[str, Any]]) -> list[str]:
    """OpenVINO's per-node counters by node type: does the time go to the matrix multiplies pruning shrinks?"""
    profiled = [e for e in entries if e.get("ops")]
    if not profiled:
        return []
    lines = ["## Where the time goes (OpenVINO performance counters)", "",
             "In-graph milliseconds per inference at batch 1, seq 128 (50 runs, `benchmarks/opprofile.py`), by node type. "
             "`FullyConnected*` are the linear layers whose rows and columns structured pruning removes.", "",
             "| artifact | in-graph ms | FullyConnected* ms (share) | top other node types |", "|---|---|---|---|"]
    for e in profiled:
        ops = dict(e["ops"])
        total = ops.pop("total")
        fc = sum(v for k, v in ops.items() if k.startswith("FullyConnected"))
        others = ", ".join(f"{k} {v:.2f}" for k, v in ops.items() if not k.startswith("FullyConnected") and v >= 0.01)
        lines.append(f"| {e['name']} | {total:.2f} | {fc:.2f} ({fc / total:.0%}) | {', '.join(others.split(', ')[:3])} |")
    return lines + [""]


def _sweep(path: Path, teacher_accuracy: float) -> list[str]:
    """The distillation variants tried at the medium keep ratio (benchmarks/distill_sweep.py), if any."""
    if not path.exists():
        return []
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["## Distillation variants tried for the accuracy target", "",
             "Each row is one student distilled from the same teacher (`python benchmarks/distill_sweep.py`), PyTorch FP32 "
             f"accuracy on SST-2 dev (teacher {teacher_accuracy:.2f}; the target needs ≥ {teacher_accuracy - 1:.2f}).", "",
             "| variant | heads kept | FFN kept | steps | rows | distill settings | dev acc. | drop | min |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        settings = ", ".join(f"{k}={v}" for k, v in r["distill"].items()) or "recipe defaults"
        lines.append(f"| {r['name']} | {r['keep_heads']:.0%} | {r['keep_ffn']:.0%} | {r['steps']} | {r['rows']} | {settings} | "
                     f"{r['dev_accuracy_fp32']:.2f} | {teacher_accuracy - r['dev_accuracy_fp32']:.2f} | {r['minutes']} |")
    sources = sorted({r["source"] for r in runs if r.get("source")})
    return lines + [""] + [f"Rows marked by source: {s}." for s in sources] + ([""] if sources else [])


def _rounds(entries: list[dict[str, Any]]) -> int:
    return min(len(e.get("rounds", [e])) for e in entries)


def _spread(e: dict[str, Any]) -> str:
    p50s = [r["p50_ms"] for r in e.get("rounds", [e])]
    return f"{min(p50s):.2f}-{max(p50s):.2f}"


def _cache_note(src: Path, meta: dict[str, Any]) -> str:
    """How many edgesmith stages this harness run rebuilt, read off the stage manifests' times."""
    started = src.stat().st_mtime - meta["seconds"]
    manifests = list((src.parents[1] / "runs" / "compare").glob("edgesmith-*/*/manifest.json"))
    cached = sum(m.stat().st_mtime < started for m in manifests)
    if not cached:
        return f"a cold run: all {len(manifests)} edgesmith stages were built in it."
    return f"{cached} of {len(manifests)} edgesmith stages came from the cache of an earlier run; all measurements are fresh."


def render(src: Path, docs: Path) -> None:
    data = json.loads(src.read_text())
    meta, entries = data["meta"], data["entries"]
    teacher = next(e for e in entries if e["group"] == "teacher")
    best = next(e for e in entries if e["name"] == meta["best_peer"])
    lines = ["# edgesmith against the tools users chain by hand", "",
             f"One run of `python benchmarks/compare.py` on {meta['date']}: CPU {meta['cpu']}, {meta['threads']} threads "
             f"(the mobile-cpu profile's 4, clamped to this machine), batch 1, sequence 128 unless stated. "
             f"Harness wall time {meta['seconds'] / 60:.1f} min; {_cache_note(src, meta)}",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
             f"Measured GEMM throughput on ONNX Runtime ({meta['threads']} threads, 128x384x1536): FP32 "
             f"{meta['gemm_gflops']['fp32']:.0f} GFLOP/s, INT8 {meta['gemm_gflops']['int8']:.0f} GOP/s. "
             "The floor is the encoder's FLOPs at seq 128 divided by that throughput (INT8 for quantized artifacts).", "",
             "Accuracy is on all 872 SST-2 dev sentences. Seq-128 latency: each round runs every artifact once, in its own "
             "process, 300 timed runs after 20 warm-up runs; p50 and p90 are medians over "
             f"{_rounds(entries)} rounds (the `p50 range` column shows the spread across rounds: this VM is noisy). "
             "`real` is batch-1 latency over every dev sentence at its own token length; throughput is at batch 8, seq 128.", "",
             "| artifact | acc. | p50 ms | p50 range | p90 ms | real p50/p90 ms | seq/s b8 | MB (gzip) | peak RSS MB | vs teacher | vs best peer | GFLOP | floor ms | p50/floor |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(
            f"| {e['name']} | {e['accuracy']:.2f} | {e['p50_ms']:.2f} | {_spread(e)} | {e['p90_ms']:.2f} | {e['real_p50_ms']:.2f} / {e['real_p90_ms']:.2f} | "
            f"{e['throughput_b8']:.0f} | {e['bytes'] / MB:.1f} ({e['gzip_bytes'] / MB:.1f}) | {e['peak_rss_mb']:.0f} | {teacher['p50_ms'] / e['p50_ms']:.2f}x | "
            f"{best['p50_ms'] / e['p50_ms']:.2f}x | {e['gflop']:.2f} | {e['floor_ms']:.2f} | {e['p50_ms'] / e['floor_ms']:.1f}x |")
    lines += ["", "Notes per artifact:", ""] + [f"- {e['name']}: {e['note']}" for e in entries] + [""]
    lines += _targets(entries, teacher, best) + ["![accuracy against latency](benchmarks.png)", ""]
    lines += _ops(entries)
    lines += _sweep(docs / "distill_sweep.jsonl", teacher["accuracy"])
    (docs / "benchmarks.md").write_text("\n".join(lines))
    _plot(entries, docs / "benchmarks.png")
    print("\n".join(lines))


def _plot(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = {"teacher": "C7", "peer": "C1", "edgesmith": "C0"}
    for i, e in enumerate(entries):
        ax.scatter(e["p50_ms"], e["accuracy"], color=colors[e["group"]], s=30)
        # alternate label offsets: the two bundles of one level often sit on top of each other
        ax.annotate(e["name"].replace(" bundle", ""), (e["p50_ms"], e["accuracy"]), fontsize=6,
                    xytext=(4, 3 if i % 2 else -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (batch 1, seq 128, log)")
    ax.set_ylabel("SST-2 dev accuracy, %")
    ax.set_title("grey: teacher, orange: peers, blue: edgesmith")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    render(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "benchmarks.json", root / "docs")
