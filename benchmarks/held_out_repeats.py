"""How many training rows of a dataset repeat a held-out text, counted as the report counts them
(`edgesmith.stages.notes.data_notes`: every text of a row, case and spacing aside), with the most repeated ones.
docs/reliability.md quotes it for CoNLL-2003. Reads the data through edgesmith's own loader.

    .venv/bin/python benchmarks/held_out_repeats.py [SOURCE] [TASK]   # default: ../shared/data/conll2003 token-classification
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from edgesmith.config import DataConfig
from edgesmith.data import held_out_texts, read_task_data, same_text

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"


def repeats(source: str, task: str) -> tuple[list[str], int]:
    """(the first text of every training row that repeats a held-out text, the number of training rows)."""
    data = read_task_data(DataConfig(source=source), task)
    seen = held_out_texts(data.evals)
    return [r["text"][0] for r in data.train if any(same_text(t) in seen for t in r["text"])], len(data.train)


if __name__ == "__main__":
    args = sys.argv[1:]
    source, task = args[0] if args else str(SOURCE), args[1] if len(args) > 1 else "token-classification"
    found, total = repeats(source, task)
    print(f"{source}: {len(found)} of {total} training rows repeat a held-out text (measured)")
    for text, n in collections.Counter(found).most_common(8):
        print(f"  {n:3d}  {text[:70]}")
