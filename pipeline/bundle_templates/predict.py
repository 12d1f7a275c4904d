"""Run this bundle's model on text. Needs only numpy, `tokenizers` and the runtime named in manifest.json.

    python predict.py "a sentence" ["another sentence" ...]
    python predict.py --pair "first sentence" "second sentence"
Prints one JSON line per input: the label and class probabilities, or the sentence embedding.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class Predictor:
    def __init__(self, folder: Path = HERE, threads: int = 1) -> None:
        from tokenizers import Tokenizer

        self.manifest = json.loads((folder / "manifest.json").read_text())
        spec = self.manifest["inputs"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(spec["max_length"])
        self.tokenizer.enable_padding(pad_id=spec["pad_token_id"], pad_token=spec["pad_token"])
        self.names = spec["names"]
        providers = self.manifest["profile"].get("execution_providers", ["CPUExecutionProvider"])
        self._run = _open(self.manifest["runtime"], folder / self.manifest["model_file"], threads, providers)

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        items = list(zip(texts, pairs)) if pairs else texts
        enc = self.tokenizer.encode_batch(items)
        arrays = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
                  "token_type_ids": [e.type_ids for e in enc]}
        return {n: np.asarray(arrays[n], dtype=np.int64) for n in self.names}

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Logits [n, classes] or embeddings [n, dim]."""
        return self._run(self.encode(texts, pairs))


def _open(runtime: str, path: Path, threads: int, providers: list[str]):
    if runtime == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        # The profile's providers where this machine has them (a GPU bundle still runs, slowly, on a CPU).
        usable = [p for p in providers if p in ort.get_available_providers()] or ["CPUExecutionProvider"]
        sess = ort.InferenceSession(str(path), opts, providers=usable)
        return lambda feed: sess.run(None, feed)[0]
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_NUM_THREADS": threads})
    return lambda feed: np.asarray(compiled(feed)[compiled.outputs[0]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="+")
    p.add_argument("--pair", action="store_true", help="texts are (first, second) pairs, interleaved")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    model = Predictor(threads=a.threads)
    first, second = (a.texts[0::2], a.texts[1::2]) if a.pair else (a.texts, None)
    out = model.predict(first, second)
    labels = model.manifest.get("labels") or []
    for text, row in zip(first, out):
        if labels:
            probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
            print(json.dumps({"text": text, "label": labels[int(row.argmax())], "probabilities": dict(zip(labels, probs.round(4).tolist()))}))
        else:
            print(json.dumps({"text": text, "embedding": row.round(6).tolist()}))


if __name__ == "__main__":
    main()
