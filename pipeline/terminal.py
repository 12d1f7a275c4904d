"""What a run shows on the terminal: one line per stage, a progress bar with an ETA while a stage reports its
progress (training steps, benchmark rows), and at the end the table of bundles against their budgets.

While a stage runs, everything the libraries print goes to the stage's log file, RUN/NN-stage/stage.log (left out
of the stage's file hashes, like its manifest: `artifacts.stage_files`): Python warnings and `logging`
(transformers, NNCF, ONNX Runtime's quantizer) through sys.stdout/sys.stderr, and C++ code (ONNX Runtime, OpenVINO)
and child processes through file descriptors 1 and 2, pointed at the log with os.dup2 and restored however the stage
ends. A stage that crashes keeps its log as RUN/NN-stage.failed.log, and the error names it. `-v` (the `Lines` view)
leaves all of it on the terminal, as edgesmith printed before.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from .errors import EdgesmithError, StageFailed

STAGE_LOG = "stage.log"
FAILED_LOG_SUFFIX = ".failed.log"  # RUN/NN-stage.failed.log: the log of a stage that crashed (its folder is not made)

_PROGRESS: ContextVar[Callable[[float, float], None] | None] = ContextVar("edgesmith_progress", default=None)


def progress(done: float, total: float) -> None:
    """Report how far the running stage is (`done` of `total` steps, rows, ...): the terminal draws a bar with an
    ETA. Does nothing when no view watches (a stage called directly, as tests do, or `-v`)."""
    report = _PROGRESS.get()
    if report is not None:
        report(done, total)


def watching() -> bool:
    """True while a stage runs under a view that shows progress: training then leaves its own tqdm bar off."""
    return _PROGRESS.get() is not None


class Lines:
    """Stage events as plain lines to a callable: `[NN-stage] running (why)`, `[NN-stage] skipped (...)`,
    `[NN-stage] done in S s`. Tests pass `list.append`; `-v` prints them and leaves library output on the terminal."""

    dry = False  # a dry run's view (dryrun.Planner): run_stage hands its decision to `planned` and runs nothing

    def __init__(self, emit: Callable[[str], None], closing: TextIO | None = None) -> None:
        self.emit = emit
        self._closing = closing  # a stream the view opened (a copy of fd 2): closed with the view

    def planned(self, stage_name: str, cfg: Any, inputs: dict[str, Any], out: Path, old: dict[str, Any] | None, why: str) -> Any:
        raise NotImplementedError("only a dry run's view plans")

    def __call__(self, line: str) -> None:
        self.emit(line)

    def skipped(self, folder: str) -> None:
        self(f"[{folder}] skipped (config, inputs, stage version and files unchanged)")

    @contextlib.contextmanager
    def running(self, folder: Path, why: str, work: Path) -> Iterator[None]:
        """Around a stage that builds `folder` in its temporary folder `work`."""
        self(f"[{folder.name}] running ({why})")
        yield

    def done(self, folder: str, seconds: float) -> None:
        self(f"[{folder}] done in {seconds} s")

    def __enter__(self) -> "Lines":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._closing is not None:
            self._closing.close()


class Quiet(Lines):
    """The default view off a terminal (a pipe, a CI log): one line per stage, when it starts or is skipped (the next
    line's clock says how long it took), and every library's output in the stage's log file."""

    @contextlib.contextmanager
    def running(self, folder: Path, why: str, work: Path) -> Iterator[None]:
        self.started(folder.name, why)
        try:
            with _kept_on_crash(work / STAGE_LOG, folder), _redirected(work / STAGE_LOG), _reporting(self.advance):
                yield
        finally:
            self.ended()

    def started(self, folder: str, why: str) -> None:
        self(f"[{folder}] running ({why})")

    def ended(self) -> None:
        pass

    def advance(self, done: float, total: float) -> None:
        pass

    def done(self, folder: str, seconds: float) -> None:
        pass


class Live(Quiet):
    """The default view on a terminal: the running stage's line is live (its bar and ETA once it reports progress,
    else the time it has run) and turns into `done in S s` when the stage ends; finished lines stay above it."""

    def __init__(self, stream: TextIO, clock: Callable[[], str], closing: TextIO | None = None) -> None:
        super().__init__(self._print, closing)
        self.stream, self.clock = stream, clock
        self._bar: Any = None
        self._task: Any = None
        self._why = ""

    def __enter__(self) -> "Live":
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn
        from rich.table import Column

        self._console = Console(file=self.stream, highlight=False)
        # One line that never wraps: the reason, last, takes the width left and is cut short. redirect_*=False: rich
        # must not take sys.stdout/sys.stderr over, a running stage points them at its log.
        self._bar = Progress(TextColumn("{task.description}", table_column=Column(no_wrap=True)), BarColumn(bar_width=20),
                             _eta_column(Column(no_wrap=True)),
                             TextColumn("{task.fields[why]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                             console=self._console, transient=True, expand=True, redirect_stdout=False, redirect_stderr=False)
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()
        super().__exit__(*exc)

    def _print(self, line: str) -> None:
        self._console.print(f"{self.clock()} {line}", markup=False, highlight=False, soft_wrap=True)

    def started(self, folder: str, why: str) -> None:
        self._why = why
        self._task = self._bar.add_task(f"{self.clock()} [{folder}]", total=None, why=f"running ({why})")

    def ended(self) -> None:
        self._bar.remove_task(self._task)

    def advance(self, done: float, total: float) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def done(self, folder: str, seconds: float) -> None:
        self(f"[{folder}] done in {seconds} s ({self._why})")


def view(*, verbose: bool = False, stream: TextIO | None = None) -> Lines:
    """The view for one run, used as a context manager: `Lines` with `verbose`, else `Live` on a terminal and
    `Quiet` elsewhere. Lines go to `stream` (default: this process's stderr, as it was before any stage redirected
    it), each stamped with the seconds since the view was made."""
    closing = None if stream else _own_terminal()
    stream = stream or closing or sys.stderr
    start = time.time()
    clock = lambda: f"[{time.time() - start:7.1f}s]"  # noqa: E731

    def emit(line: str) -> None:
        stream.write(f"{clock()} {line}\n")
        stream.flush()

    if verbose:
        return Lines(emit, closing)
    return Live(stream, clock, closing) if stream.isatty() else Quiet(emit, closing)


def _own_terminal() -> TextIO | None:
    """A copy of file descriptor 2 when sys.stderr is the process's own: a running stage points fd 2 at its log, the
    copy still reaches the terminal. None when sys.stderr was replaced (pytest's capture, a notebook's stream): fd
    redirection never reaches those, so the view writes to them as they are."""
    if sys.stderr is None or sys.stderr is not sys.__stderr__:
        return None
    return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding=sys.stderr.encoding, errors="replace")


@contextlib.contextmanager
def _reporting(report: Callable[[float, float], None]) -> Iterator[None]:
    token = _PROGRESS.set(report)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


@contextlib.contextmanager
def _redirected(log: Path) -> Iterator[None]:
    """Everything written while the block runs, by Python or C code or a child process, appended to `log`; file
    descriptors 1 and 2 and sys.stdout/sys.stderr are restored afterwards, also when the block raises."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "a", buffering=1, encoding="utf-8", errors="replace") as text, \
                contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            try:
                yield
            finally:
                text.flush()
                _flush_c_streams()  # C stdio buffers written now land in the log, not on the terminal later
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for f in (fd, *saved):
            os.close(f)


def _flush_c_streams() -> None:
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (Windows): its streams flush on their own
        pass


@contextlib.contextmanager
def _kept_on_crash(log: Path, folder: Path) -> Iterator[None]:
    """A stage that crashes (anything but bad input, EdgesmithError, or an interrupt) leaves its log, with the
    traceback, as RUN/NN-stage.failed.log and raises StageFailed naming it; success removes an older one."""
    kept = folder.with_name(folder.name + FAILED_LOG_SUFFIX)
    try:
        yield
    except EdgesmithError:
        raise
    except Exception as err:
        with open(log, "a", encoding="utf-8", errors="replace") as f:
            f.write("".join(traceback.format_exception(err)))
        os.replace(log, kept)
        raise StageFailed(folder.name, kept, err) from err
    kept.unlink(missing_ok=True)


def _eta_column(column: Any) -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Eta(ProgressColumn):
        """How long the stage has run, and once it reports progress `3/10 0:00:12 ETA 0:00:20` (time left)."""

        def render(self, task: Any) -> Text:
            ran = _hms(task.elapsed or 0.0)
            if task.total is None:
                return Text(ran)
            left = task.time_remaining
            return Text(f"{task.completed:.0f}/{task.total:.0f} {ran} ETA {_hms(left) if left is not None else '-:--:--'}")

    return Eta(table_column=column)


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"
