"""What users chain by hand today, built with those tools' own documented APIs (no edgesmith code):

2. Optimum: ONNX export, then ORTQuantizer dynamic INT8 with the AutoQuantizationConfig preset for this CPU.
3. Optimum: ORTOptimizer O2 fusions, then INT8 (ORTQuantizer; onnxruntime's quantize_dynamic if it fails).
4. optimum-intel: OpenVINO FP32 IR, and NNCF INT8 (OVQuantizer) calibrated on training sentences.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def cpu_preset() -> str:
    """The AutoQuantizationConfig preset matching this CPU's instruction set."""
    if platform.machine() in ("aarch64", "arm64"):
        return "arm64"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def optimum_dynamic(teacher: Path, work: Path) -> dict[str, Any]:
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    onnx_dir = work / "optimum-onnx"
    ORTModelForSequenceClassification.from_pretrained(teacher, export=True).save_pretrained(onnx_dir)
    preset = cpu_preset()
    config = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=False)
    out = ORTQuantizer.from_pretrained(onnx_dir).quantize(config, work / "optimum-int8")
    return {"path": Path(out) / "model_quantized.onnx", "note": f"AutoQuantizationConfig.{preset}(is_static=False)"}


def optimum_o2_int8(work: Path) -> dict[str, Any]:
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    o2 = work / "optimum-o2"
    ORTOptimizer.from_pretrained(work / "optimum-onnx").optimize(AutoOptimizationConfig.O2(), o2)
    preset = cpu_preset()
    try:
        config = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=False)
        out = ORTQuantizer.from_pretrained(o2, file_name="model_optimized.onnx").quantize(config, work / "optimum-o2-int8")
        return {"path": Path(out) / "model_optimized_quantized.onnx", "note": f"O2 + ORTQuantizer {preset}"}
    except Exception as err:  # the documented fallback: Optimum's quantizer on fused graphs is fragile
        from onnxruntime.quantization import QuantType, quantize_dynamic

        dst = work / "optimum-o2-int8.onnx"
        quantize_dynamic(o2 / "model_optimized.onnx", dst, weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": 1})
        return {"path": dst, "note": f"ORTQuantizer failed on the O2 graph ({type(err).__name__}: {str(err).splitlines()[0][:100]}); onnxruntime quantize_dynamic used"}


def openvino_fp32_int8(teacher: Path, work: Path, sentences: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from datasets import Dataset
    from optimum.intel import OVConfig, OVModelForSequenceClassification, OVQuantizationConfig, OVQuantizer
    from transformers import AutoTokenizer

    model = OVModelForSequenceClassification.from_pretrained(teacher, export=True, compile=False)
    model.save_pretrained(work / "ov-fp32")
    tok = AutoTokenizer.from_pretrained(teacher)
    calib = Dataset.from_dict(dict(tok(sentences, padding="max_length", max_length=128, truncation=True)))
    OVQuantizer.from_pretrained(model).quantize(
        calibration_dataset=calib, save_directory=work / "ov-int8", ov_config=OVConfig(quantization_config=OVQuantizationConfig()))
    return ({"path": work / "ov-fp32" / "openvino_model.xml", "note": "optimum-intel export"},
            {"path": work / "ov-int8" / "openvino_model.xml", "note": f"OVQuantizer, NNCF INT8, {len(sentences)} train sentences"})
