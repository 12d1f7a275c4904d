"""`edgesmith verify BUNDLE`: re-check a bundle where it now lies (after copying it to a device, say).

1. every file listed in manifest.json exists and has its recorded sha256;
2. the tokenizer loads with AutoTokenizer.from_pretrained(bundle) when transformers is installed;
3. the bundle's own predict.py reproduces the outputs recorded at build time;
4. those outputs still agree with the PyTorch student (class agreement or cosine).
"""

from __future__ import annotations

import importlib.util
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import sha256_file
from .errors import EdgesmithError, require

OUTPUT_ATOL = 1e-3  # same model, same runtime: only thread scheduling may reorder sums
MIN_AGREEMENT = 0.75  # INT8 may flip a near-tie among the 8 reference rows, not more
MIN_COSINE = 0.95


def verify(path: Path) -> list[str]:
    """Returns the checks passed; raises EdgesmithError on the first failure."""
    if path.is_file() and path.name.endswith(".tar.gz"):
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")
            return verify(next(Path(tmp).iterdir()))
    require((path / "manifest.json").is_file(), f"{path}: no manifest.json; pass a bundle folder or .tar.gz made by edgesmith")
    manifest = json.loads((path / "manifest.json").read_text())
    passed = [_hashes(path, manifest["files"])]
    passed.append(_tokenizer(path))
    passed += _outputs(path, manifest["task"])
    return passed


def _hashes(path: Path, files: dict[str, str]) -> str:
    for name, digest in files.items():
        require((path / name).is_file(), f"{path}: {name} is missing; re-copy the bundle")
        require(sha256_file(path / name) == digest, f"{path}: {name} does not match its sha256; re-copy the bundle")
    return f"sha256 of {len(files)} files match"


def _tokenizer(path: Path) -> str:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return "tokenizer: transformers not installed here, skipped AutoTokenizer check"
    tok = AutoTokenizer.from_pretrained(path)
    require(len(tok("edgesmith checks its bundles")["input_ids"]) > 2, f"{path}: tokenizer produced no tokens")
    return "tokenizer loads with AutoTokenizer.from_pretrained"


def _outputs(path: Path, task: str) -> list[str]:
    ref = json.loads((path / "reference.json").read_text())
    predict = _load_predict(path)
    got = predict.Predictor(path).predict(ref["texts"], ref["pairs"])
    expected, torch_out = np.asarray(ref["expected"]), np.asarray(ref["pytorch"])
    diff = float(np.abs(got - expected).max())
    require(diff <= OUTPUT_ATOL, f"{path}: outputs differ from those recorded at build time (max abs diff {diff:.2e}); rebuild the bundle")
    if task == "classification":
        agree = float((got.argmax(-1) == torch_out.argmax(-1)).mean())
        require(agree >= MIN_AGREEMENT, f"{path}: only {agree:.0%} of reference predictions match PyTorch; the model file is wrong")
        fidelity = f"{agree:.0%} class agreement with PyTorch"
    else:
        cos = float(_cos(got, torch_out).min())
        require(cos >= MIN_COSINE, f"{path}: embedding cosine to PyTorch {cos:.3f} < {MIN_COSINE}; the model file is wrong")
        fidelity = f"min cosine {cos:.4f} to PyTorch"
    return [f"outputs reproduce the build (max abs diff {diff:.1e})", fidelity]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def _load_predict(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("bundle_predict", path / "predict.py")
    if spec is None or spec.loader is None:
        raise EdgesmithError(f"{path}: predict.py missing or unreadable; re-copy the bundle")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
