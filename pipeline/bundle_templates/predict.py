"""Run this bundle's model on text. Needs only numpy, `tokenizers` and the runtime named in manifest.json.

    python predict.py "a sentence" ["another sentence" ...]
    python predict.py --pair "first sentence" "second sentence" [...]   (bundles for sentence pairs)
Prints one JSON line per input: the label and class probabilities, the entities with their character spans, or the
sentence embedding (edgesmith_task.py, generated from the task's code); with --raw, the model's float32 outputs
exactly (the graph output manifest.json's "output" names). The model is opened with manifest.json's "session"
settings, the ones its benchmark was measured with; --threads changes the thread count and nothing else.
edgesmith_runtime.py beside this file opens it: edgesmith generated it from the code its own benchmark opened the
model with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__/ in the bundle: `edgesmith verify` refuses files the manifest does not list
from edgesmith_runtime import open_model  # noqa: E402  (generated for this bundle's runtime, in this folder)
from edgesmith_task import postprocess  # noqa: E402  (generated for this bundle's task, in this folder)

HERE = Path(__file__).resolve().parent


def read_manifest(folder: Path = HERE) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


class Predictor:
    """`handle` is the runtime's own object (onnxruntime InferenceSession or OpenVINO CompiledModel);
    `settings` the session settings applied."""

    def __init__(self, folder: Path = HERE, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.manifest = read_manifest(folder)
        spec = self.manifest["inputs"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(spec["max_length"])
        self.tokenizer.enable_padding(pad_id=spec["pad_token_id"], pad_token=spec["pad_token"])
        self.names = spec["names"]
        self.handle, self.run, _, self.settings = open_model(folder / self.manifest["model_file"],
                                                             self.manifest["session"]["settings"], threads,
                                                             self.manifest["output"])

    def encodings(self, texts: list[str], pairs: list[str] | None = None) -> list[Any]:
        """The tokenizer's Encoding of each text (ids, offsets into the text, special-token mask)."""
        return self.tokenizer.encode_batch(list(zip(texts, pairs)) if pairs is not None else texts)

    def encode(self, texts: list[str], pairs: list[str] | None = None, enc: list[Any] | None = None) -> dict[str, np.ndarray]:
        enc = enc if enc is not None else self.encodings(texts, pairs)
        arrays = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
                  "token_type_ids": [e.type_ids for e in enc]}
        return {n: np.asarray(arrays[n], dtype=np.int64) for n in self.names}

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Logits [n, classes] or [n, tokens, tags], or embeddings [n, dim], float32."""
        return self.run(self.encode(texts, pairs))


def split(p: argparse.ArgumentParser, texts: list[str], pair: bool, text_pairs: bool) -> tuple[list[str], list[str] | None]:
    """(first sentences, second sentences or None); a usage error rather than a silently dropped input."""
    if pair and not text_pairs:
        p.exit(2, f"{p.prog}: error: this bundle's model takes single sentences; drop --pair\n")
    if text_pairs and not pair:
        p.exit(2, f"{p.prog}: error: this bundle's model takes sentence pairs; pass --pair FIRST SECOND [FIRST SECOND ...]\n")
    undecodable = [i for i, text in enumerate(texts, 1) if not text.isascii() and not _utf8(text)]
    if undecodable:  # Python keeps bytes that are not UTF-8 as lone surrogates, which the tokenizer cannot take
        p.exit(2, f"{p.prog}: error: text {undecodable[0]} is not valid UTF-8; pass UTF-8 text (check the "
                  "terminal's or the file's encoding)\n")
    if pair and len(texts) % 2:
        p.exit(2, f"{p.prog}: error: --pair takes texts two by two (first, second), got {len(texts)}; "
                  "add the missing second sentence\n")
    return (texts[0::2], texts[1::2]) if pair else (texts, None)


def count(low: int, high: int, why: str) -> Any:
    """An argparse type: a whole number from low to high (`why` says where high comes from)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"{n} is outside {low} to {high} ({why})")
        return n

    return parse


CORES = os.cpu_count() or 1
THREADS = count(1, CORES, "this machine's cores: more threads than cores only wait on each other")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def line(text: str, row: np.ndarray, encoding: Any, labels: list[str], raw: bool) -> dict[str, Any]:
    if raw:  # float32 -> Python float -> JSON is exact: parse back as float32 to get these bits
        return {"text": text, "outputs": row.tolist()}
    return postprocess(text, row, encoding, labels)  # the task's: labels, entities or the embedding


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="+")
    p.add_argument("--pair", action="store_true",
                   help="texts are (first, second) pairs, interleaved; for sentence-pair bundles only")
    p.add_argument("--threads", type=THREADS, help="override only the thread count of manifest.json's session settings "
                                                   "(default: the count the benchmark measured with)")
    p.add_argument("--raw", action="store_true",
                   help="print the model's float32 outputs exactly instead of labels or rounded embeddings")
    a = p.parse_args()
    first, second = split(p, a.texts, a.pair, read_manifest()["inputs"]["text_pairs"])
    model = Predictor(threads=a.threads)
    labels = model.manifest.get("labels") or []
    enc = model.encodings(first, second)
    for text, row, encoding in zip(first, model.run(model.encode(first, second, enc)), enc):
        print(json.dumps(line(text, row, encoding, labels, a.raw)))


if __name__ == "__main__":
    main()
