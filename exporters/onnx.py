"""PyTorch -> ONNX with dynamic batch/sequence axes, then ONNX Runtime's transformer fusions.

The TorchScript exporter (dynamo=False) is used on purpose: ONNX Runtime's BERT fusion patterns
(Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu) are written against its graphs, and the
number of fused nodes is counted so that a silent fusion failure shows up in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..tasks import get as get_task

FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
             "SkipSimplifiedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "LayerNormalization")


class ForExport:
    """Wrap a transformers model so that it returns the task's output (edgesmith.tasks), or with `every`, the whole
    graph's outputs: the task's `extra_outputs`, then its own."""

    @staticmethod
    def wrap(model: Any, task: str, input_names: list[str], every: bool = False) -> Any:
        import torch

        head = get_task(task)

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: Any) -> Any:
                inputs = dict(zip(input_names, args))
                out, mask = self.model(**inputs), inputs["attention_mask"]
                return (*head.extras(out, mask), head.output(out, mask)) if every else head.output(out, mask)

        return Wrapped().eval()


def output_axes(task: str) -> dict[str, dict[int, str]]:
    """The graph's outputs in order, with their dynamic axes."""
    head = get_task(task)
    return head.extra_outputs | {head.output_name: head.output_axes}


def export_onnx(model: Any, task: str, input_names: list[str], out: Path, opset: int) -> Path:
    """Export with dynamic batch and sequence axes; returns the .onnx path."""
    import torch

    wrapped = ForExport.wrap(model, task, input_names, every=True)
    dummy = tuple(torch.ones(2, 16, dtype=torch.long) for _ in input_names)
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names} | output_axes(task)
    with torch.no_grad():
        torch.onnx.export(
            wrapped, dummy, str(out), input_names=input_names, output_names=list(output_axes(task)),
            dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True,
        )
    return out


def fuse(src: Path, dst: Path) -> dict[str, int]:
    """ONNX Runtime transformer fusions; num_heads=0/hidden_size=0 lets it detect per-layer (pruned) head counts.

    Returns the count of each fused op type present in the optimized graph.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    optimized.save_model_to_file(str(dst))
    return fused_op_counts(optimized.model)


def fused_op_counts(model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in FUSED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
