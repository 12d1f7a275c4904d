"""The task table: every task edgesmith runs, by the name recipes use (`task:`). Adding a task is one module with a
`Task` subclass, one line here, and a fixture in tests/test_tasks.py."""

from __future__ import annotations

from ..errors import EdgesmithError
from .base import Task
from .classification import Classification
from .embedding import Embedding
from .token_classification import TokenClassification

TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Embedding(), TokenClassification())}


def get(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise EdgesmithError(f"unknown task {name!r}; use one of {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Task", "get"]
