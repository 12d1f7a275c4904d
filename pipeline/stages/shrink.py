"""Stage `shrink`: the deployable PyTorch form. Structured: check that the pruned structures are physically
gone (fewer parameters, smaller file) and that the shape plan reloads into stock classes with identical
outputs. Sparse: store the encoder weights compressed (CSR); dense runtimes gain no speed from it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from ..config import Frozen
from ..errors import EdgesmithError
from ..modeling import PLAN_FILE, WEIGHTS_FILE, load_model, param_count, shape_plan
from ..registry import stage
from .common import dir_size


class ShrinkStageConfig(Frozen):
    branch: Literal["structured", "sparse"]


@stage("shrink", ShrinkStageConfig)
def run(cfg: ShrinkStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    src, dst = inputs["distill"].path / "model", out / "model"
    teacher_bytes = inputs["teacher"].facts["bytes"]
    teacher_params = inputs["teacher"].facts["params"]
    model = load_model(src)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(WEIGHTS_FILE))
    if cfg.branch == "sparse":
        from ..sparse import save_sparse

        counts = save_sparse(model, dst)
        note = "weights stored as CSR; dense runtimes (ONNX Runtime, OpenVINO CPU) multiply the zeros, so no speed-up"
        facts: dict[str, Any] = {"encoder_density": counts["nonzero"] / counts["total"], "note": note}
    else:
        shutil.copy2(src / WEIGHTS_FILE, dst / WEIGHTS_FILE)
        params = param_count(model)
        if params >= teacher_params:
            raise EdgesmithError("shrink: the structured student is not smaller than the teacher; raise prune.structured keep ratios below 1")
        facts = {"note": "pruned heads and FFN neurons physically removed"}
    _check_reload(model, dst)
    return facts | {"params": param_count(model), "teacher_params": teacher_params, "bytes": dir_size(dst, "*.safetensors"),
                    "teacher_bytes": teacher_bytes, "shape_plan": shape_plan(model)["layers"]}


def _check_reload(model: Any, folder: Path) -> None:
    """The saved form must rebuild into stock classes and reproduce the model bit for bit."""
    import torch

    reloaded = load_model(folder)
    ids = torch.randint(1000, 2000, (2, 12))
    feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        a, b = model(**feed), reloaded(**feed)
    key = "logits" if hasattr(a, "logits") else "last_hidden_state"
    if not torch.allclose(getattr(a, key), getattr(b, key), atol=1e-5):
        raise EdgesmithError(f"shrink: reloading {folder / PLAN_FILE} changed the outputs; this is a bug, please report it")
