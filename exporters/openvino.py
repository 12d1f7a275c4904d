"""ONNX -> OpenVINO IR (model.xml + model.bin), FP32 weights kept so that INT8 is a separate, measured step."""

from __future__ import annotations

from pathlib import Path


def export_ir(onnx_path: Path, out_xml: Path) -> Path:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(out_xml), compress_to_fp16=False)
    return out_xml
