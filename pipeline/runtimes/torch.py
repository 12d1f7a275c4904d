"""The PyTorch reference: FP32, default SDPA attention, the teacher as users run it before edgesmith. The bench
stage measures it as the baseline; it is no profile runtime (nothing is converted, quantized or bundled for it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgesmithError
from .base import CPU_ONLY, Engine, Session


class TorchReference(Engine):
    name = "torch"
    modules = ("torch", "transformers")

    def settings(self, threads: int, providers: tuple[str, ...] = CPU_ONLY) -> dict[str, Any]:
        return {"num_threads": threads}

    def with_threads(self, settings: dict[str, Any], threads: int | None) -> dict[str, Any]:
        out = copy.deepcopy(settings)
        if threads is not None:
            out["num_threads"] = threads
        return out

    def files(self, path: Path) -> list[Path]:
        """The weights of a model folder."""
        return sorted(path.glob("*.safetensors"))

    def _open(self, path: Path, settings: dict[str, Any], output: str | None = None) -> Session:
        """Returns the task's output (`output` may name only it: the PyTorch model has no graph of other outputs)."""
        import torch

        from edgesmith.exporters.onnx import ForExport

        from ..modeling import PLAN_FILE, load_model
        from ..tasks import get as get_task

        task = json.loads((path / PLAN_FILE).read_text())["task"]  # saved with every model edgesmith writes
        if output not in (None, get_task(task).output_name):
            raise EdgesmithError(f"{path}: a {task} model in PyTorch returns {get_task(task).output_name!r}, not {output!r}")
        torch.set_num_threads(settings["num_threads"])
        model = load_model(path, attn="sdpa")
        names = input_names_for(path)
        module = ForExport.wrap(model, task, names)

        def run(feed: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                return module(*(torch.from_numpy(feed[n]) for n in names)).float().numpy()

        return Session(module, run, names, settings)


def input_names_for(model_dir: Path) -> list[str]:
    """Model inputs the tokenizer produces and the architecture accepts (no token_type_ids for RoBERTa)."""
    from ..arch import ARCHITECTURES

    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    names = ["input_ids", "attention_mask"]
    return names + (["token_type_ids"] if ARCHITECTURES[model_type].has_token_types else [])
