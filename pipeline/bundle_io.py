"""A bundle's model inputs and session exactly as its predict.py makes them, made by edgesmith itself.

The bundle stage writes reference.json with these and `edgesmith verify` re-checks a bundle with them. Nothing
here imports or executes a file of the bundle: only manifest.json and tokenizer.json are read, as data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .errors import require
from .runtimes import CPU_ONLY, made_here, open_session, with_threads

BUNDLE_RUNTIMES = ("onnxruntime", "openvino")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The bundle's manifest.json, once its session is checked to be one edgesmith makes: it is applied as is."""
    require((folder / "manifest.json").is_file(), f"{folder}: no manifest.json; pass a bundle folder made by edgesmith")
    manifest = json.loads((folder / "manifest.json").read_text())
    require(session_is_ours(manifest), f"{folder}: manifest.json has no session settings edgesmith makes (an older "
            "edgesmith made it, or it was edited); rebuild the bundle")
    return manifest


def session_is_ours(manifest: dict[str, Any]) -> bool:
    """Whether manifest["session"] names a bundle runtime with settings session_settings could have made: they are
    applied key by key (ONNX Runtime's optimized_model_filepath would write a file)."""
    session = manifest.get("session")
    runtime = session.get("runtime") if isinstance(session, dict) else None
    return runtime in BUNDLE_RUNTIMES and made_here(runtime, session.get("settings"))


def encode(folder: Path, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
    """Model inputs for `texts` (with their second sentences `pairs`), tokenized as the bundle's predict.py does:
    its tokenizer.json, truncated to manifest inputs.max_length, padded to the longest row with the manifest's
    pad token. Returns {name: int64 array [len(texts), tokens]} for each name in manifest inputs.names."""
    from tokenizers import Tokenizer

    require(pairs is None or len(pairs) == len(texts),
            f"{len(texts)} texts but {len(pairs or [])} second sentences; pass one second sentence per text")
    spec = read_manifest(folder)["inputs"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(spec["max_length"])
    tokenizer.enable_padding(pad_id=spec["pad_token_id"], pad_token=spec["pad_token"])
    enc = tokenizer.encode_batch(list(zip(texts, pairs)) if pairs is not None else texts)
    arrays = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
              "token_type_ids": [e.type_ids for e in enc]}
    return {n: np.asarray(arrays[n], dtype=np.int64) for n in spec["names"]}


def open_bundle_session(folder: Path, threads: int | None = None) -> Any:
    """The bundle's model opened with manifest["session"], as predict.py opens it; `threads` replaces only the
    thread count. Returns a runtimes session: `.run(feed) -> float32 array`, `.input_names`, `.settings` (the
    settings applied). Execution providers this machine lacks are dropped as predict.py drops them (CPU when
    none is left), with a note on stderr: the outputs are then not those of the profile's hardware."""
    manifest = read_manifest(folder)
    runtime, settings = manifest["session"]["runtime"], manifest["session"]["settings"]
    if threads is not None:
        settings = with_threads(runtime, settings, threads)
    if runtime == "onnxruntime":
        settings = settings | {"providers": _usable(settings["providers"])}
    return open_session(runtime, folder / manifest["model_file"], settings=settings)


def _usable(providers: list[str]) -> list[str]:
    import onnxruntime as ort

    usable = [p for p in providers if p in ort.get_available_providers()] or list(CPU_ONLY)
    if usable != providers:
        print(f"note: execution providers {providers} not all available here; running on {usable}", file=sys.stderr)
    return usable
