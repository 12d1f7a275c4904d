"""Latency targeting: the largest keep ratio whose quantized model meets a measured target on this machine.

Two targets, one walk. `fit_profile` alone: the profile's p90 budget (an absolute figure for the device).
`fit_speedup` as well: N times faster (p50) than the unpruned teacher quantized the same way, measured side by side
here, which is the comparison a user makes against one line of Optimum or NNCF, and which holds on a different CPU
where an absolute budget or a fixed keep ratio does not (4 layers at 40% are 3.22x the OpenVINO INT8 teacher on one
AMD host and 2.78x on an Intel one, docs/recovery.md).

Latency depends on shapes, not on trained weights, so each candidate is the teacher sliced by the Fisher plan
for that ratio, exported, converted and quantized by the profile's first runtime/precision pair and measured in its
own process at the profile's settings. Distillation afterwards recovers the accuracy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from .config import Profile, StructuredConfig
from .errors import EdgesmithError

RATIOS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.33, 0.25, 0.2, 0.15, 0.1)
ITERATIONS = 40


def fit_keep_ratio(teacher_dir: Path, scores: tuple[Any, Any], cfg: StructuredConfig, profile: Profile, task: str,
                   feeds: list[dict[str, Any]], work: Path, kept_layers: list[int] | None = None,
                   longest: int | None = None) -> dict[str, Any]:
    """Walk down RATIOS until the measured target is met; returns the choice and the measured curve. `work` holds
    each candidate's files while it is measured and is gone afterwards. `longest`: the longest input the bundle will
    accept (data.max_length); a p90 budget is met at that length where it exceeds the profile's, as the bundle
    stage judges it (latency.budget_p90)."""
    work.mkdir(parents=True)
    fit = _walk(teacher_dir, scores, cfg, profile, task, feeds, work, kept_layers, longest)
    work.rmdir()  # every candidate's folder went once measured
    return fit


def _walk(teacher_dir: Path, scores: tuple[Any, Any], cfg: StructuredConfig, profile: Profile, task: str,
          feeds: list[dict[str, Any]], work: Path, kept_layers: list[int] | None, longest: int | None) -> dict[str, Any]:
    from .modeling import load_model

    budget = profile.budgets.p90_ms
    refused = refuse_profile(profile, cfg)
    if refused:  # preflight refuses it before any work; kept for callers that skip preflight
        raise EdgesmithError(refused)
    runtime, precision = profile.candidates()[0]
    build, time_it = _measurer(teacher_dir, profile, task, feeds, work, longest)
    target: dict[str, Any] = {"profile": profile.name, "runtime": f"{runtime}-{precision}"}
    if cfg.fit_speedup is None:
        at = {"p90_at": longest} if longest and longest > profile.seq_len else {}
        walked = _walk_to(lambda point, _retime: point["p90_ms"] <= budget, scores, cfg, kept_layers, teacher_dir, work, build, time_it)
        return _met_or_refused(target | {"budget_p90_ms": budget} | at | walked)
    # The unpruned teacher, quantized the way the ratios are: what the speed-up is measured against. Its file stays
    # until the walk ends, so that a ratio which passes is confirmed against the same file timed again, the faster
    # reading counting: a slow moment while the teacher ran cannot make a ratio look fast enough. The same rule holds
    # the other way: a ratio that falls short is timed once more before the walk gives it up, since a slow moment
    # there would make it cut deeper than the target needs (single 40-run readings vary by a third on a busy host).
    teacher = build("unpruned", load_model(teacher_dir))
    teacher_p50 = [time_it(teacher)["p50_ms"]]

    def fast_enough(point: dict[str, Any], retime: Callable[[], dict[str, Any]]) -> bool:
        if not _speedup_met(point, teacher_p50, cfg.fit_speedup):  # type: ignore[arg-type]
            again = retime()
            if again["p50_ms"] < point["p50_ms"]:  # the faster reading counts, its p90 with it
                point.update(p50_ms=again["p50_ms"], p90_ms=_p90(again))
            if not _speedup_met(point, teacher_p50, cfg.fit_speedup):  # type: ignore[arg-type]
                return False
        teacher_p50.append(time_it(teacher)["p50_ms"])
        return _speedup_met(point, teacher_p50, cfg.fit_speedup)  # type: ignore[arg-type]

    walked = _walk_to(fast_enough, scores, cfg, kept_layers, teacher_dir, work, build, time_it)
    shutil.rmtree(work / "unpruned")
    return _met_or_refused(target | {"speedup": cfg.fit_speedup} | walked | {"teacher_p50_ms": teacher_p50})


def refuse_profile(profile: Profile, cfg: StructuredConfig) -> str | None:
    """Why `profile` cannot be walked to (checked in preflight, before any work), or None."""
    if profile.device != "cpu" or (profile.budgets.p90_ms is None and cfg.fit_speedup is None):
        return (f"prune.structured.fit_profile {profile.name!r} needs a CPU profile with budgets.p90_ms "
                "(or prune.structured.fit_speedup); pick another profile")
    return None


def _met_or_refused(fit: dict[str, Any]) -> dict[str, Any]:
    """A walk that met its target; one that did not even at the smallest ratio is an error naming the closest point,
    rather than a student cut to a tenth of its width for a target it still misses (its distillation would be hours
    spent on a model the accuracy budget most likely refuses). The stages before it are kept."""
    if fit["met"]:
        return fit
    closest = max(fit["curve"], key=lambda p: p["speedup"]) if "speedup" in fit else min(fit["curve"], key=lambda p: p["p90_ms"])
    raise EdgesmithError(f"prune.structured.fit_profile {fit['profile']!r}: {describe_target(fit)} is not met on this machine even "
                         f"at keep {RATIOS[-1]} (closest: {describe_point(closest)}); set a reachable target, keep fewer layers "
                         "(prune.structured.keep_layers), or set keep_heads and keep_ffn instead of a fit")


def _speedup_met(point: dict[str, Any], teacher_p50: list[float], target: float) -> bool:
    """The point's speed-up over the fastest teacher reading so far (written into the point), against the target."""
    point["speedup"] = min(teacher_p50) / point["p50_ms"]
    return point["speedup"] >= target


def _walk_to(met: Callable[[dict[str, Any], Callable[[], dict[str, Any]]], bool], scores: tuple[Any, Any], cfg: StructuredConfig,
             kept_layers: list[int] | None, teacher_dir: Path, work: Path, build: Callable[[str, Any], Path],
             time_it: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Down RATIOS until `met(point, retime)`; each ratio's files (work/keep-<ratio>, where build puts them) stay
    while `met` may time them again, and go before the next ratio is built."""
    from .importance import select
    from .modeling import load_model, slice_model

    curve = []
    for ratio in RATIOS:
        plan = select(*scores, cfg.model_copy(update={"keep_heads": ratio, "keep_ffn": ratio}), kept_layers)
        name = f"keep-{ratio}"
        path = build(name, slice_model(load_model(teacher_dir), plan))
        lat = time_it(path)
        curve.append({"keep": ratio, "p90_ms": _p90(lat), "p50_ms": lat.get("p50_ms", float("inf"))}
                     | ({"p90_at": lat["longest_len"]} if "longest_len" in lat else {}))
        passed = met(curve[-1], lambda: time_it(path))
        shutil.rmtree(work / name)
        if passed:
            return {"keep": ratio, "met": True, "curve": curve}
    return {"keep": RATIOS[-1], "met": False, "curve": curve}


def _p90(lat: dict[str, Any]) -> float:
    from .latency import budget_p90

    p90 = budget_p90(lat)
    return float("inf") if p90 is None else p90


def _measurer(teacher_dir: Path, profile: Profile, task: str, feeds: list[dict[str, Any]], work: Path,
              longest: int | None = None) -> tuple[Callable[[str, Any], Path], Callable[[Path], dict[str, Any]]]:
    """build(name, model): export, convert and quantize `model` with the profile's first pair into work/name;
    time_it(path): its latency at the profile's settings, in its own process."""
    from edgesmith.exporters.onnx import export_onnx

    from .latency import effective_threads, measure
    from .modeling import load_tokenizer
    from .runtimes import RUNTIMES, input_names_for
    from .tasks import get as get_task

    runtime, precision = profile.candidates()[0]
    threads, _ = effective_threads(profile)
    vocab, names, output = load_tokenizer(teacher_dir).vocab_size, input_names_for(teacher_dir), get_task(task).output_name

    def build(name: str, model: Any) -> Path:
        folder = work / name
        folder.mkdir(parents=True)
        export_onnx(model, task, names, folder / "raw.onnx", opset=17)
        fp32, _ = RUNTIMES[runtime].convert(folder / "raw.onnx", folder)
        return RUNTIMES[runtime].quantize(precision, fp32, folder, feeds, exported=folder / "raw.onnx")

    def time_it(path: Path) -> dict[str, Any]:
        return measure(runtime, path, profile, threads, vocab, warmup=5, iterations=ITERATIONS, output=output, longest=longest)

    return build, time_it


def describe_target(fit: dict[str, Any]) -> str:
    """The target a fit walked to, in words, for the report: 'p90 ≤ 3 ms' or '3x the unpruned teacher (p50)'."""
    if "speedup" in fit:
        return f"{fit['speedup']:g}x faster (p50) than the unpruned teacher in {fit['runtime']}"
    at = f" at {fit['p90_at']} tokens" if "p90_at" in fit else ""
    return f"p90 ≤ {fit['budget_p90_ms']} ms{at} in {fit['runtime']}"


def describe_point(point: dict[str, Any]) -> str:
    """One measured ratio: its p90, and its speed-up when the target was one."""
    at = f" at {point['p90_at']} tokens" if "p90_at" in point else ""
    text = f"keep {point['keep']}: p50 {point['p50_ms']:.2f} ms, p90{at} {point['p90_ms']:.2f} ms"
    return text + (f", {point['speedup']:.2f}x" if "speedup" in point else "")
