"""Latency-budget targeting: the largest keep ratio whose quantized model meets a profile's p90 budget.

Latency depends on shapes, not on trained weights, so each candidate is the teacher sliced by the Fisher plan
for that ratio, exported, converted and quantized by the profile's first runtime/precision pair and measured in its
own process at the profile's settings on this machine. Distillation afterwards recovers the accuracy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .config import Profile, StructuredConfig
from .errors import EdgesmithError

RATIOS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.33, 0.25, 0.2, 0.15, 0.1)


def fit_keep_ratio(teacher_dir: Path, scores: tuple[Any, Any], cfg: StructuredConfig, profile: Profile, task: str,
                   feeds: list[dict[str, Any]], work: Path, kept_layers: list[int] | None = None) -> dict[str, Any]:
    """Walk down RATIOS until the measured p90 fits; returns the choice and the measured curve."""
    from edgesmith.exporters.onnx import export_onnx

    from .importance import select
    from .latency import effective_threads, measure
    from .modeling import load_model, load_tokenizer, slice_model
    from .runtimes import RUNTIMES, input_names_for
    from .tasks import get as get_task

    budget = profile.budgets.p90_ms
    if budget is None or profile.device != "cpu":
        raise EdgesmithError(f"prune.structured.fit_profile {profile.name!r} needs a CPU profile with budgets.p90_ms; pick another profile")
    runtime, precision = profile.candidates()[0]
    threads, _ = effective_threads(profile)
    vocab, names = load_tokenizer(teacher_dir).vocab_size, input_names_for(teacher_dir)
    curve = []
    for ratio in RATIOS:
        plan = select(*scores, cfg.model_copy(update={"keep_heads": ratio, "keep_ffn": ratio}), kept_layers)
        folder = work / f"keep-{ratio}"
        folder.mkdir(parents=True)
        export_onnx(slice_model(load_model(teacher_dir), plan), task, names, folder / "raw.onnx", opset=17)
        fp32, _ = RUNTIMES[runtime].convert(folder / "raw.onnx", folder)
        path = RUNTIMES[runtime].quantize(precision, fp32, folder, feeds, exported=folder / "raw.onnx")
        lat = measure(runtime, path, profile, threads, vocab, warmup=5, iterations=40, output=get_task(task).output_name)
        shutil.rmtree(folder)
        curve.append({"keep": ratio, "p90_ms": lat.get("p90_ms"), "p50_ms": lat.get("p50_ms")})
        if lat.get("p90_ms", float("inf")) <= budget:
            return {"profile": profile.name, "budget_p90_ms": budget, "runtime": f"{runtime}-{precision}", "keep": ratio, "met": True, "curve": curve}
    return {"profile": profile.name, "budget_p90_ms": budget, "runtime": f"{runtime}-{precision}", "keep": RATIOS[-1], "met": False, "curve": curve}
