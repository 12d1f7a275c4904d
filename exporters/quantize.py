"""Post-training quantization with the runtimes' own tools: ONNX Runtime (dynamic INT8, static QDQ INT8, FP16)
and NNCF for OpenVINO INT8. Calibration feeds are real tokenized task rows at their real lengths."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .openvino import save_ir

# Ops ORT's integer quantizer handles in a fused BERT graph. Gather/EmbedLayerNormalization matter: the word
# embedding is the largest single tensor, and leaving it FP32 keeps the file near half of the FP32 size.
DYNAMIC_OPS = ["MatMul", "Attention", "Gather", "EmbedLayerNormalization"]
FLOAT = 1  # onnx.TensorProto.FLOAT: fused ops (com.microsoft domain) defeat shape inference without it


def ort_dynamic_int8(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, op_types_to_quantize=DYNAMIC_OPS, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": FLOAT})
    return dst


def ort_static_int8(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """QDQ INT8 (uint8 activations, int8 per-channel weights: the fast U8S8 path on x86 and ARM)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Gather"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"DefaultTensorType": FLOAT})
    return dst


def ort_fp16(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))
    return dst


def ov_int8(src_xml: Path, dst_xml: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(src_xml))
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds))
    return save_ir(quantized, dst_xml)


def ov_copy(src_xml: Path, dst_xml: Path, fp16: bool) -> Path:
    import openvino as ov

    return save_ir(ov.Core().read_model(str(src_xml)), dst_xml, fp16=fp16)


def copy(src: Path, dst: Path) -> Path:
    shutil.copy2(src, dst)
    return dst


def model_bytes(path: Path) -> int:
    """Bytes on disk of a model: .onnx alone, or .xml plus its .bin."""
    extra = path.with_suffix(".bin")
    return path.stat().st_size + (extra.stat().st_size if path.suffix == ".xml" and extra.is_file() else 0)


def quantize(runtime: str, precision: str, export_dir: Path, files: dict[str, str], out: Path, feeds: list[dict[str, Any]]) -> Path:
    """One candidate for a profile: returns the model path under out."""
    if runtime == "openvino":
        src = export_dir / files["openvino"]
        dst = out / f"openvino-{precision}" / "model.xml"
        dst.parent.mkdir(parents=True)
        if precision.startswith("int8"):
            return ov_int8(src, dst, feeds)
        return ov_copy(src, dst, fp16=precision == "fp16")
    src = export_dir / files["onnxruntime"]
    dst = out / f"model.{precision}.onnx"
    if precision == "int8-dynamic":
        return ort_dynamic_int8(src, dst)
    if precision == "int8-static":
        return ort_static_int8(src, dst, feeds)
    if precision == "fp16":
        return ort_fp16(src, dst)
    return copy(src, dst)
