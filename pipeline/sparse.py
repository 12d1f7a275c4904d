"""Unstructured sparsity: global magnitude masks, and compressed (CSR) storage of the pruned weights.

Dense runtimes (ONNX Runtime and OpenVINO on ordinary CPUs) multiply the zeros anyway, so a sparse model is
smaller on disk and in a .tar.gz but not faster; the report says so next to its measured latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .arch import layer_linears

SPARSE_FILE = "model.sparse.safetensors"


def prunable_weights(model: Any) -> dict[str, Any]:
    """name -> Linear module for every encoder Linear (embeddings and the task head stay dense)."""
    names = {id(m): n for n, m in model.named_modules()}
    return {names[id(m)]: m for layer in layer_linears(model) for m in layer.values()}


def magnitude_masks(model: Any, sparsity: float) -> dict[str, Any]:
    """Global magnitude masks: the smallest |w| across all encoder Linears go first (1 = keep)."""
    import torch

    mods = prunable_weights(model)
    flat = torch.cat([m.weight.detach().abs().flatten() for m in mods.values()])
    k = int(sparsity * flat.numel())
    threshold = torch.kthvalue(flat, k).values if k > 0 else flat.min() - 1
    return {n: (m.weight.detach().abs() > threshold).to(torch.uint8) for n, m in mods.items()}


def hold_masks(model: Any, masks: dict[str, Any]) -> None:
    """Attach masks with torch.nn.utils.prune so the zeros stay zero through training."""
    from torch.nn.utils import prune

    for name, module in prunable_weights(model).items():
        prune.custom_from_mask(module, "weight", masks[name].bool())


def release_masks(model: Any) -> None:
    """Fold the masks into plain weights (zeros stay) so the model saves as an ordinary state dict."""
    from torch.nn.utils import prune

    for module in prunable_weights(model).values():
        if prune.is_pruned(module):
            prune.remove(module, "weight")


def save_sparse(model: Any, out: Path) -> dict[str, int]:
    """Save with encoder Linear weights as CSR (values, int16/int32 column ids, row pointers)."""
    import torch
    from safetensors.torch import save_file

    sparse_names = {n + ".weight" for n in prunable_weights(model)}
    tensors, nnz, total = {}, 0, 0
    for name, t in model.state_dict().items():
        if name in sparse_names:
            csr = t.to_sparse_csr()
            idx_dtype = torch.int16 if t.shape[1] < 32768 else torch.int32
            tensors[name + ".values"] = csr.values().contiguous()
            tensors[name + ".col"] = csr.col_indices().to(idx_dtype).contiguous()
            tensors[name + ".rowptr"] = csr.crow_indices().to(torch.int32).contiguous()
            tensors[name + ".shape"] = torch.tensor(list(t.shape), dtype=torch.int64)
            nnz, total = nnz + csr.values().numel(), total + t.numel()
        else:
            tensors[name] = t.contiguous()
    save_file(tensors, str(out / SPARSE_FILE), metadata={"format": "edgesmith-csr/1"})
    return {"nonzero": nnz, "total": total}


def load_sparse(folder: Path) -> dict[str, Any]:
    """Dense state dict from a CSR file written by `save_sparse`."""
    import torch
    from safetensors.torch import load_file

    raw = load_file(str(folder / SPARSE_FILE))
    state = {k: v for k, v in raw.items() if not k.endswith((".values", ".col", ".rowptr", ".shape"))}
    for key in [k[: -len(".values")] for k in raw if k.endswith(".values")]:
        shape = raw[key + ".shape"].tolist()
        csr = torch.sparse_csr_tensor(raw[key + ".rowptr"].long(), raw[key + ".col"].long(), raw[key + ".values"], shape)
        state[key] = csr.to_dense()
    return state
