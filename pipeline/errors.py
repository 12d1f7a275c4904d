"""The exceptions users see: bad input (a message that names the problem and the fix) and a stage that crashed."""

from __future__ import annotations

from pathlib import Path


class EdgesmithError(Exception):
    """Bad input or an impossible request. The CLI prints it as one line and exits with status 2."""


class StageFailed(Exception):
    """A stage crashed (an error that is not bad input). `log` holds everything the stage printed and the traceback;
    the CLI prints this one line and exits with status 1. The original error is its __cause__."""

    def __init__(self, folder: str, log: Path, error: BaseException) -> None:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        super().__init__(f"stage {folder} failed: {type(error).__name__}{': ' + first if first else ''}; "
                         f"its output and the traceback are in {log}")
        self.folder, self.log = folder, log


def require(condition: bool, message: str) -> None:
    """Raise EdgesmithError(message) unless condition holds (never `assert` on user input)."""
    if not condition:
        raise EdgesmithError(message)
