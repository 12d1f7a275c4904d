"""Stage `export` (each pruned branch's shrunk student, and the teacher unpruned): ONNX (dynamic batch/sequence), then
each runtime's own FP32 model converted from it (ONNX Runtime: transformer fusions; OpenVINO: IR) for every runtime
whose format the recipe's export.formats lists, each validated against PyTorch on held-out rows. A fusion count short
of one Attention per layer is recorded as a warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import ExportConfig, Frozen, Task
from ..errors import EdgesmithError
from ..evaluate import agrees, compare, outputs
from ..modeling import PLAN_FILE, load_model, load_tokenizer
from ..registry import stage
from ..runtimes import RUNTIMES, input_names_for, open_session
from ..tasks import get as get_task
from .common import read_rows
from .teacher import TorchModelSession

# FP32 tolerance: fusions reorder float sums; anything past this is a real export bug.
VALIDATION_ROWS = 64


class ExportStageConfig(Frozen):
    export: ExportConfig
    task: Task
    max_length: int


@stage("export", ExportStageConfig, version=4)  # 4: an embedding graph also outputs last_hidden_state
def run(cfg: ExportStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    from edgesmith.exporters.onnx import export_onnx

    src = inputs["shrink"].path / "model"
    model, tokenizer = load_model(src, attn="eager"), load_tokenizer(src)
    names = input_names_for(src)
    export_onnx(model, cfg.task, names, out / "model.raw.onnx", cfg.export.opset)
    files, converted = {}, {}
    for rt in RUNTIMES.values():
        if rt.export_format in cfg.export.formats:
            files[rt.name], facts = rt.convert(out / "model.raw.onnx", out)
            converted |= facts
    layers = len(json.loads((src / PLAN_FILE).read_text())["layers"])  # a shrunk student's or the teacher's own
    fused = converted.get("fused_ops")  # counted by a runtime that fuses the graph (ONNX Runtime)
    warnings = [] if fused is None or fused.get("Attention", 0) == layers else [f"attention fused in {fused.get('Attention', 0)} of {layers} layers: expect less speed-up"]
    rows = read_rows(inputs["data"].path / "eval.jsonl")[:VALIDATION_ROWS]
    reference = outputs(TorchModelSession(model, cfg.task), rows, tokenizer, cfg.max_length, cfg.task)
    validation = {}
    for runtime, path in files.items():
        session = open_session(runtime, path, threads=2, output=get_task(cfg.task).output_name)
        got = outputs(session, rows, tokenizer, cfg.max_length, cfg.task)
        validation[runtime] = check = compare(got, reference, cfg.task)
        if not agrees(check, cfg.task):
            raise EdgesmithError(f"export: {runtime} output differs from PyTorch ({check}); this is an export bug, please report it")
    return {"fused_ops": fused or {}, "layers": layers, "warnings": warnings, "validation": validation,
            "input_names": names, "files": {k: str(v.relative_to(out)) for k, v in files.items()}}
