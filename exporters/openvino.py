"""ONNX -> OpenVINO IR (model.xml + model.bin), FP32 weights kept so that INT8 is a separate, measured step.

Every IR is written through `save_ir`, which renames OpenVINO's auto-generated node names (`Constant_152116`:
a counter global to the process, so the same model saved after more work in the same process gets other names)
to their position in the graph. The same inputs then give the same bytes, whichever process built them: a
rerun after a crash rebuilds a byte-identical IR, and bundle hashes compare across runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

AUTO_NAME = re.compile(r"[A-Z][A-Za-z0-9]*(_\d+)+")  # Constant_152116, Constant_78_1 (a de-duplicated one)


def export_ir(onnx_path: Path, out_xml: Path) -> Path:
    import openvino as ov

    return save_ir(ov.convert_model(str(onnx_path)), out_xml)


def save_ir(model: Any, out_xml: Path, fp16: bool = False) -> Path:
    import openvino as ov

    for i, op in enumerate(model.get_ordered_ops()):
        # `Type_N` is OpenVINO's own naming (a folded constant keeps its source's, e.g. Range_33); names that came
        # from the ONNX graph look like /model/bert/... and stay.
        if AUTO_NAME.fullmatch(op.get_friendly_name()):
            op.set_friendly_name(f"{op.get_type_name()}_ir{i}")  # `_irN`: cannot collide with a name left as is
    ov.save_model(model, str(out_xml), compress_to_fp16=fp16)
    return out_xml
