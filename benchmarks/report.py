"""Render docs/benchmarks.md and docs/benchmarks.png from docs/benchmarks.json (written by compare.py).

    python benchmarks/report.py      (re-renders both pages without re-measuring)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from seeds import spread, summary, target_lines, teacher, verdict

MB = 2**20


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


def _cache_note(meta: dict[str, Any], root: Path) -> str:
    """How many edgesmith stages this harness run rebuilt, read off the stage manifests' times."""
    started = meta["started"]
    manifests = [m for lv in meta["levels"] for m in (root / meta["work"]).glob(f"{lv['key']}-seed*/*/manifest.json")]
    if not manifests:
        return f"its run folders (`{meta['work']}/`) are not on this machine, so which stages it rebuilt is not known."
    cached = sum(m.stat().st_mtime < started for m in manifests)
    if not cached:
        return f"a cold run: all {len(manifests)} edgesmith stages were built in it."
    return f"{cached} of {len(manifests)} edgesmith stages came from the cache of an earlier run; all measurements are fresh."


def _command(meta: dict[str, Any]) -> str:
    """The harness command line that made this page (`make bench` runs it without flags)."""
    flags = (" --smoke" if meta["smoke"] else "") + (f" --only {meta['only']}" if meta.get("only") else "")
    return f"`python benchmarks/compare.py{flags}`" + ("" if flags else " (`make bench`)")


SUITES = {"sst2": ("SST-2 dev accuracy (%)", "acc."), "sts": ("STS-B dev Spearman x100", "Spearman")}


def _scoring_note(entries: list[dict[str, Any]]) -> str:
    """How many held-out texts went into one call when each artifact was scored (a harness run that did not record
    it, before texts_per_call, scored every artifact 32 a call)."""
    counts = {e.get("texts_per_call", 32) for e in entries}
    if counts == {1}:
        return " Quality was scored one text a call for every artifact."
    if 1 not in counts:
        return f" Quality was scored {max(counts)} texts a call for every artifact."
    return (" Quality was scored one text a call for ONNX Runtime's dynamic INT8 builds, whose quantization scales come from "
            "each call's whole input (as edgesmith's bundles run them, and as a batch-1 device would), and "
            f"{max(counts)} a call for the others.")


def _table(entries: list[dict[str, Any]], suite: str, rows: int | None) -> list[str]:
    """Every artifact of one suite; copies of a file measured once repeat its figures."""
    t = teacher(entries, suite)
    ov = next((e for e in entries if e["suite"] == suite and e.get("role") == "ov-int8"), None)
    title, metric = SUITES[suite]
    lines = [f"### {title}" + (f", {rows} held-out {'pairs' if suite == 'sts' else 'sentences'}" if rows else ""), "",
             f"| artifact | {metric} | drop (±SE) | p50 ms | p50 range | p90 ms | real p50/p90 ms | seq/s b8 | MB (gzip) | peak RSS MB | "
             "vs teacher | vs OV INT8 teacher | GFLOP | floor ms | p50/floor |", "|---|" + "---|" * 14]
    for e in (e for e in entries if e["suite"] == suite):
        se = f" (±{e['drop_se']:.2f})" if "drop_se" in e and e is not t else ""
        vs_ov = f"{ov['p50_ms'] / e['p50_ms']:.2f}x" if ov else "—"
        lines.append(
            f"| {e['name']} | {e['quality']:.2f} | {t['quality'] - e['quality']:.2f}{se} | {e['p50_ms']:.2f} | {_spread(e)} | {e['p90_ms']:.2f} | "
            f"{e['real_p50_ms']:.2f} / {e['real_p90_ms']:.2f} | {e['throughput_b8']:.0f} | {e['bytes'] / MB:.1f} ({e['gzip_bytes'] / MB:.1f}) | "
            f"{e['peak_rss_mb']:.0f} | {t['p50_ms'] / e['p50_ms']:.2f}x | {vs_ov} | {e['gflop']:.2f} | {e['floor_ms']:.2f} | "
            f"{e['p50_ms'] / e['floor_ms']:.1f}x |")
    return lines + [""]


def _levels_table(entries: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    lines = ["| level | seeds | distillation rows | bundle p50 ms | drop, points | vs reference | vs fastest INT8 teacher | "
             "real p50 ms | vs fastest there | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for lv in meta["levels"]:
        s = summary(entries, lv)
        rows = lv["overrides"].get("data.max_train_samples", "recipe's")
        lines.append(f"| {lv['key']} (`{lv['recipe']}`) | {len(s['bundles'])} | {rows} | {spread([b['p50_ms'] for b in s['bundles']])} | "
                     f"{spread(s['drops'])} | {spread(s['speedups'], unit='x')} ({s['ref']['name']}) | {spread(s['vs_best'], unit='x')} | "
                     f"{spread([b['real_p50_ms'] for b in s['bundles']])} | {spread(s['real_speedups'], unit='x')} | {verdict(s['met'])} |")
    return lines + [""]


def _timing(meta: dict[str, Any]) -> list[str]:
    """Where the wall time went: the numbers to budget the next run by. With the stages' own build times (recorded by
    the harness from every stage's manifest, whenever the stage was built), also what the runs cost from nothing."""
    t, built = meta["timing"], meta.get("stage_seconds", {})
    lines = ["## Where the harness time went", "",
             f"Wall time {t['total'] / 60:.1f} min on {meta['cpu']}: edgesmith runs {sum(t['runs'].values()) / 60:.1f} min, "
             f"peers {t['peers'] / 60:.1f} min, measurement (latency rounds, op counters, quality, sizes) {t['measure'] / 60:.1f} min. "
             "Per run (a run resumed from cached stages counts only what it rebuilt"
             + ("; `stages, whenever built`: the build times its stage manifests record, this run's or an earlier one's" if built else "")
             + "):", ""]
    if not built:
        return lines + ["| run | minutes |", "|---|---|"] + [f"| {name} | {s / 60:.1f} |" for name, s in t["runs"].items()] + [""]
    lines += ["| run | minutes | stages, whenever built, minutes | of which distillation |", "|---|---|---|---|"]
    for name, s in t["runs"].items():
        stages = built.get(name, {})
        distill = sum(v for k, v in stages.items() if "-distill-" in k)
        lines.append(f"| {name} | {s / 60:.1f} | {sum(stages.values()) / 60:.1f} | {distill / 60:.1f} |")
    total = sum(sum(v.values()) for v in built.values())
    jobs = meta.get("jobs", 1)
    # runs side by side cannot end before the longest one; the estimate assumes the stages were built as this --jobs
    # builds them (cores/jobs threads each): at 1 thread two runs did 1.4x the work of one at 2 threads (levels.run_all)
    wall = max(total / min(jobs, len(built)), max(sum(v.values()) for v in built.values()))
    return lines + ["", f"The stages' own build times add up to {total / 60:.1f} run-minutes. From nothing, with {jobs} "
                    f"run{'s' * (jobs > 1)} at a time, the runs would take about {wall / 60:.0f} min of wall time, plus the peers "
                    "and the measurement (estimated from those build times, not a run from nothing: it assumes every stage was "
                    f"built as `--jobs {jobs}` builds it ({'the cores shared among that many runs' if jobs > 1 else 'each run on all cores'}), and each time is what the "
                    "stage took under whatever else shared the cores then; stages built under another `--jobs` move it by up to "
                    "about 1.4x).", ""]


def _fewer_seeds(meta: dict[str, Any], seeds: list[int]) -> str:
    """' (sst2-sparse: seed 0 only)' for the levels that ran fewer of the seeds."""
    few = [f"{lv['key']}: seed{'s' * (len(lv['seeds']) > 1)} {', '.join(map(str, lv['seeds']))} only"
           for lv in meta["levels"] if sorted(lv["seeds"]) != seeds]
    return f" ({'; '.join(few)})" if few else ""


def render(src: Path, docs: Path) -> None:
    data = json.loads(src.read_text())
    meta, entries = data["meta"], data["entries"]
    root = Path(__file__).resolve().parents[1]
    plan = meta["plan"]
    seeds = sorted({s for lv in meta["levels"] for s in lv["seeds"]})
    lines = ["# edgesmith against the tools users chain by hand", "",
             f"One run of {_command(meta)} on {meta['date']}: "
             f"CPU {meta['cpu']}, {meta['threads']} thread, batch 1, sequence 128 unless stated. Harness wall time "
             f"**{meta['seconds'] / 60:.1f} min**; {_cache_note(meta, root)}",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
             f"Every edgesmith level ran with distill.seed {', '.join(map(str, seeds))}{_fewer_seeds(meta, seeds)} (run folders `{meta['work']}/<level>-seed<N>`, "
             "the `embedded` profile: 1 thread). A target counts as met only on the mean over at least 3 seeds, with every seed's drop "
             "within 0.5 points of that mean.", "",
             f"Seq-128 latency: each round runs every artifact once, in its own process, {plan['iterations']} timed runs after "
             f"{plan['warmup']} warm-up runs; p50 and p90 are medians over {_rounds(entries)} rounds (`p50 range`: the spread across "
             "rounds). `real` is batch-1 latency over every held-out sentence at its own token length (one pass); throughput is "
             f"at batch 8, seq 128. Measured GEMM throughput on ONNX Runtime ({meta['threads']} thread, 128x384x1536): FP32 "
             f"{meta['gemm_gflops']['fp32']:.0f} GFLOP/s, INT8 {meta['gemm_gflops']['int8']:.0f} GOP/s; the floor is the encoder's "
             "FLOPs at seq 128 divided by that throughput (INT8 for quantized artifacts).", "",
             "## Targets", ""]
    for lv in meta["levels"]:
        lines += target_lines(entries, lv)
    lines += ["## Levels over seeds", "",
              "Mean (min to max) over seeds. `vs reference`: p50 speed-up over the target's reference; the fastest INT8 teacher is "
              "the fastest of the peers' INT8 builds and edgesmith's own quantized-teacher candidates.", ""]
    lines += _levels_table(entries, meta)
    lines += ["## Every artifact", "", "`drop` is against the teacher in PyTorch FP32, with the paired standard error of "
              "that drop on the same sentences (SST-2). Rows marked as the same file as another were measured once."
              + _scoring_note(entries), ""]
    for suite in SUITES:
        if any(e["suite"] == suite for e in entries):
            lines += _table(entries, suite, meta.get("eval_rows", {}).get(suite))
    lines += ["Notes per artifact:", ""] + [f"- {e['name']}: {e['note']}" + (f" (same file as {e['same_as']})" if "same_as" in e else "")
                                           for e in entries] + [""]
    lines += ["![quality against latency](benchmarks.png)", ""] + _ops(entries) + _timing(meta)
    sst2 = [e for e in entries if e["suite"] == "sst2" and e["group"] == "teacher"]
    lines += _sweep(root / "docs" / "distill_sweep.jsonl", sst2[0]["quality"]) if sst2 and not meta["smoke"] else []
    (docs / "benchmarks.md").write_text("\n".join(lines))
    _plot(entries, docs / "benchmarks.png")
    print("\n".join(lines))

def _plot(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = [s for s in SUITES if any(e["suite"] == s for e in entries)]
    fig, axes = plt.subplots(1, len(suites), figsize=(8 * len(suites), 5), squeeze=False)
    colors = {"teacher": "C7", "peer": "C1", "unpruned": "C3", "edgesmith": "C0", "sparse": "C2"}
    for ax, suite in zip(axes[0], suites):
        for i, e in enumerate(e for e in entries if e["suite"] == suite):
            ax.scatter(e["p50_ms"], e["quality"], color=colors[e["group"]], s=30)
            # alternate label offsets: the seeds of one level often sit on top of each other
            ax.annotate(e["name"].replace("edgesmith ", ""), (e["p50_ms"], e["quality"]), fontsize=6,
                        xytext=(4, 3 if i % 2 else -9), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency, ms (1 thread, batch 1, seq 128, log)")
        ax.set_ylabel(SUITES[suite][0])
        ax.set_title("grey: teacher, orange: peers, red: edgesmith's quantized teacher, blue: edgesmith, green: sparse", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from sparse_doc import render as render_sparse

    root = Path(__file__).resolve().parents[1]
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "benchmarks.json"
    render(src, src.parent)
    render_sparse(src, src.parent)
