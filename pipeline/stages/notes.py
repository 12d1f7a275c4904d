"""The report's notes on the teacher, the labels and the data: what each leaves a model unable to learn or to be
scored on fairly, in words (none of them is an error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Task
from ..data import split_held_out
from ..tasks import get as get_task
from .common import read_rows

LEARNED_LITTLE = 5.0  # points above the majority-class rate under which a classifier has learned little


def against_majority(teacher: dict[str, Any]) -> dict[str, Any]:
    """Classification: the teacher's accuracy on the eval split against always answering its most common label
    (`majority_rate`, points), and one sentence saying plainly when the teacher has learned little."""
    rate, acc = teacher.get("majority_rate"), teacher["quality"].get("metric")
    if rate is None or acc is None:
        return {}
    margin = acc - rate
    note = f"The teacher scores {acc:.2f} accuracy against a majority-class rate of {rate:.2f} ({margin:+.2f} points)"
    if margin < LEARNED_LITTLE:
        note += (f": the teacher has learned little (within {LEARNED_LITTLE:g} points of always answering the most common "
                 "label); check the labels, or bring a fine-tuned teacher or more data")
    return {"majority_rate": rate, "teacher_vs_majority": note + "."}


def data_notes(data: Any) -> list[str]:
    """Held-out text met elsewhere in the data, in words: unlabeled rows left out for it (data stage), and training
    rows that repeat it (kept: the splits are the user's, but the held-out score is then partly of seen text)."""
    notes = []
    if data.facts.get("unlabeled_held_out"):
        notes.append(f"{data.facts['unlabeled_held_out']} row(s) of data.unlabeled hold a held-out text and were left out "
                     "of distillation, so that no student is scored on text it was taught.")
    train = read_rows(data.path / "train.jsonl")
    repeats = split_held_out(train, read_rows(data.path / "eval.jsonl"))[1]  # the data stage's rule, for kept rows
    if repeats:
        notes.append(f"{len(repeats)} of {len(train)} training rows repeat a held-out text (e.g. {repeats[0]['text'][0][:60]!r}): "
                     "the students distil on them (and a new head is fine-tuned on them), so the held-out scores are "
                     "somewhat optimistic; remove them from the training data if that matters.")
    return notes


def label_notes(task: Task, data: Path, teacher: dict[str, Any]) -> list[str]:
    """What the labels leave a model unable to learn or be scored on, in words (neither is an error: a capped or
    small training split can lack a rare class, and a tagger can be scored on text without one entity type)."""
    kind = get_task(task)
    if not kind.labelled:
        return []
    names, used = teacher["label_names"], set(teacher["label_ids"].values())
    unused = [name for i, name in enumerate(names) if i not in used]
    if teacher["head_trained"]:
        return [f"The teacher's head has classes that no row of the data holds: {_listed(unused)}. The bundle can still "
                "answer them, and every such answer counts as an error."] if unused else []
    seen = {name for row in read_rows(data / "train.jsonl") for name in kind.label_names_of(row["label"])}
    if not seen:  # unlabelled training rows: a trained head was required, so only a bug reaches here
        return []
    held_out_only = sorted({name for row in read_rows(data / "eval.jsonl") for name in kind.label_names_of(row["label"])} - seen)
    return [f"Held-out labels that no training row holds: {_listed(held_out_only)}. The teacher's new head had no "
            "example of them, so its quality and every student's count them as misses; add training rows with them, "
            "or check them for typos."] if held_out_only else []


def _listed(names: list[str], most: int = 10) -> str:
    return ", ".join(map(repr, names[:most])) + (f" and {len(names) - most} more" if len(names) > most else "")
