"""Run this bundle's model on text. Needs only numpy, `tokenizers` and the runtime named in manifest.json.

    python predict.py "a sentence" ["another sentence" ...]
    python predict.py --pair "first sentence" "second sentence" [...]   (bundles for sentence pairs)
    python predict.py --file texts.txt          (one text per line, or FIRST<TAB>SECOND with --pair; - reads stdin)
Prints one JSON line per input: the label and class probabilities, the entities with their character spans, or the
sentence embedding (edgesmith_task.py, generated from the task's code), and the second sentence as "pair" for
pairs; with --raw, the model's float32 outputs exactly (the graph output manifest.json's "output" names; for a
token classifier, one row per token of the text). A text longer than the bundle's max length
(manifest.json inputs.max_length, in tokens) is cut there, as its accuracy was measured: its line then says
"truncated": true, and a note on stderr counts them. Texts run as the held-out texts were scored: 32 at a time,
padded to the longest of the 32, or one at a time (manifest.json inputs.texts_per_call) where the quantization
scales are computed per call (ONNX Runtime's dynamic INT8), so that each text's answer is its own. The model is opened with manifest.json's "session" settings, the ones its
benchmark was measured with; --threads changes the thread count and nothing else. edgesmith_runtime.py beside this
file opens it: edgesmith generated it from the code its own benchmark opened the model with.

Before anything runs, every file manifest.json lists is checked against its sha256 there: a partial copy or a
replaced model file stops with one line. manifest.json itself is trusted, as this file is: check a bundle you
received with `edgesmith verify` (and --key for a signed one) before it goes to the device.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
from pathlib import Path, PurePosixPath
from typing import Any

try:
    import numpy as np
except ImportError as err:  # before anything else: the one package every bundle needs
    sys.exit(f"{Path(sys.argv[0]).name}: error: this bundle needs the Python package 'numpy' ({err}): pip install numpy")

sys.dont_write_bytecode = True  # no __pycache__/ in the bundle: `edgesmith verify` refuses files the manifest does not list
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # edgesmith_runtime.py and edgesmith_task.py, also under `python -I` or -P
PACKAGES = ("numpy", "tokenizers", "onnxruntime", "openvino")  # what a bundle imports besides its own modules


class BundleError(Exception):
    """A bundle that cannot run as it was built: main prints it as one line and exits with status 1."""


def read_manifest(folder: Path = HERE) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BundleError(f"{folder / 'manifest.json'} is unreadable ({_first_line(err)}); run the script in its "
                          "bundle folder, or re-copy the bundle") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError("manifest.json has no `files` table; re-copy the bundle, or rebuild it")
    return manifest


def check_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists, present with its recorded sha256, and the model file among them."""
    files = manifest["files"]
    if manifest.get("model_file") not in files:
        raise BundleError(f"manifest.json's model_file {manifest.get('model_file')!r} is not one of its files; re-copy "
                          "the bundle, or rebuild it")
    for name, digest in sorted(files.items()):
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise BundleError(f"manifest.json lists {ascii(name)}, outside the bundle folder; re-copy the bundle, or rebuild it")
        if not (folder / name).is_file():
            raise BundleError(f"{ascii(name)} is missing from {folder}; re-copy the bundle")
        if _sha256(folder / name) != digest:
            raise BundleError(f"{ascii(name)} does not match its sha256 in manifest.json (changed or cut short since the "
                              "build); re-copy the bundle")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


class Predictor:
    """`handle` is the runtime's own object (onnxruntime InferenceSession or OpenVINO CompiledModel);
    `settings` the session settings applied."""

    def __init__(self, folder: Path = HERE, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.manifest = read_manifest(folder)
        check_files(folder, self.manifest)
        from edgesmith_runtime import open_model  # generated for this bundle's runtime, in this folder; checked above

        spec = self.manifest["inputs"]
        self.per_call = spec.get("texts_per_call")
        if type(self.per_call) is not int or self.per_call < 1:
            raise BundleError("manifest.json has no inputs.texts_per_call (an older edgesmith built it, or it was edited); "
                              "rebuild the bundle")
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

    def calls(self, texts: list[str], pairs: list[str] | None = None) -> Any:
        """(texts, pairs, encodings, outputs) of each model call, texts_per_call texts a call, as they were scored."""
        for i in range(0, len(texts), self.per_call):
            t, p = texts[i : i + self.per_call], None if pairs is None else pairs[i : i + self.per_call]
            enc = self.encodings(t, p)
            yield t, p, enc, self.run(self.encode(t, p, enc))

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Logits [n, classes] or [n, tokens, tags] (zeros past a text's tokens), or embeddings [n, dim], float32."""
        outs = [out for *_, out in self.calls(texts, pairs)]
        width = max(o.shape[1] for o in outs) if outs[0].ndim == 3 else 0
        return np.concatenate([np.pad(o, ((0, 0), (0, width - o.shape[1]), (0, 0))) if o.ndim == 3 else o for o in outs])


def split(p: argparse.ArgumentParser, texts: list[str], pair: bool, text_pairs: bool) -> tuple[list[str], list[str] | None]:
    """(first sentences, second sentences or None); a usage error rather than a silently dropped input."""
    if pair and not text_pairs:
        p.exit(2, f"{p.prog}: error: this bundle's model takes single sentences; drop --pair\n")
    if text_pairs and not pair:
        p.exit(2, f"{p.prog}: error: this bundle's model takes sentence pairs; pass --pair FIRST SECOND [FIRST SECOND ...]\n")
    texts = [text if text.isascii() else _utf8(text) for text in texts]
    undecodable = [i for i, text in enumerate(texts, 1) if text is None]
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


def _utf8(text: str) -> str | None:
    """The text as UTF-8 can hold it, or None. Under an ASCII locale (LC_ALL=C) Python reads UTF-8 bytes of argv as
    escaped bytes: they are decoded back here."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(text).decode("utf-8")
    except (UnicodeError, ValueError):
        return None


def read_texts(p: argparse.ArgumentParser, source: str, pair: bool) -> list[str]:
    """--file: one text per line (FIRST<TAB>SECOND with --pair), flattened as argv gives them; '-' reads stdin."""
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not part of the first text
    except OSError as err:
        p.exit(2, f"{p.prog}: error: --file {source}: {err.strerror or err}; pass a readable file, or - for stdin\n")
    except UnicodeDecodeError as err:
        p.exit(2, f"{p.prog}: error: --file {source}: not UTF-8 text (byte offset {err.start}); save it as UTF-8\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    lines = lines[:-1] if lines and lines[-1] == "" else lines  # the newline that ends the last line
    if not pair:
        return lines
    cells = [line.split("\t") for line in lines]
    bad = next((i for i, c in enumerate(cells, 1) if len(c) != 2), None)
    if bad is not None:
        p.exit(2, f"{p.prog}: error: --file {source}: line {bad} is not FIRST<TAB>SECOND; with --pair each line holds "
                  "one pair, separated by one tab\n")
    return [t for c in cells for t in c]


def line(text: str, row: np.ndarray, encoding: Any, labels: list[str], raw: bool, pair: str | None = None) -> dict[str, Any]:
    from edgesmith_task import postprocess  # generated for this bundle's task, in this folder

    if raw:  # float32 -> Python float -> JSON is exact: parse back as float32 to get these bits
        # a tagger's rows: the text's own tokens (padding is on the right), not the padding its batch added
        out = {"text": text, "outputs": (row[: sum(encoding.attention_mask)] if row.ndim == 2 else row).tolist()}
    else:
        out = postprocess(text, row, encoding, labels)  # the task's: labels, entities or the embedding
    return out | ({"pair": pair} if pair is not None else {}) | ({"truncated": True} if encoding.overflowing else {})


def predict_lines(model: Predictor, first: list[str], second: list[str] | None, raw: bool) -> int:
    """Prints one JSON line per text, texts_per_call texts a call; returns how many were cut at the max length."""
    labels, cut = model.manifest.get("labels") or [], 0
    for texts, pairs, enc, out in model.calls(first, second):
        for j, (row, encoding) in enumerate(zip(out, enc)):
            print(json.dumps(line(texts[j], row, encoding, labels, raw, None if pairs is None else pairs[j])))
            cut += bool(encoding.overflowing)
    return cut


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="*", help="the texts (put -- before a text that starts with -)")
    p.add_argument("--file", help="read the texts from this file, one per line (- for stdin), instead of the arguments")
    p.add_argument("--pair", action="store_true",
                   help="texts are (first, second) pairs, interleaved; for sentence-pair bundles only")
    p.add_argument("--threads", type=THREADS, help="override only the thread count of manifest.json's session settings "
                                                   "(default: the count the benchmark measured with)")
    p.add_argument("--raw", action="store_true",
                   help="print the model's float32 outputs exactly instead of labels or rounded embeddings")
    a = p.parse_args()
    if bool(a.texts) == bool(a.file):
        p.error("pass the texts as arguments or with --file, one of the two")
    if hasattr(signal, "SIGPIPE"):  # `predict.py ... | head -1`: stop quietly, as other command-line tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    texts = read_texts(p, a.file, a.pair) if a.file else a.texts
    if not texts:
        p.error(f"--file {a.file} holds no texts")
    first, second = split(p, texts, a.pair, reporting(p, lambda: read_manifest()["inputs"]["text_pairs"]))
    model = reporting(p, lambda: Predictor(threads=a.threads))
    cut = reporting(p, lambda: predict_lines(model, first, second, a.raw))
    if cut:
        print(f"note: {cut} of {len(first)} texts were longer than the bundle's {model.manifest['inputs']['max_length']} "
              "tokens and were cut there, as in its measured accuracy (\"truncated\": true in their lines)", file=sys.stderr)


def reporting(p: argparse.ArgumentParser, work: Any) -> Any:
    """work(), with what a broken bundle or a missing package raises as one line on stderr and exit status 1."""
    try:
        return work()
    except BundleError as err:
        p.exit(1, f"{p.prog}: error: {err}\n")
    except ImportError as err:
        package = (err.name or "").split(".")[0]
        if package not in PACKAGES:  # one of the bundle's own modules (checked above) or a library's dependency
            p.exit(1, f"{p.prog}: error: {ascii(err.name)} did not import ({_first_line(err)}); re-copy the bundle, or "
                      "reinstall the runtime\n")
        how = "this bundle needs the Python package" if isinstance(err, ModuleNotFoundError) else "could not load the Python package"
        p.exit(1, f"{p.prog}: error: {how} {package!r}: pip install {package}\n")
    except OSError as err:  # the output (a full disk, a closed file) or a file of the bundle
        p.exit(1, f"{p.prog}: error: {err.strerror or _first_line(err)}{f' ({err.filename})' if err.filename else ''}\n")
    except Exception as err:  # the runtime's or the tokenizer's own error on a file of the bundle: no traceback
        p.exit(1, f"{p.prog}: error: the bundle did not run ({type(err).__name__}: {_first_line(err)}); "
                  "re-copy the bundle, or check it with `edgesmith verify`\n")


if __name__ == "__main__":
    main()
