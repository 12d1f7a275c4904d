"""One call shape for every runtime: `session.run({name: int64 array [batch, seq]}) -> float32 array`.

Used by validation, evaluation and the benchmark runner so that each artifact is measured the same way. Every
session is opened from a session_settings() dict: the bench stage records it and bundles ship it to predict.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgesmithError, require


class TorchSession:
    """PyTorch FP32 (default SDPA attention): the teacher as users run it before edgesmith."""

    def __init__(self, model_dir: Path, settings: dict[str, Any]) -> None:
        import torch

        from edgesmith.exporters.onnx import ForExport
        from .modeling import load_model

        self.settings = settings
        torch.set_num_threads(settings["num_threads"])
        model = load_model(model_dir, attn="sdpa")
        plan_task = "classification" if hasattr(model, "classifier") else "embedding"
        names = input_names_for(model_dir)
        self.input_names = names
        self._module = ForExport.wrap(model, plan_task, names)

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._module(*(torch.from_numpy(feed[n]) for n in self.input_names)).float().numpy()


CPU_ONLY = ("CPUExecutionProvider",)


def session_settings(runtime: str, threads: int, providers: tuple[str, ...] = CPU_ONLY) -> dict[str, Any]:
    """The one definition of how a model is opened: benchmarks, evaluation and bundles all apply this dict.

    JSON-able, so the bench stage records it per row and a bundle's manifest.json carries it to predict.py.
    OpenVINO is pinned to f32: on CPUs with bf16 (AMX, AVX512-BF16) it would otherwise run in bf16 by default.
    """
    if runtime == "torch":
        return {"num_threads": threads}
    if runtime == "onnxruntime":
        return {"intra_op_num_threads": threads, "inter_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL",
                "providers": list(providers)}
    if runtime == "openvino":
        return {"device": "CPU", "config": {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                            "INFERENCE_PRECISION_HINT": "f32"}}
    raise EdgesmithError(f"unknown runtime {runtime!r}; use torch, onnxruntime or openvino")


def with_threads(runtime: str, settings: dict[str, Any], threads: int) -> dict[str, Any]:
    """A copy of session_settings(...) with only the thread count changed."""
    out = copy.deepcopy(settings)
    if runtime == "openvino":
        out["config"]["INFERENCE_NUM_THREADS"] = threads
    else:
        out["intra_op_num_threads" if runtime == "onnxruntime" else "num_threads"] = threads
    return out


class OrtSession:
    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        import onnxruntime as ort

        missing = [p for p in settings["providers"] if p not in ort.get_available_providers()]
        if missing:
            raise EdgesmithError(f"execution provider(s) {missing} not available; install onnxruntime-gpu or pick a CPU profile")
        self.settings = settings
        self._sess = ort.InferenceSession(str(path), ort_options(ort, settings), providers=settings["providers"])
        self.input_names = [i.name for i in self._sess.get_inputs()]

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self._sess.run(None, {n: feed[n] for n in self.input_names})[0]


def ort_options(ort: Any, settings: dict[str, Any]) -> Any:
    """SessionOptions with every key of the settings but providers set as is (the level by its enum name)."""
    opts = ort.SessionOptions()
    for key, value in settings.items():
        if key != "providers":
            setattr(opts, key, getattr(ort.GraphOptimizationLevel, value) if key == "graph_optimization_level" else value)
    return opts


class OvSession:
    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        import openvino as ov

        core = ov.Core()
        self.settings = settings
        self._compiled = core.compile_model(core.read_model(str(path)), settings["device"], settings["config"])
        self._request = self._compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        res = self._request.infer({n: feed[n] for n in self.input_names})
        return np.asarray(res[self._compiled.outputs[0]])


SESSIONS = {"torch": TorchSession, "onnxruntime": OrtSession, "openvino": OvSession}


def open_session(kind: str, path: Path, threads: int = 1, providers: tuple[str, ...] = CPU_ONLY, *,
                 settings: dict[str, Any] | None = None) -> Any:
    """kind: 'torch' (a model folder), 'onnxruntime' (.onnx) or 'openvino' (.xml).

    Opened with `settings` when given (a session_settings() dict recorded by the bench stage or a bundle
    manifest), else with session_settings(kind, threads, providers)."""
    if settings is None:
        settings = session_settings(kind, threads, providers)  # raises on an unknown kind
    require(made_here(kind, settings), f"{kind} session settings {settings} are not ones edgesmith makes; rebuild the bundle")
    return SESSIONS[kind](path, settings)


def made_here(kind: str, settings: Any) -> bool:
    """Whether `settings` are session_settings(kind, ...) for some thread count and providers. Settings read from a
    manifest are applied key by key: no others may pass (ONNX Runtime's optimized_model_filepath writes a file)."""
    try:
        return with_threads(kind, settings, 1) == session_settings(kind, 1, tuple(settings.get("providers", CPU_ONLY)))
    except (KeyError, TypeError, AttributeError, EdgesmithError):
        return False


def input_names_for(model_dir: Path) -> list[str]:
    """Model inputs the tokenizer produces and the architecture accepts (no token_type_ids for RoBERTa)."""
    from .arch import ARCHITECTURES

    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    names = ["input_ids", "attention_mask"]
    return names + (["token_type_ids"] if ARCHITECTURES[model_type].has_token_types else [])
