"""What every runtime provides, and the session every caller gets.

A runtime is one module of `edgesmith.runtimes` holding one subclass of `Runtime`, listed in the package's table.
It names the precisions it builds, converts the exported ONNX to its own FP32 model, quantizes that model, opens
sessions with the one definition of its settings, lists the files of a model and says whether this machine has
the profile's hardware. Its bundle-side opener (`open_model` and the helpers it calls) is plain module-level code
that edgesmith both calls itself and writes into each bundle as `edgesmith_runtime.py`, so predict.py, bench.py,
the benchmark and `edgesmith verify` open a model the same way.

`Engine` is the part the PyTorch reference (the teacher in FP32, measured as the baseline) shares with them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import EdgesmithError, require
from ..tasks.base import EVAL_BATCH

if TYPE_CHECKING:
    from ..config import Measurement

CPU_ONLY = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class Held:
    """Training rows the calibration never saw, as feeds, and the graph output to compare on them. Where a runtime
    can quantize one precision more than one way, it ships the way whose output stays closest to its FP32 model's
    on these rows: chosen by fidelity to FP32, never by a score on the eval split."""
    feeds: list[dict[str, np.ndarray]]
    output: str | None


@dataclass(frozen=True)
class Session:
    """One call shape for every runtime: `run({name: int64 array [batch, seq]}) -> float32 array`.

    `handle` is the runtime's own object, `input_names` the model's inputs, `settings` the settings applied."""
    handle: Any
    run: Callable[[dict[str, np.ndarray]], np.ndarray]
    input_names: list[str]
    settings: dict[str, Any]


class Engine(ABC):
    """What opens and measures a model: a profile runtime, or the PyTorch reference."""

    name: str
    modules: tuple[str, ...]  # imported by the benchmark process before its baseline memory reading

    @abstractmethod
    def settings(self, threads: int, providers: tuple[str, ...] = CPU_ONLY) -> dict[str, Any]:
        """The one definition of how a model is opened: JSON-able, recorded by the bench stage per row and carried
        to the bundle's manifest. `providers` are the profile's execution providers."""

    @abstractmethod
    def with_threads(self, settings: dict[str, Any], threads: int | None) -> dict[str, Any]:
        """A copy of `settings` with only the thread count changed (None: unchanged)."""

    @abstractmethod
    def files(self, path: Path) -> list[Path]:
        """Every file of the model at `path` (the file a session opens first), e.g. an IR's .xml and its .bin."""

    @abstractmethod
    def _open(self, path: Path, settings: dict[str, Any], output: str | None = None) -> Session:
        """A session with `settings` applied as they are, returning the output named `output` (None: the only one)."""

    def made_here(self, settings: Any) -> bool:
        """Whether `settings` are self.settings(...) for some thread count and providers. Settings read from a
        manifest are applied key by key: no others may pass (ONNX Runtime's optimized_model_filepath writes a file)."""
        try:
            return self.with_threads(settings, 1) == self.settings(1, tuple(settings.get("providers", CPU_ONLY)))
        except (KeyError, TypeError, AttributeError, EdgesmithError):
            return False

    def open(self, path: Path, settings: dict[str, Any], output: str | None = None) -> Session:
        """A session on this machine with `settings`, which must be ones edgesmith makes; it returns the model's
        output named `output` (a task's `output_name`; None: the model's only output)."""
        require(self.made_here(settings), f"{self.name} session settings {settings} are not ones edgesmith makes; rebuild the bundle")
        return self._open(path, settings, output)

    def bytes(self, path: Path) -> int:
        """Bytes on disk of the model at `path`, every file of it."""
        return sum(f.stat().st_size for f in self.files(path))


class Runtime(Engine):
    """A runtime a profile can name and a bundle can ship."""

    precisions: tuple[str, ...]  # what quantize() builds: the only precisions a profile may ask this runtime for
    devices: tuple[str, ...] = ("cpu",)  # the profile devices it runs on
    export_format: str  # the recipe's export.formats entry that makes convert() run
    # The model's name in a bundle, its other files (an IR's .bin) named after it: the name Optimum's ORTModel*/OVModel*
    # classes and sentence-transformers' onnx/openvino backends look for, so they load the measured model as it is.
    bundle_file: str
    bundle_functions: tuple[Callable[..., Any], ...]  # written into bundles as edgesmith_runtime.py; open_model among them
    # Precisions whose quantization scales come from each call's whole input (ONNX Runtime's dynamic INT8 quantizes
    # the padded batch with one scale), so a text's outputs move with the texts run beside it: 1.8e-4 on a logit.
    per_call_scales: tuple[str, ...] = ()

    def texts_per_call(self, precision: str) -> int:
        """Texts per model call, when held-out texts are scored and in the bundle's predict.py: one where the scales
        are per call, so that a text's answer is its own and the device's is the one measured; else the scoring batch."""
        return 1 if precision in self.per_call_scales else EVAL_BATCH

    @staticmethod
    @abstractmethod
    def open_model(path: Path, settings: dict[str, Any], threads: int | None = None,
                   output: str | None = None) -> tuple[Any, Any, list[str], dict[str, Any]]:
        """The bundle-side opener: (runtime handle, run(feed) -> float32 array, input names, settings applied).
        `threads` replaces only the thread count; what this machine lacks is dropped with a note on stderr. run
        returns the graph output named `output`; None is allowed only for a graph with one output."""

    @abstractmethod
    def convert(self, onnx: Path, out: Path) -> tuple[Path, dict[str, Any]]:
        """This runtime's FP32 model built from the exported ONNX graph `onnx`, under `out`: (its path, facts)."""

    @abstractmethod
    def quantize(self, precision: str, src: Path, out: Path, feeds: list[dict[str, np.ndarray]], exported: Path) -> Path:
        """One candidate of `precision` from the FP32 model `src` (what `convert` built from the plain exported ONNX
        graph `exported`), under `out`; a precision may quantize `exported` instead where `src`'s fused ops defeat
        the quantizer. `feeds` are calibration inputs ({name: int64 array [1, seq]}, real task rows at their real
        lengths). Returns the model's path."""

    def quantize_choosing(self, precision: str, src: Path, out: Path, feeds: list[dict[str, np.ndarray]], exported: Path,
                          held: Held | None) -> tuple[Path, dict[str, Any]]:
        """quantize(), choosing between this runtime's ways of building `precision` by fidelity to FP32 on `held`
        where it has more than one: (the model's path, what was chosen and measured; empty where nothing was)."""
        return self.quantize(precision, src, out, feeds, exported), {}

    def hardware_gap(self, profile: Measurement) -> str | None:
        """Why this machine cannot measure `profile` with this runtime, or None when it can."""
        return None

    def _open(self, path: Path, settings: dict[str, Any], output: str | None = None) -> Session:
        return Session(*self.open_model(path, settings, None, output))

    def open_bundle(self, path: Path, settings: dict[str, Any], threads: int | None = None, output: str | None = None) -> Session:
        """The session a bundle's predict.py opens, through the same function: what this machine lacks (an
        execution provider) is dropped with a note on stderr instead of refused."""
        require(self.made_here(settings), f"{self.name} session settings {settings} are not ones edgesmith makes; rebuild the bundle")
        return Session(*self.open_model(path, settings, threads, output))
