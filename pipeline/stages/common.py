"""Small helpers the stages share: JSON Lines rows and the inputs every model stage needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows as write_rows wrote them: one per "\n" (str.splitlines() also breaks at U+2028 and U+0085, which texts
    hold raw: a sentence with one had crashed the teacher stage)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def dir_size(folder: Path, pattern: str = "*") -> int:
    """Bytes of the files matching pattern under folder."""
    return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file())
