"""Reading task data: a folder (train + dev/validation), one file (split off a held-out share), a `datasets`
name, or 'pydoc' (English sentences from Python's bundled documentation, for the offline quickstart); the held-out
rows may come from a second file or folder (data.eval_source), and in-domain text for distillation alone from a third
(data.unlabeled).

Rows come out as {"text": [one or two strings], "label": str | None}, plus "score" (a float) for the sentence pairs
of an embedding task that carry a gold similarity (STS): labels stay as the data writes them. Which
class id a label is depends on the teacher (its trained head's label names decide), so the teacher stage maps
them, with `labels.label_ids`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DataConfig
from .errors import EdgesmithError, require
from .labels import is_number

SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")
EVAL_NAMES = ("dev", "validation", "valid", "test")
ID_COLUMNS = {"idx", "id", "guid", "index"}
LABEL_NAMES = "label_names"  # load_splits' entry for the class names a `datasets` source declares, by column
MIN_EVAL_ROWS = 2
JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false", type(None): "null"}


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a TSV/CSV (with a header) or JSON Lines file, UTF-8; a malformed line is named by its number."""
    text = _read_text(path)
    return _json_lines(path, text) if path.suffix in (".jsonl", ".json") else _delimited(path, text)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports start with a byte-order mark
    except UnicodeDecodeError as err:
        raise EdgesmithError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                             "save the file as UTF-8") from None
    except OSError as err:
        raise EdgesmithError(f"{path}: unreadable ({err.strerror}); check the path and its permissions") from None


def _json_lines(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=lambda pairs, where=f"{path}: line {number}": _one_of_each(pairs, where))
        except json.JSONDecodeError as err:
            raise EdgesmithError(f"{path}: line {number} is not valid JSON ({err.msg} at column {err.colno}); "
                                 "fix that line") from None
        require(isinstance(row, dict), f"{path}: line {number} is {JSON_TYPES.get(type(row), 'not an object')}, not an object; "
                'write one object per line, like {"text": "...", "label": "..."}')
        require(_encodable(row), f"{path}: line {number} holds a lone surrogate escape (like \\ud800), which is no "
                "character; fix that line's text")
        rows.append(row)
    return rows


def _lines(text: str) -> list[str]:
    """A text file's lines, ended by \\n, \\r\\n or a lone \\r (old Mac files). Not str.splitlines(): it also breaks at
    U+2028, U+0085 and others, which a JSON string or a sentence may hold raw (JSON forbids a raw \\r in a string)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _encodable(row: dict[str, Any]) -> bool:
    """Whether a JSON row's strings are text: an escaped lone surrogate (\\ud800) parses, then fails every UTF-8 write."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _one_of_each(pairs: list[tuple[str, Any]], where: str) -> dict[str, Any]:
    """A row's fields as a dict, refusing a name given twice: the last one would silently win (the labels read from
    `label, sentence, label`'s third column, the text from `sentence, sentence`'s second)."""
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    require(not twice, f"{where} names the column {', '.join(map(repr, twice))} twice; rename or remove one of them")
    return dict(pairs)


def _delimited(path: Path, text: str) -> list[dict[str, Any]]:
    """Rows of a TSV (no quoting: GLUE files have bare quotes in the text) or CSV; every row as wide as the header."""
    tsv = path.suffix == ".tsv"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",",
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    fix = "a tab inside a text splits it: remove it" if tsv else "quote a field that contains a comma"
    try:
        header = next(reader, [])
        _one_of_each([(name, None) for name in header], f"{path}: the header")
        rows = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # blank line
            require(len(fields) == len(header), f"{path}: line {reader.line_num} has {len(fields)} fields but the header "
                    f"has {len(header)}; {fix}, or fill in the missing field")
            rows.append(dict(zip(header, fields)))
    except csv.Error as err:
        raise EdgesmithError(f"{path}: line {reader.line_num}: {err}; fix the quoting on that line") from None
    return rows


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for suffix in SUFFIXES:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def source_files(source: str) -> list[Path]:
    """The local files `load_splits` reads for `source`: a folder's train and dev files (nothing else in it, a run
    folder put there included), a file itself; none for pydoc or a `datasets` name."""
    path = Path(source)
    if path.is_dir():
        return [f for f in (_find(path, ("train",)), _find(path, EVAL_NAMES)) if f is not None]
    return [path] if path.is_file() else []


def load_splits(source: str, eval_fraction: float, seed: int = 0,
                eval_source: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Raw train/eval rows from any supported source. With `eval_source` the held-out rows come from there (a file
    or a folder's dev file), so every row of `source` trains: distil on one corpus, score on another (STS)."""
    if eval_source is not None:
        (train, train_names), (evals, eval_names) = _whole(source, "train", "data.source"), _whole(eval_source, "eval", "data.eval_source")
        return {"train": train, "eval": evals, LABEL_NAMES: train_names | eval_names}
    if source == "pydoc":
        return _split(pydoc_sentences(), eval_fraction, seed, source)
    path = Path(source)
    if path.is_dir():
        train, dev = _find(path, ("train",)), _find(path, EVAL_NAMES)
        require(train is not None, f"{path} has no train file (train.tsv/.csv/.jsonl); add one or pass a single file")
        if dev is None:
            return _split(read_table(train), eval_fraction, seed, str(train))
        return {"train": read_table(train), "eval": read_table(dev)}
    if path.suffix in SUFFIXES:
        require(path.is_file(), f"data file {path} not found; pass --data with an existing file or folder")
        return _split(read_table(path), eval_fraction, seed, str(path))
    return _from_datasets(source)


def _whole(source: str, split: str, key: str) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Every row of one split of `source`, none held out: a folder's train (or dev) file, a file, pydoc or a
    `datasets` split; with the class names a `datasets` source declares for its label columns (`LABEL_NAMES`)."""
    if source == "pydoc":
        return pydoc_sentences(), {}
    path = Path(source)
    if path.is_dir():
        names = ("train",) if split == "train" else EVAL_NAMES
        found = _find(path, names)
        require(found is not None, f"{key} {path} has no {'/'.join(names)} file (.tsv/.csv/.jsonl); add one or name a file")
        return read_table(found), {}
    if path.suffix in SUFFIXES:
        require(path.is_file(), f"{key} {path} not found; name an existing file or folder")
        return read_table(path), {}
    ds = _from_datasets(source)
    return ds[split], ds[LABEL_NAMES]


def _split(rows: list[dict[str, Any]], fraction: float, seed: int, where: str) -> dict[str, list[dict[str, Any]]]:
    require(len(rows) > 0, f"{where}: no rows; check the file is not empty")
    n_eval = max(1, int(len(rows) * fraction))
    require(n_eval >= MIN_EVAL_ROWS and n_eval < len(rows),
            f"{where}: {len(rows)} data row{'s' * (len(rows) > 1)}, too few for a held-out split (data.eval_fraction "
            f"{fraction} holds out {n_eval}; at least {MIN_EVAL_ROWS} must be held out and 1 left to train on); add rows, "
            "raise data.eval_fraction, or pass a folder with train and dev files")
    rows = list(rows)
    random.Random(seed).shuffle(rows)
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
    return {"train": _tag_names(ds["train"]), "eval": _tag_names(ds[eval_split]), LABEL_NAMES: _class_names(ds["train"])}


def _class_names(split: Any) -> dict[str, list[str]]:
    """The class names, in id order, of each sentence-level ClassLabel column (GLUE MNLI's label: entailment, neutral,
    contradiction): a trained head whose names are these in another order is matched by name (`label_ids`)."""
    return {c: list(f.names) for c, f in split.features.items() if type(f).__name__ == "ClassLabel"}


def _tag_names(split: Any) -> list[dict[str, Any]]:
    """Rows of a `datasets` split; per-word class numbers (a sequence of ClassLabel, as conll2003's ner_tags) become
    their names, so that token tags read as they do from a local file. Sentence-level labels stay as they are: a
    trained head's own ids decide what they mean (see `label_ids`)."""
    named = {c: f.feature for c, f in split.features.items() if type(getattr(f, "feature", None)).__name__ == "ClassLabel"}
    rows = list(split)
    for r in rows:
        for column, labels in named.items():
            r[column] = [labels.int2str(int(t)) for t in r[column]]
    return rows


def normalize(rows: list[dict[str, Any]], text_columns: tuple[str, ...] | None, label_column: str, where: str,
              score_column: str | None = None) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Pick text columns (1 or 2) and the label (a stripped string, None when empty); rows with empty text are dropped.
    `score_column` (embedding task): when the rows have it and two texts, each keeps its gold similarity as "score"."""
    require(len(rows) > 0, f"{where}: no rows; check the file is not empty")
    skip = {label_column, score_column} | ID_COLUMNS
    found = tuple(c for c, v in rows[0].items() if c not in skip and isinstance(v, str) and not is_number(v))
    # More than two would be a guess: `genre, premise, hypothesis` had scored genre + premise as the pair
    require(text_columns is not None or len(found) <= 2, f"{where}: {len(found)} columns could hold the text "
            f"{list(found)}; set data.text_columns to the one or two that do")
    columns = text_columns or found
    missing = [c for c in columns if c not in rows[0]]
    require(not missing and len(columns) > 0, f"{where}: text column(s) {missing or '(none found)'} missing; set data.text_columns")
    scored = len(columns) == 2 and score_column in rows[0]
    out = []
    for number, r in enumerate(rows, 1):
        texts = [str(r.get(c) or "").strip() for c in columns]
        if all(texts):
            out.append({"text": texts, "label": _label(r.get(label_column), where)})
            if scored:
                out[-1]["score"] = _score(r.get(score_column), score_column, number, where)
    require(len(out) > 0, f"{where}: every row has empty text; check the text columns {list(columns)}")
    return out, columns


def _label(value: Any, where: str) -> str | None:
    require(value is None or isinstance(value, (str, int, float)),
            f"{where}: label {value!r} is not a string or a number; write one label per row")
    # JSON true would read as "True", a class apart from 1 in the same column: a 2-class task shipped as 4
    require(not isinstance(value, bool), f"{where}: label {value!r} is a JSON boolean; write it as text (\"true\") or "
            "as a class id (1), the same way in every row")
    # JSON's NaN and Infinity (json.dumps writes a pandas blank so) would have become a class "nan" of its own
    require(not (isinstance(value, float) and not math.isfinite(value)), f"{where}: label {value!r} is not a class "
            "(JSON NaN or Infinity, often a missing value); write the row's label, or leave the row out")
    text = "" if value is None else str(value).strip()
    return text or None


def _score(value: Any, column: str, number: int, where: str) -> float:
    """A pair's gold similarity as a float; text, blanks, NaN and infinities stop here, naming the row."""
    try:
        score = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        score = math.nan
    require(math.isfinite(score), f"{where}: data row {number}, column {column!r}: {value!r} is not a number; write the pair's "
            "gold similarity as a number (e.g. 3.8), or set data.score_column to the column that holds it")
    return score


@dataclass(frozen=True)
class TaskData:
    train: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    columns: tuple[str, ...]
    labels: list[str]  # classification: the distinct labels of all rows, sorted (`sort_labels`)
    train_labelled: bool
    eval_scored: bool  # embedding task: held-out rows are sentence pairs with gold similarity scores (STS)
    unlabeled: list[dict[str, Any]]  # data.unlabeled: distillation only, label None
    declared_labels: list[str] | None = None  # a `datasets` source's class names, in the order of its ids
    unlabeled_held_out: int = 0  # data.unlabeled rows left out for holding a held-out text (`without_held_out`)


def read_task_data(d: DataConfig, task: str) -> TaskData:
    """Train and held-out rows, read by the task (edgesmith.tasks), capped at data.max_*_samples; for labelled
    tasks, the labels of every row read (before the caps: a capped held-out set may miss a class). Training rows may
    all lack labels (distillation needs none), but not some of them. The unlabeled rows (data.unlabeled) have the training rows'
    text columns and are capped like them."""
    from .tasks import get

    kind = get(task)
    raw = load_splits(d.source, d.eval_fraction, eval_source=d.eval_source)
    held_out = d.eval_source or d.source
    train, columns = kind.normalize(raw["train"], d.text_columns, d.label_column, d.score_column, f"{d.source} (train)")
    evals, eval_columns = kind.normalize(raw["eval"], _eval_columns(d, raw["eval"], columns), d.label_column,
                                         d.score_column, f"{held_out} (eval)")
    require(not kind.labelled or len(eval_columns) == len(columns), f"{held_out} (eval): its text columns "
            f"{list(eval_columns)} are not as many as the training data's {list(columns)}; set data.text_columns")
    labels, labelled = kind.check_labels(train, evals, d.label_column, d.source)
    if kind.reads_scores:
        _check_score_column(d, raw["eval"][0], eval_columns, held_out)
    evals = evals[: d.max_eval_samples]
    scores = {r["score"] for r in evals if "score" in r}  # Spearman of constant gold scores is undefined (NaN)
    require(len(scores) != 1, f"{held_out}: all {len(evals)} held-out pairs have the score {min(scores, default=0):g}; "
            "Spearman needs gold scores that vary: check data.score_column, or raise data.max_eval_samples")
    require(len(evals) >= MIN_EVAL_ROWS, f"{held_out}: {len(evals)} held-out row(s), fewer than {MIN_EVAL_ROWS}; add data "
            "or raise data.eval_fraction or data.max_eval_samples")
    train = [r if labelled else dict(r, label=None) for r in long_enough(train, d.min_words, d.source)[: d.max_train_samples]]
    unlabeled = read_unlabeled(d.unlabeled, columns, task) if d.unlabeled else []
    unlabeled, leaked = without_held_out(long_enough(unlabeled, d.min_words, f"data.unlabeled {d.unlabeled}"), evals)
    return TaskData(train, evals, columns, labels, labelled, "score" in evals[0], unlabeled[: d.max_train_samples],
                    raw.get(LABEL_NAMES, {}).get(d.label_column), leaked)


def same_text(text: str) -> str:
    """A text as a tokenizer would see it for matching (uncased models fold case, every model splits at whitespace)."""
    return " ".join(text.split()).casefold()


def held_out_texts(evals: list[dict[str, Any]]) -> set[str]:
    """Every text of the held-out rows, one by one (a scored pair's two sentences each)."""
    return {same_text(t) for r in evals for t in r["text"]}


def split_held_out(rows: list[dict[str, Any]], evals: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the rows none of whose texts is a held-out text, the rows holding one), each in the rows' order."""
    seen = held_out_texts(evals)
    holds = [any(same_text(t) in seen for t in r["text"]) for r in rows]
    return [r for r, h in zip(rows, holds) if not h], [r for r, h in zip(rows, holds) if h]


def without_held_out(rows: list[dict[str, Any]], evals: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(the rows none of whose texts is a held-out text, how many were left out). Unlabeled text is distilled on, and
    augmented: a held-out sentence in it (the eval file given again as data.unlabeled, or a source holding both)
    would be scored after the student learned the teacher's answer on it."""
    kept, left_out = split_held_out(rows, evals)
    return kept, len(left_out)


def _check_score_column(d: DataConfig, first: dict[str, Any], columns: tuple[str, ...], where: str) -> None:
    """Scores that would silently be left out, turning the metric from Spearman into fidelity to the teacher: a
    data.score_column the held-out rows lack, or scores beside a single text column."""
    named = d.score_column != DataConfig.model_fields["score_column"].default
    require(not named or d.score_column in first, f"{where}: no column {d.score_column!r} (data.score_column); its "
            f"columns are {list(first)}: set data.score_column to the one with the gold scores")
    require(d.score_column not in first or len(columns) == 2, f"{where}: the {d.score_column!r} column scores sentence "
            f"pairs, but the rows have one text column {list(columns)}; set data.text_columns to the pair's two columns")
    numeric = [c for c, v in first.items() if c not in {*columns, d.label_column, *ID_COLUMNS} and _numeric(v)]
    require(d.score_column in first or len(columns) != 2 or not numeric, f"{where}: the pairs have a numeric column "
            f"{numeric[0] if numeric else ''!r} but no {d.score_column!r} column: set data.score_column: "
            f"{numeric[0] if numeric else ''} to score by Spearman, or leave the column out to score fidelity to the teacher")


def _numeric(value: Any) -> bool:
    """A value that reads as a finite number (gold scores are written ".5", 3.8 or "4")."""
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _eval_columns(d: DataConfig, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> tuple[str, ...] | None:
    """The held-out rows' text columns: the training data's when both come from `source`; with `eval_source`,
    data.text_columns when that file has them all, else found in it the way they are found in a training file
    (by its own names: STS pairs, sentence1 and sentence2, beside single training sentences)."""
    if not d.eval_source:
        return columns
    if d.text_columns and rows and all(c in rows[0] for c in d.text_columns):
        return d.text_columns
    return None


def words(row: dict[str, Any]) -> int:
    """Whitespace-separated words in all of a row's texts."""
    return sum(len(text.split()) for text in row["text"])


def long_enough(rows: list[dict[str, Any]], min_words: int | None, where: str) -> list[dict[str, Any]]:
    """The rows of at least `min_words` words (data.min_words), in their order; all of them when it is unset."""
    if min_words is None or not rows:
        return rows
    kept = [r for r in rows if words(r) >= min_words]
    require(len(kept) > 0, f"{where}: no row has {min_words} words or more (the longest has {max(map(words, rows))}); "
            "lower data.min_words or remove it")
    return kept


UNLABELED_SUFFIXES = (".txt", *SUFFIXES)


def read_unlabeled(source: str, columns: tuple[str, ...], task: str) -> list[dict[str, Any]]:
    """In-domain text for distillation only, as rows with label None: a .txt file holds one text per line (single-text
    tasks), a TSV/CSV/JSONL file the training data's text `columns` (any label in it is ignored)."""
    path, where = Path(source), f"data.unlabeled {source}"
    require(path.suffix in UNLABELED_SUFFIXES, f"{where}: not a {'/'.join(UNLABELED_SUFFIXES)} file; give one text per "
            "line in a .txt file, or a table with the training data's text columns")
    require(path.is_file(), f"{where} not found; name an existing {'/'.join(UNLABELED_SUFFIXES)} file or remove data.unlabeled")
    if path.suffix == ".txt":
        require(len(columns) == 1, f"{where}: a .txt file holds single texts, one per line, but the task's rows are "
                f"pairs ({', '.join(columns)}); give a TSV/CSV/JSONL file with those two columns")
        lines = [line.strip() for line in _lines(_read_text(path))]
        rows = [{"text": [line], "label": None} for line in lines if line]
        require(len(rows) > 0, f"{where}: no text; write one in-domain text per line, or remove data.unlabeled")
        return rows
    table = read_table(path)
    require(len(table) > 0, f"{where}: no rows; add in-domain text, or remove data.unlabeled")
    missing = [c for c in columns if c not in table[0]]
    require(not missing, f"{where}: no column {', '.join(map(repr, missing))} (the training data's text columns are "
            f"{list(columns)}, it has {list(table[0])}); rename its columns to match")
    from .tasks import get

    rows, _ = get(task).normalize(table, columns, "", "", where)
    return [dict(r, label=None) for r in rows]  # these rows teach through the teacher alone


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
