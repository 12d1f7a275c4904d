"""The runtimes, one module each behind one interface (`base.Runtime`), and the one table that names them.

A profile names runtimes from RUNTIMES, with precisions each one declares; the stages, the benchmark process, the
bundle and `edgesmith verify` reach a runtime only through `get(name)`. "torch" is the PyTorch reference the bench
stage measures as the baseline: it opens sessions like the others but is no profile runtime. Importing this
package loads no runtime library: each one is imported where it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EdgesmithError
from .base import CPU_ONLY, Engine, Held, Runtime, Session
from .onnxruntime import OnnxRuntime
from .openvino import OpenVino
from .torch import TorchReference, input_names_for

__all__ = ["CPU_ONLY", "Engine", "Held", "RUNTIMES", "REFERENCE", "Runtime", "Session", "get", "input_names_for", "made_here",
           "open_session", "session_settings", "with_threads"]

RUNTIMES: dict[str, Runtime] = {r.name: r for r in (OnnxRuntime(), OpenVino())}  # what profiles name and bundles ship
REFERENCE = TorchReference()


def get(name: str) -> Engine:
    """The runtime called `name` (or the PyTorch reference, "torch")."""
    if name == REFERENCE.name:
        return REFERENCE
    if name not in RUNTIMES:
        raise EdgesmithError(f"unknown runtime {name!r}; use one of {', '.join(RUNTIMES)} (or {REFERENCE.name}, the PyTorch reference)")
    return RUNTIMES[name]


def session_settings(runtime: str, threads: int, providers: tuple[str, ...] = CPU_ONLY) -> dict[str, Any]:
    """The one definition of how `runtime` opens a model (base.Engine.settings)."""
    return get(runtime).settings(threads, providers)


def with_threads(runtime: str, settings: dict[str, Any], threads: int) -> dict[str, Any]:
    """A copy of session_settings(...) with only the thread count changed."""
    return get(runtime).with_threads(settings, threads)


def made_here(runtime: str, settings: Any) -> bool:
    """Whether `settings` are session_settings(runtime, ...) for some thread count and providers."""
    return get(runtime).made_here(settings)


def open_session(runtime: str, path: Path, threads: int = 1, providers: tuple[str, ...] = CPU_ONLY, *,
                 settings: dict[str, Any] | None = None, output: str | None = None) -> Session:
    """A session on the model at `path` (a model folder for "torch"), opened with `settings` when given (recorded
    by the bench stage or a bundle manifest; they must be ones edgesmith makes), else session_settings(runtime,
    threads, providers). Its run returns the output named `output`: the task's `output_name`, which a graph with
    more than one output (an embedding's) needs."""
    engine = get(runtime)
    return engine.open(path, engine.settings(threads, providers) if settings is None else settings, output)
