"""Reading task data: a folder (train + dev/validation), one file (split off a held-out share), a `datasets`
name, or 'pydoc' (English sentences from Python's bundled documentation, for the offline quickstart).

Rows come out as {"text": [one or two strings], "label": int | None}.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path
from typing import Any

from .errors import EdgesmithError, require

SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")
EVAL_NAMES = ("dev", "validation", "valid", "test")
ID_COLUMNS = {"idx", "id", "guid", "index"}


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a TSV/CSV (with a header) or JSON Lines file."""
    try:
        if path.suffix in (".jsonl", ".json"):
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        delim = "\t" if path.suffix == ".tsv" else ","
        with path.open(newline="") as f:
            return list(csv.DictReader(f, delimiter=delim, quoting=csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise EdgesmithError(f"{path}: unreadable ({type(err).__name__}: {err}); check the file format") from None


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for suffix in SUFFIXES:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def load_splits(source: str, eval_fraction: float, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Raw train/eval rows from any supported source."""
    if source == "pydoc":
        return _split(pydoc_sentences(), eval_fraction, seed)
    path = Path(source)
    if path.is_dir():
        train, dev = _find(path, ("train",)), _find(path, EVAL_NAMES)
        require(train is not None, f"{path} has no train file (train.tsv/.csv/.jsonl); add one or pass a single file")
        if dev is None:
            return _split(read_table(train), eval_fraction, seed)
        return {"train": read_table(train), "eval": read_table(dev)}
    if path.suffix in SUFFIXES:
        require(path.is_file(), f"data file {path} not found; pass --data with an existing file or folder")
        return _split(read_table(path), eval_fraction, seed)
    return _from_datasets(source)


def _split(rows: list[dict[str, Any]], fraction: float, seed: int) -> dict[str, list[dict[str, Any]]]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    n_eval = max(1, int(len(rows) * fraction))
    return {"train": rows[n_eval:], "eval": rows[:n_eval]}


def _from_datasets(name: str) -> dict[str, list[dict[str, Any]]]:
    """'glue/sst2' -> load_dataset('glue', 'sst2'); needs a network or a local datasets cache."""
    try:
        import datasets
    except ImportError:
        raise EdgesmithError(f"data {name!r} is not a file or folder, and `datasets` is not installed") from None
    try:
        ds = datasets.load_dataset(*name.split("/", 1))
    except Exception as err:  # datasets raises many types (network, missing config); all mean "cannot load"
        raise EdgesmithError(f"data {name!r}: not a local file/folder and `datasets` cannot load it ({type(err).__name__}); pass a local path") from None
    eval_split = next((s for s in EVAL_NAMES if s in ds), None)
    require("train" in ds and eval_split is not None, f"dataset {name!r} needs train and validation splits")
    return {"train": list(ds["train"]), "eval": list(ds[eval_split])}


def normalize(rows: list[dict[str, Any]], text_columns: tuple[str, ...] | None, label_column: str, where: str) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Pick text columns (1 or 2) and the label; rows with empty text are dropped."""
    require(len(rows) > 0, f"{where}: no rows; check the file is not empty")
    columns = text_columns or tuple(
        c for c, v in rows[0].items() if c != label_column and c not in ID_COLUMNS and isinstance(v, str) and not _is_number(v)
    )[:2]
    missing = [c for c in columns if c not in rows[0]]
    require(not missing and len(columns) > 0, f"{where}: text column(s) {missing or '(none found)'} missing; set data.text_columns")
    out = []
    for r in rows:
        texts = [str(r[c] or "").strip() for c in columns]
        if all(texts):
            out.append({"text": texts, "label": r.get(label_column)})
    require(len(out) > 0, f"{where}: every row has empty text; check the text columns {list(columns)}")
    return out, columns


def _is_number(v: str) -> bool:
    return bool(re.fullmatch(r"-?\d+(\.\d+)?", v.strip()))


def encode_labels(rows: list[dict[str, Any]], names: list[str] | None, where: str) -> list[str]:
    """Map labels to ids in place; returns label names. Integer labels are kept as ids."""
    require(all(r["label"] not in (None, "") for r in rows), f"{where}: label column missing or empty; set data.label_column")
    raw = [str(r["label"]).strip() for r in rows]
    if names is None:
        names = sorted(set(raw), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    lookup = {n: i for i, n in enumerate(names)} | {str(i): i for i in range(len(names))}
    unknown = sorted({s for s in raw if s not in lookup})
    require(not unknown, f"{where}: labels {unknown[:5]} not among the model's labels {names}; fix the data or the model")
    for r, s in zip(rows, raw):
        r["label"] = lookup[s]
    return names


def pydoc_sentences(min_words: int = 6, max_words: int = 40) -> list[dict[str, Any]]:
    """English prose from Python's own documentation, offline: the pydoc_data topics (the language reference)
    and the docstrings of the standard library's modules, classes and functions (read with `ast`, not imported).
    Code blocks, doctests and lines that look like code are left out."""
    from pydoc_data.topics import topics

    texts = list(topics.values()) + _stdlib_docstrings()
    sentences: set[str] = set()
    for text in texts:
        for para in re.split(r"\n\s*\n", text):
            if para.startswith((" ", "\t", ">>>")):
                continue
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(para.split())):
                if min_words <= len(s.split()) <= max_words and s[0].isupper() and s[-1] in ".!?" and not CODE_LIKE.search(s):
                    sentences.add(s)
    return [{"text": s, "label": None} for s in sorted(sentences)]


CODE_LIKE = re.compile(r"[{}=<>*]|::|\w\(")
SKIP_DIRS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "site-packages", "ensurepip", "pydoc_data"}


def _stdlib_docstrings() -> list[str]:
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        if SKIP_DIRS & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue  # a few stdlib files are templates or other encodings: not prose we need
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docs.append(ast.get_docstring(node) or "")
    return docs
