"""Labels as classes: which distinct labels a task's data has, in the order a new head numbers them, refusing one
label written two ways; and which class id each label is, decided by a trained head's label names (never silently
remapped). Rows come from `data` with their labels as the data writes them."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from .errors import EdgesmithError, require


def is_number(v: str) -> bool:
    return bool(re.fullmatch(r"-?\d+(\.\d+)?", v.strip()))


def check_labels(train: list[dict[str, Any]], evals: list[dict[str, Any]], column: str, where: str) -> tuple[list[str], bool]:
    """(the sorted distinct labels of all labelled rows, whether the training rows are labelled)."""
    _require_labels(evals, column, f"{where} (eval)")
    train_labelled = any(r["label"] is not None for r in train)
    if train_labelled:
        _require_labels(train, column, f"{where} (train)")
    labels = sort_labels(r["label"] for r in evals + (train if train_labelled else []))
    fractions = [label for label in labels if is_number(label) and not float(label).is_integer()]
    require(not fractions, f"{where}: the label column {column!r} holds fractional numbers ({', '.join(fractions[:3])}"
            f"{', ...' if len(fractions) > 3 else ''}; {len(labels)} distinct values): those are scores, not classes. "
            "For sentence-pair similarity use task: embedding with data.score_column; for classes, write class names or ids")
    require(len(labels) >= 2, f"{where}: every row has the label {labels[0]!r}; classification needs at least two classes")
    return labels, train_labelled


def _require_labels(rows: list[dict[str, Any]], column: str, where: str) -> None:
    unlabelled = [r for r in rows if r["label"] is None]
    require(len(unlabelled) < len(rows), f"{where}: no values in the label column {column!r}; set data.label_column")
    if unlabelled:
        raise EdgesmithError(f"{where}: {len(unlabelled)} of {len(rows)} rows have no label (one is "
                             f"{unlabelled[0]['text'][0][:40]!r}); fill them in or remove those rows")


def sort_labels(values: Iterable[str]) -> list[str]:
    """Distinct labels in the order a new head numbers them: numerically when all are numbers (-1, 1; 1, 2, 10),
    else alphabetically."""
    distinct = set(values)
    _one_spelling_each(distinct)
    return sorted(distinct, key=lambda v: (float(v), v)) if all(is_number(v) for v in distinct) else sorted(distinct)


def _one_spelling_each(labels: set[str]) -> None:
    """Refuse one label written two ways, each of which would become a class of its own: one number ("1" and "1.0",
    "01" and "1"; pandas writes 1.0 once a column has held a blank, so a file edited in two tools can mix them), or
    one text differing only in case, in how an accent is encoded (NFC "é" and NFD "e" + U+0301 look the same) or in
    invisible characters (a zero-width space)."""
    by_value: dict[float, list[str]] = {}
    for label in labels:
        if is_number(label):
            by_value.setdefault(float(label), []).append(label)
    same = next((sorted(by_value[k]) for k in sorted(by_value) if len(by_value[k]) > 1), None)
    require(same is None, f"the labels {' and '.join(map(repr, same or []))} are one number written two ways, so they "
            "would be two classes; write each label the same way in every row and file")
    by_text: dict[str, list[str]] = {}
    for label in labels:
        by_text.setdefault(_label_key(label), []).append(label)
    same = next((sorted(v) for k, v in sorted(by_text.items()) if len(v) > 1), None)
    require(same is None, f"the labels {' and '.join(map(ascii, same or []))} differ only in case, accent encoding or "
            "invisible characters, so they would be two classes; write each label the same way in every row and file")


def _label_key(label: str) -> str:
    """A label as a reader sees it: NFKC-normalised, without format characters (zero-width), case-folded."""
    text = unicodedata.normalize("NFKC", label)
    return "".join(c for c in text if unicodedata.category(c) != "Cf").casefold()


def label_ids(labels: list[str], head: list[str] | None, declared: list[str] | None = None) -> dict[str, int]:
    """The class id of each data label. `head`: a trained head's label names in id order, which decide (a data
    label they lack is an error; data naming only some of them keeps the whole head, a CoNLL tagger scored on text
    without MISC entities); None for a new head, numbered in `labels` order. `declared`: the class names a
    `datasets` source gives its ids (`labels` are then those ids): when they are the head's names, in any order and
    any case, each id goes to the head's class of its name (GLUE MNLI's 0 is entailment, roberta-large-mnli's 0 is
    CONTRADICTION)."""
    if head is None:
        return {label: i for i, label in enumerate(labels)}
    fix = "relabel the data, or set teacher.reinit_head: true to train a new head on the data's labels"
    by_name = {name: i for i, name in enumerate(head)}
    if set(labels) <= set(by_name):  # by name, exactly; head classes no row has stay, and the report names them
        twice = next((label for label in labels if head.count(label) > 1), None)
        require(twice is None, f"the model's classification head names two classes {twice!r} (ids "
                f"{[i for i, n in enumerate(head) if n == twice]}), so the data's {twice!r} cannot be matched by name; "
                "fix id2label in the model's config.json, or set teacher.reinit_head: true to train a new head")
        return {label: by_name[label] for label in labels}
    require(len(head) == len(labels), f"the model's classification head has {len(head)} labels {head} but the data "
            f"has {len(labels)} {labels}; {fix}")
    named = _by_declared_names(labels, head, declared)
    if named is not None:
        return named
    if _are_ids(labels, head):
        return {label: int(label) for label in labels}
    raise EdgesmithError(f"the data's labels {labels} are not the model's labels {head}; {fix}")


def _by_declared_names(labels: list[str], head: list[str], declared: list[str] | None) -> dict[str, int] | None:
    """Data ids -> the head's ids through the names the data declares for its ids, when those are the head's names."""
    folded = {name.casefold(): i for i, name in enumerate(head)}
    names = None if declared is None else [n.casefold() for n in declared]
    # One-to-one or nothing: declared names that differ only in case ("A", "a") would merge two classes.
    if names is None or len(folded) != len(head) or len(set(names)) != len(names) or set(names) != set(folded):
        return None
    if not all(label.isascii() and label.isdigit() and int(label) < len(declared) for label in labels):
        return None
    return {label: folded[names[int(label)]] for label in labels}


def _are_ids(labels: list[str], head: list[str]) -> bool:
    """Data labels 0..n-1 are class ids when no name of the head reads as a number (LABEL_0, or words such as
    'negative'): then they cannot mean names. Names like '1', '2' decide by name, never by position."""
    return labels == [str(i) for i in range(len(head))] and not any(is_number(n) for n in head)


def encode_labels(rows: list[dict[str, Any]], head: list[str] | None, where: str) -> list[str]:
    """Replace each row's label by its class id, in place (see `label_ids`); returns the label names in id order.
    With `head` None the ids number these rows' labels alone: give the head when splits are encoded one by one."""
    _require_labels(rows, "label", where)
    labels = sort_labels(r["label"] for r in rows)
    ids = label_ids(labels, head)
    for r in rows:
        r["label"] = ids[r["label"]]
    return head or labels
