"""ONNX Runtime: the fused ONNX graph (ORT transformer fusions), quantized with ORT's own tools (dynamic INT8,
static QDQ INT8, FP16). Calibration feeds are real tokenized task rows at their real lengths."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import EdgesmithError
from .base import CPU_ONLY, Runtime, Session

if TYPE_CHECKING:
    from ..config import Measurement

# Ops ORT's integer quantizer handles in a fused BERT graph. Gather/EmbedLayerNormalization matter: the word
# embedding is the largest single tensor, and leaving it FP32 keeps the file near half of the FP32 size.
DYNAMIC_OPS = ["MatMul", "Attention", "Gather", "EmbedLayerNormalization"]
FLOAT = 1  # onnx.TensorProto.FLOAT: fused ops (com.microsoft domain) defeat shape inference without it


# Bundle side: the functions below are written into each ONNX Runtime bundle as edgesmith_runtime.py and read only
# numpy and onnxruntime. edgesmith opens its own sessions through them too.
def edgesmith_settings(threads: int, providers: Any = ("CPUExecutionProvider",)) -> dict[str, Any]:
    """The session settings edgesmith makes."""
    return {"intra_op_num_threads": threads, "inter_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL",
            "providers": list(providers)}


def is_edgesmiths(settings: Any) -> bool:
    """Whether `settings` are edgesmith_settings(n, providers) for a whole thread count n (1 to 1024) and a providers
    list of distinct execution provider names: the only settings open_model applies. Each is set on SessionOptions by
    name, and others, such as optimized_model_filepath or enable_profiling, would write files. A provider that is not
    a name (a list, say) had passed and left the session on the CPU, unlike what was measured."""
    if not isinstance(settings, dict):
        return False
    providers = settings.get("providers")
    if not isinstance(providers, list) or not providers:
        return False
    if not all(isinstance(p, str) and p.isidentifier() and p.endswith("ExecutionProvider") for p in providers) \
            or len(set(providers)) != len(providers):
        return False
    n = settings.get("intra_op_num_threads")
    return type(n) is int and 1 <= n <= 1024 and settings == edgesmith_settings(n, settings["providers"])


def with_threads(settings: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """A copy of `settings` with only the thread count changed (None: unchanged)."""
    import copy

    out = copy.deepcopy(settings)
    if threads is not None:
        out["intra_op_num_threads"] = threads
    return out


def usable_providers(providers: list[str]) -> list[str]:
    """A GPU bundle still runs, slowly, on a CPU: on the providers this machine has, and it says so."""
    import sys

    import onnxruntime as ort

    usable = [p for p in providers if p in ort.get_available_providers()] or ["CPUExecutionProvider"]
    if usable != providers:
        print(f"note: execution providers {providers} not all available here; running on {usable}", file=sys.stderr)
    return usable


def open_model(path: Path, settings: dict[str, Any], threads: int | None = None, output: str | None = None) -> tuple[Any, Callable[[dict[str, np.ndarray]], np.ndarray], list[str], dict[str, Any]]:
    """(InferenceSession, run(feed) -> float32 array, input names, settings applied). Every setting is applied as
    recorded (the optimization level by its enum name); `threads` replaces only intra_op_num_threads. run returns
    the graph output named `output` (None: the graph's only output)."""
    import os
    import sys

    import onnxruntime as ort

    if not is_edgesmiths(settings):
        raise ValueError(f"session settings {settings} are not ones edgesmith makes (manifest.json edited?); re-copy the "
                         "bundle, or rebuild it")
    settings = with_threads(settings, threads)
    cores = os.cpu_count() or 1
    if settings["intra_op_num_threads"] > cores:  # recorded on a machine with more cores: more threads only wait
        print(f"note: {settings['intra_op_num_threads']} threads recorded, {cores} cores here; running on {cores}", file=sys.stderr)
        settings["intra_op_num_threads"] = cores
    settings["providers"] = usable_providers(settings["providers"])
    opts = ort.SessionOptions()
    for key, value in settings.items():
        if key != "providers":
            setattr(opts, key, getattr(ort.GraphOptimizationLevel, value) if key == "graph_optimization_level" else value)
    sess = ort.InferenceSession(str(path), opts, providers=settings["providers"])
    names, outputs = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
    fetch = outputs[:1] if output is None and len(outputs) == 1 else [output]
    if fetch[0] not in outputs:
        raise ValueError(f"{path} has outputs {outputs}; name the one to return, not {output!r}")
    return sess, lambda feed: sess.run(fetch, {n: feed[n] for n in names})[0], names, settings


BUNDLE = (edgesmith_settings, is_edgesmiths, with_threads, usable_providers, open_model)


def made_by_this_edgesmith(settings: Any) -> bool:
    """is_edgesmiths, and every provider one this ONNX Runtime knows: edgesmith writes only a profile's providers,
    checked so when the profile is read (config.Measurement), so verify refuses any other name. The bundle's own copy
    checks the names' form only, so that a device's older or newer ONNX Runtime still opens it (dropping, with a
    note, what the device lacks)."""
    import onnxruntime as ort

    return is_edgesmiths(settings) and set(settings["providers"]) <= set(ort.get_all_providers())


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    modules = ("onnxruntime",)
    precisions = ("fp32", "fp16", "int8-dynamic", "int8-static")
    devices = ("cpu", "cuda")
    export_format = "onnx"
    bundle_file = "model.onnx"  # optimum.onnxruntime.ONNX_WEIGHTS_NAME
    bundle_functions = BUNDLE
    open_model = staticmethod(open_model)
    made_here = staticmethod(made_by_this_edgesmith)
    per_call_scales = ("int8-dynamic",)

    def settings(self, threads: int, providers: tuple[str, ...] = CPU_ONLY) -> dict[str, Any]:
        return edgesmith_settings(threads, providers)

    def with_threads(self, settings: dict[str, Any], threads: int | None) -> dict[str, Any]:
        return with_threads(settings, threads)

    def files(self, path: Path) -> list[Path]:
        return [path]

    def _open(self, path: Path, settings: dict[str, Any], output: str | None = None) -> Session:
        """Refuses providers this machine lacks: a measurement must run where the profile says."""
        import onnxruntime as ort

        missing = [p for p in settings["providers"] if p not in ort.get_available_providers()]
        if missing:
            raise EdgesmithError(f"execution provider(s) {missing} not available; install onnxruntime-gpu or pick a CPU profile")
        return super()._open(path, settings, output)

    def hardware_gap(self, profile: Measurement) -> str | None:
        if profile.device == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "no CUDA GPU / onnxruntime-gpu on this machine"
        return None

    def convert(self, onnx: Path, out: Path) -> tuple[Path, dict[str, Any]]:
        """ORT's transformer fusions (exporters.onnx.fuse) into out/model.onnx; facts: the count of each fused op."""
        from edgesmith.exporters.onnx import fuse

        fused = fuse(onnx, out / "model.onnx")
        return out / "model.onnx", {"fused_ops": fused}

    def quantize(self, precision: str, src: Path, out: Path, feeds: list[dict[str, np.ndarray]], exported: Path) -> Path:
        dst = out / f"model.{precision}.onnx"
        if precision == "int8-dynamic":
            return dynamic_int8(src, dst)
        if precision == "int8-static":
            return static_int8(exported, dst, feeds)
        if precision == "fp16":
            return fp16(src, dst)
        shutil.copy2(src, dst)
        return dst


def dynamic_int8(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, op_types_to_quantize=DYNAMIC_OPS, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": FLOAT})
    return dst


def static_int8(exported: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """QDQ INT8 (uint8 activations, int8 per-channel weights: the fast U8S8 path on x86 and ARM) of the plain
    exported graph, not the fused one: QDQ has no form for the fused Attention and EmbedLayerNormalization ops, so
    on the fused graph their weights (the word embedding, every QKV projection) stayed FP32 and shape inference
    failed past SkipLayerNormalization, leaving every activation unquantized: 62 of 80 MB for the quickstart
    student, and slower than FP32. ONNX Runtime fuses the QDQ pairs into integer kernels when the session opens."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        # ORT's recommended pre-processing (constant folding, shape inference). Its symbolic shape inference
        # gives up on the exported attention-mask arithmetic; ONNX's own shape inference suffices for QDQ.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=True)
        quantize_static(prepared, dst, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Gather"],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        extra_options={"DefaultTensorType": FLOAT})
    return dst


def fp16(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))
    return dst
