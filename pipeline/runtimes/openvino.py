"""OpenVINO: IR (model.xml + model.bin) converted from the raw ONNX graph, FP16 by weight compression, INT8 by
NNCF (static, calibrated on real tokenized task rows). Every IR is saved through exporters.openvino.save_ir, so
the same inputs give the same bytes.

With `quantize.fidelity_samples` > 0, INT8 is built two ways, with NNCF's SmoothQuant (its default for transformers,
alpha 0.95) and without it, and the quantize stage ships the one whose output stays closer to the FP32 IR on held-out
training rows: on the narrow distilled SST-2 students SmoothQuant put the logits about twice as far from FP32 as
without it, on the sentence encoder it was the closer one (docs/recovery.md). Closer logits did not always mean
better accuracy, so the recipe opts in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import CPU_ONLY, Held, Runtime


# Bundle side: the functions below are written into each OpenVINO bundle as edgesmith_runtime.py and read only
# numpy and openvino. edgesmith opens its own sessions through them too.
def edgesmith_settings(threads: int, providers: Any = ("CPUExecutionProvider",)) -> dict[str, Any]:
    """The settings edgesmith makes. Pinned to f32: on CPUs with bf16 (AMX, AVX512-BF16) OpenVINO would otherwise run
    in bf16 by default."""
    return {"device": "CPU", "config": {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                        "INFERENCE_PRECISION_HINT": "f32"}}


def is_edgesmiths(settings: Any) -> bool:
    """Whether `settings` are edgesmith_settings(n) for a whole thread count n (1 to 1024): the only settings open_model
    applies (others, such as CACHE_DIR, would write files)."""
    config = settings.get("config") if isinstance(settings, dict) else None
    n = config.get("INFERENCE_NUM_THREADS") if isinstance(config, dict) else None
    return type(n) is int and 1 <= n <= 1024 and settings == edgesmith_settings(n)


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
    import os
    import sys

    import numpy as np
    import openvino as ov

    if not is_edgesmiths(settings):
        raise ValueError(f"session settings {settings} are not ones edgesmith makes (manifest.json edited?); re-copy the "
                         "bundle, or rebuild it")
    settings = with_threads(settings, threads)
    cores = os.cpu_count() or 1
    if settings["config"]["INFERENCE_NUM_THREADS"] > cores:  # recorded on a machine with more cores: more threads only wait
        print(f"note: {settings['config']['INFERENCE_NUM_THREADS']} threads recorded, {cores} cores here; running on {cores}",
              file=sys.stderr)
        settings["config"]["INFERENCE_NUM_THREADS"] = cores
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), settings["device"], settings["config"])
    request = compiled.create_infer_request()
    names, ports = [i.get_any_name() for i in compiled.inputs], compiled.outputs
    port = ports[0] if output is None and len(ports) == 1 else next((o for o in ports if output in o.get_names()), None)
    if port is None:
        raise ValueError(f"{path} has outputs {[o.get_any_name() for o in ports]}; name the one to return, not {output!r}")
    return compiled, lambda feed: np.asarray(request.infer({n: feed[n] for n in names})[port]), names, settings


BUNDLE = (edgesmith_settings, is_edgesmiths, with_threads, open_model)


class OpenVino(Runtime):
    name = "openvino"
    modules = ("openvino",)
    precisions = ("fp32", "fp16", "int8-static")  # NNCF quantizes statically: no int8-dynamic
    export_format = "openvino"
    bundle_file = "openvino_model.xml"  # optimum.intel.openvino.OV_XML_FILE_NAME; the weights: openvino_model.bin
    bundle_functions = BUNDLE
    open_model = staticmethod(open_model)
    made_here = staticmethod(is_edgesmiths)

    def settings(self, threads: int, providers: tuple[str, ...] = CPU_ONLY) -> dict[str, Any]:
        return edgesmith_settings(threads, providers)

    def with_threads(self, settings: dict[str, Any], threads: int | None) -> dict[str, Any]:
        return with_threads(settings, threads)

    def files(self, path: Path) -> list[Path]:
        weights = path.with_suffix(".bin")
        return [path] + ([weights] if weights.is_file() else [])

    def convert(self, onnx: Path, out: Path) -> tuple[Path, dict[str, Any]]:
        from edgesmith.exporters.openvino import export_ir

        return export_ir(onnx, out / "openvino" / "model.xml"), {}

    def quantize(self, precision: str, src: Path, out: Path, feeds: list[dict[str, np.ndarray]], exported: Path) -> Path:
        return self.quantize_choosing(precision, src, out, feeds, exported, None)[0]

    def quantize_choosing(self, precision: str, src: Path, out: Path, feeds: list[dict[str, np.ndarray]], exported: Path,
                          held: Held | None) -> tuple[Path, dict[str, Any]]:
        """INT8 facts: how many activation intervals were widened (balance_activation_ranges), and with held rows
        which NNCF setting was chosen."""
        dst = out / f"openvino-{precision}" / "model.xml"
        dst.parent.mkdir(parents=True)
        if not precision.startswith("int8"):
            return copy_ir(src, dst, fp16=precision == "fp16"), {}
        if held is None or not held.feeds:
            return dst, {"widened_intervals": quantize_int8(src, dst, feeds)}
        chosen = closest_nncf_int8(src, dst, feeds, held)
        return dst, {"widened_intervals": chosen["widened_intervals"][chosen["setting"]], "quantizer": chosen}


def nncf_settings() -> dict[str, dict[str, Any]]:
    """NNCF's INT8 settings edgesmith builds, by name: extra nncf.quantize arguments. The first is NNCF's own default
    for transformers, what Optimum Intel's and NNCF's one-liners give; a tie keeps it."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    off = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))  # -1: off
    return {"smoothquant": {}, "smoothquant-off": {"advanced_parameters": off}}


def nncf_int8(src_xml: Path, dst_xml: Path, feeds: list[dict[str, np.ndarray]], setting: str = "smoothquant") -> Path:
    quantize_int8(src_xml, dst_xml, feeds, setting)
    return dst_xml


def quantize_int8(src_xml: Path, dst_xml: Path, feeds: list[dict[str, np.ndarray]], setting: str = "smoothquant") -> int:
    """NNCF INT8 of the IR at `src_xml`, saved at `dst_xml`; returns how many activation intervals were widened."""
    import nncf
    import openvino as ov

    from edgesmith.exporters.openvino import save_ir

    model = ov.Core().read_model(str(src_xml))
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds), **nncf_settings()[setting])
    widened = balance_activation_ranges(quantized)
    save_ir(quantized, dst_xml)
    return widened


MAX_WIDENING = 1.25  # an interval is widened only if that costs at most a fifth of its resolution


def balance_activation_ranges(model: Any) -> int:
    """Widen every per-tensor activation quantizer in front of a weight matmul whose calibrated interval reaches
    further below zero than above it (high < -low <= MAX_WIDENING * high) to [low, -low]; returns how many were
    widened.

    Why: OpenVINO 2026.4's CPU plugin runs such a matmul on a slower quantized path, and the whole graph ran 8-12%
    slower with one or two of them (sst2-fast's three students on an Intel Xeon with AMX, docs/recovery.md). Which
    intervals come out that way depends only on the calibration rows. In the models measured the two ends were within
    4% of each other, so the widening costs little resolution; the quantize stage measures the model after this, so
    what ships is what was measured."""
    import openvino.opset13 as ops

    widened = 0
    for fq in model.get_ordered_ops():
        if fq.get_type_name() != "FakeQuantize" or not any(_is_weight_matmul(t.get_node(), t.get_index()) for t in fq.output(0).get_target_inputs()):
            continue
        low, high, out_low, out_high = (_scalar(fq.input_value(i).get_node()) for i in range(1, 5))
        if None in (low, high, out_low, out_high) or (low, high) != (out_low, out_high) or not high < -low <= MAX_WIDENING * high:
            continue
        for port in (2, 4):  # input_high and output_high, kept equal as NNCF writes them
            fq.input(port).replace_source_output(ops.constant(np.full(fq.input_value(port).get_shape(), -low, dtype=np.float32)).output(0))
        widened += 1
    return widened


def _scalar(node: Any) -> float | None:
    """The value of a one-element f32 Constant, else None (per-channel ranges are left alone)."""
    if node.get_type_name() != "Constant" or int(np.prod(node.get_output_shape(0))) != 1:
        return None
    return float(np.asarray(node.get_data(), dtype=np.float32).ravel()[0])


def _is_weight_matmul(node: Any, port: int) -> bool:
    """A MatMul whose other input is computed from constants alone (its weights), not a Q.K^T or P.V product."""
    return node.get_type_name() == "MatMul" and _constant_only(node.input_value(1 - port).get_node())


def _constant_only(node: Any, depth: int = 0) -> bool:
    if node.get_type_name() == "Constant":
        return True
    if node.get_type_name() == "Parameter" or depth > 8 or node.get_input_size() == 0:
        return False
    return all(_constant_only(node.input_value(i).get_node(), depth + 1) for i in range(node.get_input_size()))


def closest_nncf_int8(src_xml: Path, dst_xml: Path, feeds: list[dict[str, np.ndarray]], held: Held) -> dict[str, Any]:
    """Build every NNCF setting, keep at `dst_xml` the one whose output on `held` is closest to the FP32 IR's (mean
    absolute difference), and say what was measured. The others are built beside it and removed."""
    import shutil
    import tempfile

    reference = held_outputs(src_xml, held)
    distances, widened = {}, {}
    with tempfile.TemporaryDirectory(prefix=".nncf-", dir=dst_xml.parent) as tmp:  # inside the run folder
        for name in nncf_settings():
            xml = Path(tmp) / name / "model.xml"
            widened[name] = quantize_int8(src_xml, xml, feeds, name)
            distances[name] = float(np.mean(np.abs(held_outputs(xml, held) - reference)))
        chosen = min(distances, key=distances.__getitem__)  # dicts keep order: a tie keeps NNCF's default
        for f in (Path(tmp) / chosen).iterdir():
            shutil.move(str(f), str(dst_xml.parent / f.name))
    return {"quantizer": "nncf", "setting": chosen, "held_rows": len(held.feeds), "output": held.output,
            "mean_abs_diff_vs_fp32": distances, "widened_intervals": widened}


def held_outputs(xml: Path, held: Held) -> np.ndarray:
    """Every held row's output of the IR at `xml`, flattened and joined (rows may differ in length)."""
    _, run, _, _ = open_model(xml, OpenVino().settings(threads=2), output=held.output)
    return np.concatenate([run(feed).ravel() for feed in held.feeds])


def copy_ir(src_xml: Path, dst_xml: Path, fp16: bool) -> Path:
    import openvino as ov

    from edgesmith.exporters.openvino import save_ir

    return save_ir(ov.Core().read_model(str(src_xml)), dst_xml, fp16=fp16)
