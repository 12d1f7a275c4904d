"""Stage `export` (each pruned branch's shrunk student, and the teacher unpruned): ONNX (dynamic batch/sequence, ORT transformer fusions) and OpenVINO IR, each validated
against PyTorch on held-out rows. A fusion count short of one Attention per layer is recorded as a warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import ExportConfig, Frozen, Task
from ..errors import EdgesmithError
from ..evaluate import compare, outputs
from ..modeling import PLAN_FILE, load_model, load_tokenizer
from ..registry import stage
from ..runtimes import input_names_for, open_session
from .common import read_rows
from .teacher import TorchModelSession

# FP32 tolerance: fusions reorder float sums; anything past this is a real export bug.
ATOL = {"classification": 1e-3, "embedding": 1e-4}
VALIDATION_ROWS = 64


class ExportStageConfig(Frozen):
    export: ExportConfig
    task: Task
    max_length: int


@stage("export", ExportStageConfig, version=3)
def run(cfg: ExportStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    from edgesmith.exporters.onnx import export_onnx, fuse

    src = inputs["shrink"].path / "model"
    model, tokenizer = load_model(src, attn="eager"), load_tokenizer(src)
    names = input_names_for(src)
    export_onnx(model, cfg.task, names, out / "model.raw.onnx", cfg.export.opset)
    fused = fuse(out / "model.raw.onnx", out / "model.onnx")
    layers = len(json.loads((src / PLAN_FILE).read_text())["layers"])  # a shrunk student's or the teacher's own
    warnings = [] if fused.get("Attention", 0) == layers else [f"attention fused in {fused.get('Attention', 0)} of {layers} layers: expect less speed-up"]
    files = {"onnxruntime": out / "model.onnx"}
    if "openvino" in cfg.export.formats:
        from edgesmith.exporters.openvino import export_ir

        files["openvino"] = export_ir(out / "model.raw.onnx", out / "openvino" / "model.xml")
    rows = read_rows(inputs["data"].path / "eval.jsonl")[:VALIDATION_ROWS]
    reference = outputs(TorchModelSession(model, cfg.task), rows, tokenizer, cfg.max_length)
    validation = {}
    for runtime, path in files.items():
        got = outputs(open_session(runtime, path, threads=2), rows, tokenizer, cfg.max_length)
        validation[runtime] = check = compare(got, reference, cfg.task)
        if check["max_abs_diff"] > ATOL[cfg.task] or check.get("argmax_agreement", 1.0) < 1.0:
            raise EdgesmithError(f"export: {runtime} output differs from PyTorch ({check}); this is an export bug, please report it")
    return {"fused_ops": fused, "layers": layers, "warnings": warnings, "validation": validation,
            "input_names": names, "files": {k: str(v.relative_to(out)) for k, v in files.items()}}
