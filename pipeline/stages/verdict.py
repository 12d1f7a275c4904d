"""The report's verdicts: one profile's line of summary.json, and the bundle held in words to the teacher quantized
alone (the build a one-liner of Optimum or NNCF gives) and to the profile's budgets."""

from __future__ import annotations

from typing import Any

from ..config import UNPRUNED, Budgets
from ..confirm import alternative, sentence
from .bundle import HARDWARE_BUDGETS, budget_figures

MB = 2**20


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


def _drop(teacher: dict[str, Any], row: dict[str, Any]) -> float | None:
    if "metric" in row["quality"] and "metric" in teacher["quality"]:
        return teacher["quality"]["metric"] - row["quality"]["metric"]
    return None

