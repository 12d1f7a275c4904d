"""How many CoNLL-2003 dev entities hold a word that BERT's pre-tokenizer splits at punctuation ("O'Gorman",
"P.", "Chester-le-Street"): entities whose words a grouping by the tokenizer's words would cut, while training and
entity F1 read whole words (README, "Load a bundle with Hugging Face tools"). Reads ../shared/data/conll2003/dev.jsonl.

    .venv/bin/python benchmarks/conll_inner_punctuation.py [DEV_JSONL]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tokenizers.pre_tokenizers import BertPreTokenizer

from edgesmith.tasks.token_classification import entities

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003" / "dev.jsonl"


def count(path: Path) -> tuple[int, int]:
    """(entities holding a word the pre-tokenizer splits, all entities) over the file's IOB2-tagged rows."""
    pre = BertPreTokenizer()
    split = total = 0
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for _, first, last in entities(row["ner_tags"]):
            total += 1
            split += any(len(pre.pre_tokenize_str(w)) > 1 for w in row["tokens"][first : last + 1])
    return split, total


if __name__ == "__main__":
    split, total = count(Path(sys.argv[1]) if len(sys.argv) > 1 else DEV)
    print(f"{split} of {total} entities ({split / total:.1%}) hold a word BERT's pre-tokenizer splits (measured)")
