"""A bundle's model inputs and session exactly as its predict.py makes them, made by edgesmith itself.

The bundle stage writes reference.json with these and `edgesmith verify` re-checks a bundle with them. Nothing
here imports or executes a file of the bundle: only manifest.json and tokenizer.json are read, as data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import require
from .runtimes import RUNTIMES, Session

# reference.json: the bundle stage writes at most this many sentences, each cut to this many characters, and
# verify refuses more: it tokenizes and runs every one (80,000 sentences had taken 4.2 GB on a tiny model)
REFERENCE_ROWS = 8
REFERENCE_CHARS = 2000
REFERENCE_BYTES = 16 * 2**20  # the whole file; the bundle stage writes fewer rows where a tagger's outputs need it


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
    return isinstance(runtime, str) and runtime in RUNTIMES and RUNTIMES[runtime].made_here(session.get("settings"))


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


def open_bundle_session(folder: Path, threads: int | None = None) -> Session:
    """The bundle's model opened with manifest["session"] by the function predict.py opens it with (the runtime's
    open_model, which the bundle carries as edgesmith_runtime.py; edgesmith calls its own copy); `threads` replaces
    only the thread count. Returns a runtimes.Session: `.run(feed) -> float32 array`, `.input_names`, `.settings`
    (the settings applied). What this machine lacks (execution providers) is dropped as predict.py drops it, with a
    note on stderr: the outputs are then not those of the profile's hardware. It returns the graph output the
    manifest names, as predict.py's does: the task's own (an embedding graph has another, for sentence-transformers)."""
    from .tasks import get as get_task

    manifest = read_manifest(folder)
    runtime, settings, output = manifest["session"]["runtime"], manifest["session"]["settings"], manifest.get("output")
    require(output == get_task(manifest.get("task")).output_name,
            f"{folder}: manifest.json names output {output!r}, not its task's; rebuild the bundle")
    return RUNTIMES[runtime].open_bundle(folder / manifest["model_file"], settings, threads, output)


def run_as_predict(session: Session, folder: Path, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
    """`session`'s outputs for `texts`, run as the bundle's predict.py runs them: manifest inputs.texts_per_call texts
    a call (one for ONNX Runtime's dynamic INT8, whose scales span the call's padded batch). A tagger's per-token
    outputs are padded with zeros to the longest of all the texts, as Predictor.predict pads them."""
    per_call = read_manifest(folder)["inputs"]["texts_per_call"]
    require(type(per_call) is int and per_call >= 1, f"{folder}: manifest.json's inputs.texts_per_call is not a whole "
            "number; rebuild the bundle")
    outs = [np.asarray(session.run(encode(folder, texts[i : i + per_call], None if pairs is None else pairs[i : i + per_call])))
            for i in range(0, len(texts), per_call)]
    width = max(o.shape[1] for o in outs) if outs[0].ndim == 3 else 0
    return np.concatenate([np.pad(o, ((0, 0), (0, width - o.shape[1]), (0, 0))) if o.ndim == 3 else o for o in outs])
