"""OpenVINO: IR (model.xml + model.bin) converted from the raw ONNX graph, FP16 by weight compression, INT8 by
NNCF (static, calibrated on real tokenized task rows). Every IR is saved through exporters.openvino.save_ir, so
the same inputs give the same bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import CPU_ONLY, Runtime


# Bundle side: the functions below are written into each OpenVINO bundle as edgesmith_runtime.py and read only
# numpy and openvino. edgesmith opens its own sessions through them too.
def with_threads(settings: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """A copy of `settings` with only the thread count changed (None: unchanged)."""
    import copy

    out = copy.deepcopy(settings)
    if threads is not None:
        out["config"]["INFERENCE_NUM_THREADS"] = threads
    return out


def open_model(path: Path, settings: dict[str, Any], threads: int | None = None, output: str | None = None) -> tuple[Any, Callable[[dict[str, np.ndarray]], np.ndarray], list[str], dict[str, Any]]:
    """(CompiledModel, run(feed) -> float32 array, input names, settings applied); `threads` replaces only
    INFERENCE_NUM_THREADS. run returns the graph output named `output` (None: the graph's only output)."""
    import numpy as np
    import openvino as ov

    settings = with_threads(settings, threads)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), settings["device"], settings["config"])
    request = compiled.create_infer_request()
    names, ports = [i.get_any_name() for i in compiled.inputs], compiled.outputs
    port = ports[0] if output is None and len(ports) == 1 else next((o for o in ports if output in o.get_names()), None)
    if port is None:
        raise ValueError(f"{path} has outputs {[o.get_any_name() for o in ports]}; name the one to return, not {output!r}")
    return compiled, lambda feed: np.asarray(request.infer({n: feed[n] for n in names})[port]), names, settings


BUNDLE = (with_threads, open_model)


class OpenVino(Runtime):
    name = "openvino"
    modules = ("openvino",)
    precisions = ("fp32", "fp16", "int8-static")  # NNCF quantizes statically: no int8-dynamic
    export_format = "openvino"
    bundle_file = "openvino_model.xml"  # optimum.intel.openvino.OV_XML_FILE_NAME; the weights: openvino_model.bin
    bundle_functions = BUNDLE
    open_model = staticmethod(open_model)

    def settings(self, threads: int, providers: tuple[str, ...] = CPU_ONLY) -> dict[str, Any]:
        """Pinned to f32: on CPUs with bf16 (AMX, AVX512-BF16) OpenVINO would otherwise run in bf16 by default."""
        return {"device": "CPU", "config": {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                            "INFERENCE_PRECISION_HINT": "f32"}}

    def with_threads(self, settings: dict[str, Any], threads: int | None) -> dict[str, Any]:
        return with_threads(settings, threads)

    def files(self, path: Path) -> list[Path]:
        weights = path.with_suffix(".bin")
        return [path] + ([weights] if weights.is_file() else [])

    def convert(self, onnx: Path, out: Path) -> tuple[Path, dict[str, Any]]:
        from edgesmith.exporters.openvino import export_ir

        return export_ir(onnx, out / "openvino" / "model.xml"), {}

    def quantize(self, precision: str, src: Path, out: Path, feeds: list[dict[str, np.ndarray]], exported: Path) -> Path:
        dst = out / f"openvino-{precision}" / "model.xml"
        dst.parent.mkdir(parents=True)
        if precision.startswith("int8"):
            return nncf_int8(src, dst, feeds)
        return copy_ir(src, dst, fp16=precision == "fp16")


def nncf_int8(src_xml: Path, dst_xml: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    import nncf
    import openvino as ov

    from edgesmith.exporters.openvino import save_ir

    model = ov.Core().read_model(str(src_xml))
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds))
    return save_ir(quantized, dst_xml)


def copy_ir(src_xml: Path, dst_xml: Path, fp16: bool) -> Path:
    import openvino as ov

    from edgesmith.exporters.openvino import save_ir

    return save_ir(ov.Core().read_model(str(src_xml)), dst_xml, fp16=fp16)
