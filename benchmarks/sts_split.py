"""Split STS-B dev by position for the in-domain distillation experiment (docs/recovery.md, last section).

    python benchmarks/sts_split.py OUT [--seed N] [--stsb ../shared/data/stsb/dev.tsv]
    .venv/bin/edgesmith run OUT/minilm-sts-indomain.yaml --profile embedded --out runs/sts-indomain-sN

Writes, under OUT:
- `eval.tsv`: the even pairs (0, 2, 4, ...), the held-out set every run of the experiment is scored on;
- `indomain.tsv`: one column (`sentence`), the sentences of the odd pairs that occur in no even pair, each once,
  in file order: the distillation text. No held-out sentence is distilled on;
- `minilm-sts-indomain.yaml`: `recipes/minilm-sts.yaml` with `data.source` / `data.eval_source` pointing at those
  files, no `min_words` or `max_train_samples` (every in-domain sentence is used), 10 distillation epochs and
  `distill.seed` N (the docs' runs used 0, 1 and 2, one OUT each).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "minilm-sts.yaml"
EPOCHS = 10


def read_pairs(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, pairs = rows[0], rows[1:]
    if header[:2] != ["sentence1", "sentence2"]:
        raise SystemExit(f"{path}: expected the columns sentence1, sentence2, score; got {header}")
    return header, pairs


def split(pairs: list[list[str]]) -> tuple[list[list[str]], list[str]]:
    """(held-out even pairs, unique odd-pair sentences that appear in no even pair)."""
    held_out = pairs[0::2]
    seen = {s for pair in held_out for s in pair[:2]}
    text: list[str] = []
    for pair in pairs[1::2]:
        for sentence in pair[:2]:
            if sentence not in seen:
                seen.add(sentence)
                text.append(sentence)
    return held_out, text


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    # Written by hand: csv's writer wants to escape the quotes some sentences hold, and the pipeline reads them raw.
    path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]), encoding="utf-8")


def recipe(out: Path, seed: int) -> dict:
    data = yaml.safe_load(RECIPE.read_text())
    data["name"] = "minilm-sts-indomain"
    data["data"].update(source=str(out / "indomain.tsv"), eval_source=str(out / "eval.tsv"))
    for key in ("min_words", "max_train_samples"):
        data["data"].pop(key, None)
    data["distill"].update(epochs=EPOCHS, seed=seed)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="distill.seed of the written recipe")
    parser.add_argument("--stsb", type=Path, default=REPO.parent / "shared" / "data" / "stsb" / "dev.tsv")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    header, pairs = read_pairs(args.stsb)
    held_out, text = split(pairs)
    write_tsv(out / "eval.tsv", header, held_out)
    write_tsv(out / "indomain.tsv", ["sentence"], [[s] for s in text])
    note = f"# Made by benchmarks/sts_split.py from {RECIPE.name}: in-domain distillation text, held-out even pairs.\n"
    (out / "minilm-sts-indomain.yaml").write_text(note + yaml.safe_dump(recipe(out, args.seed), sort_keys=False))
    print(f"{len(held_out)} held-out pairs, {len(text)} distillation sentences -> {out}")


if __name__ == "__main__":
    main()
