"""Stage `report`: summary.json, report.md and a self-contained report.html (plots inlined as PNG data URIs),
with pass/fail against each profile's budgets. Sections are built once and rendered to both formats."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..config import UNPRUNED, Branch, Budgets, Frozen, Task
from ..confirm import alternative, sentence
from ..data import split_held_out
from ..registry import stage
from ..tasks import get as get_task
from .bundle import HARDWARE_BUDGETS, budget_figures
from .common import read_rows

MB = 2**20
LEARNED_LITTLE = 5.0  # points above the majority-class rate under which a classifier has learned little


class ReportStageConfig(Frozen):
    """What the report reads of the recipe (not the whole of it: an edit elsewhere reaches it through its inputs)."""
    name: str  # the recipe's name, the report's title
    task: Task
    accuracy_budget: float  # quantize.accuracy_budget, points
    branches: tuple[Branch, ...]  # prune.branches
    profiles: tuple[str, ...]


def _fmt(v: Any, nd: int = 2) -> str:
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return "—" if v is None else str(v)


def profile_summary(bench: dict[str, Any], bundle: dict[str, Any], profile: dict[str, Any], budget: float) -> dict[str, Any]:
    """One profile's line of summary.json: chosen bundle vs the teacher, and each budget's verdict."""
    teacher = next(r for r in bench["rows"] if r["branch"] == "teacher")
    chosen = bundle["chosen"]
    lat, t_lat = chosen["latency"], teacher["latency"]
    measured = "p50_ms" in lat
    row = {
        "status": "measured" if measured else "not measured", "reason": lat.get("not_measured"),
        "bundle": bundle["bundle"], "artifact": f"{chosen['branch']}:{chosen['artifact']}",
        "quality": chosen["quality"].get("metric"), "quality_drop": _drop(teacher, chosen),
        "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"), "size_mb": chosen["bytes"] / MB,
        "longest_len": lat.get("longest_len"), "p90_ms_longest": lat.get("longest_p90_ms"),
        "peak_memory_mb": lat.get("peak_rss_mb"), "tar_gz_mb": bundle["tar_bytes"] / MB,
        "speedup_p50_vs_teacher": t_lat["p50_ms"] / lat["p50_ms"] if measured and "p50_ms" in t_lat else None,
        "size_ratio_vs_teacher": chosen["bytes"] / teacher["bytes"],
        "threads": bench["threads"], "thread_clamp": bench["thread_clamp"],
        "teacher": {"quality": teacher["quality"].get("metric"), "p50_ms": t_lat.get("p50_ms"), "p90_ms": t_lat.get("p90_ms"),
                    "size_mb": teacher["bytes"] / MB, "peak_memory_mb": t_lat.get("peak_rss_mb")},
    }
    row |= against_quantized_teacher(bench["rows"], chosen, profile, bundle.get("speedup_confirmation"),
                                     bool(bundle.get("meets_profile_budgets")), budget, bundle.get("alternative", ...),
                                     within_budget=bundle.get("within_budget", True), kept=bundle.get("budgets_kept"))
    row |= {"budgets_kept": bundle.get("budgets_kept"), "meets_profile_budgets": bundle.get("meets_profile_budgets"),
            "left_out_for_budgets": bundle.get("left_out_for_budgets", [])}
    if "verdict" in row and budget_note(bundle):
        row["verdict"] += " " + budget_note(bundle)
    checks = {"quality_drop": (row["quality_drop"], budget)} | budget_figures(chosen, Budgets(**profile["budgets"]))
    row["budgets"] = {k: {"value": v, "limit": lim, "verdict": "not measured" if v is None else ("pass" if v <= lim else "FAIL")}
                      for k, (v, lim) in checks.items() if lim is not None}
    for k in ("p90_ms", "peak_memory_mb"):
        if k in row["budgets"]:  # the length its figure was measured at (latency.budget_p90)
            row["budgets"][k]["tokens"] = lat.get("longest_len", profile["seq_len"])
    if length_note(row, profile):
        row["verdict"] = (row.get("verdict", "") + " " + length_note(row, profile)).strip()
    return row


def length_note(row: dict[str, Any], profile: dict[str, Any]) -> str:
    """Where the p90 budget holds at the profile's sequence length but not at the longest input the bundle accepts
    (data.max_length, which the budgets are held to): the one setting that would make it hold."""
    p90, budget = row["budgets"].get("p90_ms"), profile["budgets"].get("p90_ms")
    if not p90 or p90["verdict"] != "FAIL" or row["longest_len"] is None or row["p90_ms"] is None or row["p90_ms"] > budget:
        return ""
    return (f"Its p90 keeps the {budget:g} ms budget at the profile's {profile['seq_len']} tokens ({row['p90_ms']:.1f} ms) "
            f"but not at {row['longest_len']}, the longest input the bundle accepts ({row['p90_ms_longest']:.1f} ms): if the "
            f"device never sees longer inputs, set data.max_length: {profile['seq_len']} (accuracy is then measured at that length too).")


def budget_note(bundle: dict[str, Any]) -> str:
    """The bundle stage's choice against the profile's size, memory and p90 budgets, in one sentence (or none)."""
    kept = bundle.get("budgets_kept")
    if kept is None:  # a bundle from before the budgets took part in the choice
        return ""
    dropped = bundle.get("left_out_for_budgets") or []
    left = f" Faster but left out for the profile's budgets: {'; '.join(dropped)}." if dropped else ""
    if not kept:
        return ("No artifact within the accuracy budget meets the profile's size budget, so the fastest within the "
                "accuracy budget ships: see the budget verdicts.")
    if "p90" not in kept:
        return ("No artifact within the accuracy budget meets every budget of the profile on this machine (p90 and "
                "memory are this machine's readings), so the choice kept to its size budget only: see the budget "
                "verdicts." + left)
    return left.strip()


def _pair_names(profile: dict[str, Any]) -> set[str]:
    """The profile's runtime/precision pairs as bench rows name their artifacts ("openvino-int8-static")."""
    return {f"{runtime}-{precision}" for runtime, precisions in profile["runtimes"].items() for precision in precisions}


def quantized_teacher(rows: list[dict[str, Any]], profile: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher unpruned, quantized with one of the profile's runtime/precision pairs: the fastest measured one
    (what a user gets from one line of Optimum or NNCF), or the first when this machine cannot measure the profile."""
    mine = [r for r in rows if r["branch"] == UNPRUNED and r["artifact"] in _pair_names(profile)]
    timed = [r for r in mine if "p50_ms" in r["latency"]]
    return min(timed, key=lambda r: r["latency"]["p50_ms"]) if timed else (mine[0] if mine else None)


def reference(rows: list[dict[str, Any]], profile: dict[str, Any], budget: float | None, chosen_alt: Any = ...) -> dict[str, Any] | None:
    """The unpruned build a bundle is held to: what would ship if pruning did not pay, i.e. the bundle stage's
    `alternative` (`chosen_alt`, "branch:artifact", recorded by the bundle stage: the fastest unpruned build within the
    accuracy budget among the rows the profile's budgets left), against which its paired rounds ran. Had the report
    used another (the fastest of the profile's quantized builds, or one the size budget had excluded), it could quote
    a speed-up over a build that could not ship. When there is none (None), or no budget is given: the fastest of
    the profile's quantized teacher builds. A bundle from before the stage recorded it (`...`): recomputed over all rows."""
    recorded = next((r for r in rows if f"{r['branch']}:{r['artifact']}" == chosen_alt), None)
    if recorded is not None:
        return recorded
    teacher = next((r for r in rows if r["branch"] == "teacher"), None)
    within = None
    if chosen_alt is ... and budget is not None and teacher is not None and "metric" in teacher["quality"]:
        within = alternative(rows, teacher["quality"]["metric"], budget)
    return within or quantized_teacher(rows, profile)


def _plain(row: dict[str, Any], profile: dict[str, Any]) -> str:
    """The unpruned build in words: one of the profile's quantized pairs, or a plain export (FP32, always measured)."""
    return "the teacher quantized alone" if row["artifact"] in _pair_names(profile) else "the teacher unpruned, unquantized"


def against_quantized_teacher(rows: list[dict[str, Any]], chosen: dict[str, Any], profile: dict[str, Any],
                              confirmation: dict[str, Any] | None = None, meets_budgets: bool = False,
                              budget: float | None = None, chosen_alt: Any = ..., *, within_budget: bool = True,
                              kept: list[str] | None = None) -> dict[str, Any]:
    """The bundle against the teacher unpruned (`reference`): speed-up, quality change (points, + is better) and one
    sentence. `confirmation`: the bundle stage's paired rounds (edgesmith.confirm); their median speed-up is the
    figure given when they were run against the same build. `meets_budgets`: the choice kept to the profile's size,
    memory and p90 budgets as well (the bundle stage's `meets_profile_budgets`). `chosen_alt`: the bundle stage's
    `alternative` (see `reference`). `within_budget`: some artifact was within the accuracy budget (else the most
    accurate shipped); `kept`: the profile's budgets the choice kept to (`budgets_kept`)."""
    ref = reference(rows, profile, budget, chosen_alt)
    if ref is None:
        return {}
    name, ref_lat, lat = f"{UNPRUNED}:{ref['artifact']}", ref["latency"], chosen["latency"]
    speedup = ref_lat["p50_ms"] / lat["p50_ms"] if "p50_ms" in lat and "p50_ms" in ref_lat else None
    if confirmation and confirmation["measurable"] and confirmation["against"] == name:
        speedup = confirmation["speedup"]
    change = chosen["quality"]["metric"] - ref["quality"]["metric"] if "metric" in chosen["quality"] and "metric" in ref["quality"] else None
    paid: bool | None = chosen["branch"] != UNPRUNED
    within = "within the accuracy budget" + _kept_words(kept, meets_budgets)
    shipped = f"{chosen['branch']}:{chosen['artifact']}"
    if "p50_ms" not in lat:  # the profile's hardware is absent: bundle.choose took the smallest file
        paid = None  # not judged
        verdict = (f"Not judged: this machine lacks the profile's hardware ({lat.get('not_measured', 'not measured')}), so "
                   f"the smallest {'artifact within the accuracy budget' if within_budget else 'of the most accurate artifacts'} "
                   f"ships ({shipped}); measure it against {name} on the device.")
    elif not within_budget:  # bundle.choose: nothing within the accuracy budget, the most accurate ships
        verdict = f"No artifact is within the accuracy budget, so the most accurate ships ({shipped}): see the budget verdicts."
    elif paid and chosen_alt is None:  # no unpruned build was measured within the accuracy budget and the budgets kept to
        against = "" if speedup is None else (f"; against {_plain(ref, profile)} ({name}), which could not ship, one reading "
                                              f"(no paired rounds) gave {speedup:.2f}x")
        verdict = (f"A pruned build ships because no unpruned build was measured {within}{against}.")
    elif not paid and confirmation:
        verdict = (f"Pruning did not pay measurably: {sentence(confirmation)}, so {_plain(chosen, profile)} "
                   f"({confirmation['against']}) ships.")  # the bundle stage shipped the build the rounds ran against
    elif not paid:  # name what ships: an unpruned FP32 build can be faster than every quantized one (tiny models)
        verdict = (f"Pruning did not pay: {_plain(chosen, profile)} ({UNPRUNED}:{chosen['artifact']}) is the fastest "
                   f"artifact {within}, so it ships.")
    elif speedup is None:  # the unpruned build was not timed (it failed to run here): no figure to give
        verdict = f"Pruning was chosen without a latency measurement of {name}: compare the two on the device."
    else:
        where = "" if change is None else f", {abs(change):.2f} points {'below' if change < 0 else 'above'} it in quality"
        rounds = f"; {sentence(confirmation)}" if confirmation else ""
        verdict = (f"Pruning paid {within}: the bundle is {speedup:.2f}x faster (p50) than "
                   f"{_plain(ref, profile)} ({name}){where}{rounds}.")
    return {"quantized_teacher": {"artifact": name, "quality": ref["quality"].get("metric"), "p50_ms": ref_lat.get("p50_ms"),
                                  "p90_ms": ref_lat.get("p90_ms"), "size_mb": ref["bytes"] / MB},
            "speedup_p50_vs_quantized_teacher": speedup, "quality_change_vs_quantized_teacher": change,
            "pruning_paid": paid, "verdict": verdict, "speedup_confirmation": confirmation}


def _kept_words(kept: list[str] | None, meets_budgets: bool) -> str:
    """The profile budgets the bundle choice kept to, as the end of "within the accuracy budget ..."."""
    if meets_budgets or (kept is not None and set(kept) >= set(HARDWARE_BUDGETS)):
        return " and the profile's budgets"
    return f" and the profile's {' and '.join(kept)} budget{'s' if len(kept) > 1 else ''}" if kept else ""


def against_majority(teacher: dict[str, Any]) -> dict[str, Any]:
    """Classification: the teacher's accuracy on the eval split against always answering its most common label
    (`majority_rate`, points), and one sentence saying plainly when the teacher has learned little."""
    rate, acc = teacher.get("majority_rate"), teacher["quality"].get("metric")
    if rate is None or acc is None:
        return {}
    margin = acc - rate
    note = f"The teacher scores {acc:.2f} accuracy against a majority-class rate of {rate:.2f} ({margin:+.2f} points)"
    if margin < LEARNED_LITTLE:
        note += (f": the teacher has learned little (within {LEARNED_LITTLE:g} points of always answering the most common "
                 "label); check the labels, or bring a fine-tuned teacher or more data")
    return {"majority_rate": rate, "teacher_vs_majority": note + "."}


def data_notes(data: Any) -> list[str]:
    """Held-out text met elsewhere in the data, in words: unlabeled rows left out for it (data stage), and training
    rows that repeat it (kept: the splits are the user's, but the held-out score is then partly of seen text)."""
    notes = []
    if data.facts.get("unlabeled_held_out"):
        notes.append(f"{data.facts['unlabeled_held_out']} row(s) of data.unlabeled hold a held-out text and were left out "
                     "of distillation, so that no student is scored on text it was taught.")
    train = read_rows(data.path / "train.jsonl")
    repeats = split_held_out(train, read_rows(data.path / "eval.jsonl"))[1]  # the data stage's rule, for kept rows
    if repeats:
        notes.append(f"{len(repeats)} of {len(train)} training rows repeat a held-out text (e.g. {repeats[0]['text'][0][:60]!r}): "
                     "the students distil on them (and a new head is fine-tuned on them), so the held-out scores are "
                     "somewhat optimistic; remove them from the training data if that matters.")
    return notes


def label_notes(task: Task, data: Path, teacher: dict[str, Any]) -> list[str]:
    """What the labels leave a model unable to learn or be scored on, in words (neither is an error: a capped or
    small training split can lack a rare class, and a tagger can be scored on text without one entity type)."""
    kind = get_task(task)
    if not kind.labelled:
        return []
    names, used = teacher["label_names"], set(teacher["label_ids"].values())
    unused = [name for i, name in enumerate(names) if i not in used]
    if teacher["head_trained"]:
        return [f"The teacher's head has classes that no row of the data holds: {_listed(unused)}. The bundle can still "
                "answer them, and every such answer counts as an error."] if unused else []
    seen = {name for row in read_rows(data / "train.jsonl") for name in kind.label_names_of(row["label"])}
    if not seen:  # unlabelled training rows: a trained head was required, so only a bug reaches here
        return []
    held_out_only = sorted({name for row in read_rows(data / "eval.jsonl") for name in kind.label_names_of(row["label"])} - seen)
    return [f"Held-out labels that no training row holds: {_listed(held_out_only)}. The teacher's new head had no "
            "example of them, so its quality and every student's count them as misses; add training rows with them, "
            "or check them for typos."] if held_out_only else []


def _listed(names: list[str], most: int = 10) -> str:
    return ", ".join(map(repr, names[:most])) + (f" and {len(names) - most} more" if len(names) > most else "")


def _drop(teacher: dict[str, Any], row: dict[str, Any]) -> float | None:
    if "metric" in row["quality"] and "metric" in teacher["quality"]:
        return teacher["quality"]["metric"] - row["quality"]["metric"]
    return None


def _artifact_table(rows: list[dict[str, Any]], teacher_p50: float | None) -> tuple[list[str], list[list[str]]]:
    head = ["branch", "artifact", "quality", "p50 ms", "p90 ms", "p99 ms", "seq/s", "size MB", "peak RSS MB", "load ms", "speed-up"]
    longest = next((r["latency"]["longest_len"] for r in rows if "longest_len" in r["latency"]), None)
    if longest:  # the figures the profile's p90 and memory budgets are held to
        head[-1:-1] = [f"p90 ms at {longest}", f"peak RSS MB at {longest}"]
    body = []
    for r in rows:
        lat = r["latency"]
        speed = teacher_p50 / lat["p50_ms"] if teacher_p50 and "p50_ms" in lat else None
        body.append([r["branch"], r["artifact"], _fmt(r["quality"].get("metric", r["quality"].get("not_measured"))),
                     _fmt(lat.get("p50_ms")), _fmt(lat.get("p90_ms")), _fmt(lat.get("p99_ms")), _fmt(lat.get("throughput"), 1),
                     _fmt(r["bytes"] / MB), _fmt(lat.get("peak_rss_mb"), 0), _fmt(lat.get("load_ms"), 0),
                     *([_fmt(lat.get("longest_p90_ms")), _fmt(lat.get("longest_peak_rss_mb"), 0)] if longest else []),
                     f"{speed:.2f}x" if speed else lat.get("not_measured", "—")])
    return head, body


@stage("report", ReportStageConfig, version=10)  # 10: label notes; 9: budgets at the longest input; 8: one reference build with the bundle stage; 6-7: the budgets behind the choice; 5: the paired rounds behind the verdict
def run(cfg: ReportStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:

    metric = get_task(cfg.task).metric_label(inputs["data"].facts["eval_scored"])
    profiles = {p: json.loads(json.dumps(inputs[f"bundle-{p}"].facts)) for p in cfg.profiles}
    benches = {p: inputs[f"bench-{p}"].facts for p in cfg.profiles}
    prof_json = {p: json.loads((inputs[f"bundle-{p}"].path / inputs[f"bundle-{p}"].facts["bundle"] / "manifest.json").read_text())["profile"] for p in cfg.profiles}
    summary = {"recipe": cfg.name, "task": cfg.task, "metric": metric, "accuracy_budget": cfg.accuracy_budget,
               "profiles": {p: profile_summary(benches[p], profiles[p], prof_json[p], cfg.accuracy_budget) for p in cfg.profiles}}
    summary |= against_majority(inputs["teacher"].facts)  # tasks without a majority rate have none in their facts
    summary["notes"] = data_notes(inputs["data"]) + label_notes(cfg.task, inputs["data"].path, inputs["teacher"].facts)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    sections = _sections(cfg, inputs, summary, benches, metric)
    figures = _figures(cfg, inputs, benches, summary, metric)
    (out / "report.md").write_text(_markdown(cfg.name, sections, list(figures)))
    for name, png in figures.items():
        (out / f"{name}.png").write_bytes(png)
    (out / "report.html").write_text(_html(cfg.name, sections, figures))
    return {"profiles": {p: s["status"] for p, s in summary["profiles"].items()}}


def _sections(cfg: ReportStageConfig, inputs: dict[str, Any], summary: dict[str, Any], benches: dict[str, Any], metric: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if "teacher_vs_majority" in summary:
        out.append(("The teacher against the majority class", summary["teacher_vs_majority"]))
    if summary["notes"]:
        out.append(("Data and labels", " \n".join(f"- {note}" for note in summary["notes"])))
    out.append(("Against the teacher quantized alone", "\n".join(f"{p}: {s['verdict']}" for p, s in summary["profiles"].items() if "verdict" in s)))
    head = ["profile", "bundle artifact", metric, "drop", "p50 ms", "p90 ms", "speed-up", "vs quantized teacher", "size MB",
            "size ratio", "peak RSS MB", "budgets"]
    body = []
    for p, s in summary["profiles"].items():
        verdicts = ", ".join(f"{k} {v['verdict']}" + _at_longest(v, s) for k, v in s["budgets"].items())
        vs_q = s.get("speedup_p50_vs_quantized_teacher")
        body.append([p, s["artifact"], _fmt(s["quality"]), _fmt(s["quality_drop"]), _fmt(s["p50_ms"]), _fmt(s["p90_ms"]),
                     f"{s['speedup_p50_vs_teacher']:.2f}x" if s["speedup_p50_vs_teacher"] else (s["reason"] or "—"),
                     f"{vs_q:.2f}x, {_fmt(s['quality_change_vs_quantized_teacher'])} pts" if vs_q else "—",
                     _fmt(s["size_mb"]), _fmt(s["size_ratio_vs_teacher"]), _fmt(s["peak_memory_mb"], 0), verdicts])
    out.append(("Bundles against budgets", (head, body)))
    for p, bench in benches.items():
        teacher_p50 = next(r for r in bench["rows"] if r["branch"] == "teacher")["latency"].get("p50_ms")
        note = f"CPU: {bench['cpu']}; threads used: {bench['threads']}" + (f" ({bench['thread_clamp']})" if bench["thread_clamp"] else "")
        note += longest_words(bench["rows"])
        if bench["not_measured"]:
            note += f". Latency and memory not measured: {bench['not_measured']}."
        out.append((f"Profile {p}: every artifact, measured in one run", note))
        out.append(("", _artifact_table(bench["rows"], teacher_p50)))
        chosen = [quantizer_line(r) for r in bench["rows"] if "quantizer" in r]
        chosen += [widened_line(r) for r in bench["rows"] if r.get("widened_intervals")]
        if chosen:
            out.append(("", " \n".join(f"- {line}" for line in chosen)))
    for b in cfg.branches:
        out.append((f"Branch {b}", " \n".join(f"- {line}" for line in branch_lines(b, inputs))))
    return out


def _at_longest(verdict: dict[str, Any], row: dict[str, Any]) -> str:
    """The figure a p90 or memory verdict was judged on, where it is not the table's (measured at data.max_length)."""
    if not row.get("longest_len") or verdict.get("tokens") != row["longest_len"] or verdict["value"] is None:
        return ""
    return f" ({verdict['value']:.1f} at {verdict['tokens']} tokens)"


def longest_words(rows: list[dict[str, Any]]) -> str:
    """Where the bench stage also measured at data.max_length: that its budgets hold there, in one clause."""
    longest = next((r["latency"]["longest_len"] for r in rows if "longest_len" in r["latency"]), None)
    if longest is None:
        return ""
    return (f". Latency at the profile's sequence length, and p90 and peak memory also at {longest} tokens, the longest "
            "input the bundle accepts (data.max_length): the profile's p90 and memory budgets are held to those")


def quantizer_line(row: dict[str, Any]) -> str:
    """How one candidate's quantizer setting was chosen: by its output's distance from FP32 on held training rows."""
    q = row["quantizer"]
    dist = ", ".join(f"{name} {d:.4g}" for name, d in q["mean_abs_diff_vs_fp32"].items())
    return (f"{row['branch']}:{row['artifact']}: {q['quantizer']} with {q['setting']}, the setting whose output stays closest "
            f"to FP32 on {q['held_rows']} training rows the calibration did not use (mean absolute difference: {dist})")


def widened_line(row: dict[str, Any]) -> str:
    n = row["widened_intervals"]
    return (f"{row['branch']}:{row['artifact']}: {n} activation interval{'s' * (n > 1)} in front of weight matmuls widened to "
            "[low, -low] after calibration (OpenVINO's CPU plugin ran negative-heavy ones on a slower path); "
            "quality and latency above are of the widened model")


def branch_lines(branch: str, inputs: dict[str, Any]) -> list[str]:
    """What the report says of one branch: its size, its export, and for the structured branch the latency fit
    (when the recipe asked for one) and the shape it kept."""
    shrink, export = inputs[f"shrink-{branch}"].facts, inputs[f"export-{branch}"].facts
    lines = [f"parameters {shrink['params']:,} of the teacher's {shrink['teacher_params']:,} "
             f"({shrink['params'] / shrink['teacher_params']:.0%}); weights file {shrink['bytes'] / MB:.1f} MB vs {shrink['teacher_bytes'] / MB:.1f} MB; {shrink['note']}",
             f"fused ONNX ops: {export['fused_ops']}" + (f"; WARNING: {'; '.join(export['warnings'])}" if export["warnings"] else ""),
             f"export validation against PyTorch: {export['validation']}"]
    if branch != "structured":
        return lines
    fit = inputs[f"prune-{branch}"].facts.get("fit")
    if fit:
        lines.append(_fit_line(fit))
    return lines + ["heads kept per layer: " + str([l["heads"] for l in shrink["shape_plan"]]) +
                    "; FFN width per layer: " + str([l["ffn"] for l in shrink["shape_plan"]])]


def _fit_line(fit: dict[str, Any]) -> str:
    from ..fit import describe_point, describe_target

    curve = "; ".join(describe_point(c) for c in fit["curve"] if c["p90_ms"] is not None)
    teacher = f"; the unpruned teacher: p50 {', '.join(f'{t:.2f}' for t in fit['teacher_p50_ms'])} ms (the fastest counts)" \
        if fit.get("teacher_p50_ms") else ""
    return (f"keep ratio chosen by measured latency for {fit['profile']} ({describe_target(fit)}): "
            f"{fit['keep']} ({'met' if fit['met'] else 'NOT met even at the smallest ratio'}); measured: {curve}{teacher}")


def _figures(cfg: ReportStageConfig, inputs: dict[str, Any], benches: dict[str, Any], summary: dict[str, Any], metric: str) -> dict[str, bytes]:
    from .. import plots

    rows = {p: b["rows"] for p, b in benches.items() if not b["not_measured"]}
    figs = {}
    if rows:
        figs["latency"] = plots.latency_bars(rows)
        figs["quality_vs_latency"] = plots.quality_vs_latency(rows, metric)
    first = cfg.profiles[0]
    chosen = inputs[f"bundle-{first}"].facts["chosen"]
    branch = chosen["branch"]
    pruned = [] if branch == UNPRUNED else [(f"{branch} FP32", inputs[f"shrink-{branch}"].facts["bytes"] / MB)]
    figs["size_waterfall"] = plots.size_waterfall([
        ("teacher FP32", inputs["teacher"].facts["bytes"] / MB), *pruned,
        (f"{first}: {chosen['artifact']}", chosen["bytes"] / MB), (".tar.gz bundle", summary["profiles"][first]["tar_gz_mb"]),
    ])
    if "structured" in cfg.branches:
        prune = inputs["prune-structured"].facts
        layers = len(prune["heads_per_layer"])
        figs["kept_per_layer"] = plots.kept_per_layer(prune["heads_per_layer"], prune["heads_total"] // layers,
                                                      prune["ffn_per_layer"], prune["ffn_total"] // layers)
    return figs


def _md(text: str, cell: bool = False) -> str:
    """Text from the data (label names) made inert in Markdown: no HTML tag can open (viewers render raw HTML), and
    in a table cell no pipe or line break can split the row."""
    text = text.replace("<", "&lt;")
    return text.replace("|", "\\|").replace("\n", " ") if cell else text


def _markdown(name: str, sections: list[tuple[str, Any]], figures: list[str]) -> str:
    parts = [f"# edgesmith report: {name}\n"]
    for title, content in sections:
        if title:
            parts.append(f"## {title}\n")
        if isinstance(content, str):
            parts.append(_md(content) + "\n")
        else:
            head, body = content
            parts.append("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
            parts += ["| " + " | ".join(_md(c, cell=True) for c in row) + " |" for row in body]
            parts.append("")
    parts += [f"![{f}]({f}.png)" for f in figures]
    return "\n".join(parts) + "\n"


def _html(name: str, sections: list[tuple[str, Any]], figures: dict[str, bytes]) -> str:
    e = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>edgesmith: {e(name)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px}th{background:#eee}td:nth-child(n+3){text-align:right}</style>",
             f"<h1>edgesmith report: {e(name)}</h1>"]
    for title, content in sections:
        if title:
            parts.append(f"<h2>{e(title)}</h2>")
        if isinstance(content, str):
            parts.append("<p>" + "<br>".join(e(line) for line in content.splitlines()) + "</p>")
        else:
            head, body = content
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body]
            parts.append("</table>")
    for fname, png in figures.items():
        parts.append(f"<h3>{e(fname)}</h3><img alt='{e(fname)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    return "\n".join(parts)
