"""One call shape for every runtime: `session.run({name: int64 array [batch, seq]}) -> float32 array`.

Used by validation, evaluation and the benchmark runner so that each artifact is measured the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgesmithError


class TorchSession:
    """PyTorch FP32 (default SDPA attention): the teacher as users run it before edgesmith."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        import torch

        from edgesmith.exporters.onnx import ForExport
        from .modeling import load_model

        torch.set_num_threads(threads)
        model = load_model(model_dir, attn="sdpa")
        plan_task = "classification" if hasattr(model, "classifier") else "embedding"
        names = input_names_for(model_dir)
        self.input_names = names
        self._module = ForExport.wrap(model, plan_task, names)

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._module(*(torch.from_numpy(feed[n]) for n in self.input_names)).float().numpy()


class OrtSession:
    def __init__(self, path: Path, threads: int, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise EdgesmithError(f"execution provider(s) {missing} not available; install onnxruntime-gpu or pick a CPU profile")
        self._sess = ort.InferenceSession(str(path), opts, providers=list(providers))
        self.input_names = [i.name for i in self._sess.get_inputs()]

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self._sess.run(None, {n: feed[n] for n in self.input_names})[0]


class OvSession:
    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        res = self._request.infer({n: feed[n] for n in self.input_names})
        return np.asarray(res[self._compiled.outputs[0]])


def open_session(kind: str, path: Path, threads: int, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> Any:
    """kind: 'torch' (a model folder), 'onnxruntime' (.onnx) or 'openvino' (.xml)."""
    if kind == "torch":
        return TorchSession(path, threads)
    if kind == "onnxruntime":
        return OrtSession(path, threads, providers)
    if kind == "openvino":
        return OvSession(path, threads)
    raise EdgesmithError(f"unknown runtime {kind!r}; use torch, onnxruntime or openvino")


def input_names_for(model_dir: Path) -> list[str]:
    """Model inputs the tokenizer produces and the architecture accepts (no token_type_ids for RoBERTa)."""
    import json

    from .arch import ARCHITECTURES

    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    names = ["input_ids", "attention_mask"]
    return names + (["token_type_ids"] if ARCHITECTURES[model_type].has_token_types else [])
