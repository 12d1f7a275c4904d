"""Stage `report`: summary.json, report.md and a self-contained report.html (plots inlined as PNG data URIs),
with pass/fail against each profile's budgets. Sections are built once and rendered to both formats."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..config import UNPRUNED, Branch, Frozen, Task
from ..registry import stage
from ..tasks import get as get_task
from .notes import against_majority, data_notes, label_notes
from .verdict import MB, profile_summary


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
