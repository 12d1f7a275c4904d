"""One registry idiom: a decorator that fills a plain dict keyed by stage name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .config import Frozen


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[..., dict[str, Any]]
    config: type[Frozen]
    version: int  # bump when the stage's behaviour changes: cached outputs then rerun
    distributed: bool = False  # it trains: under torchrun/accelerate every process runs it (edgesmith.distributed)


STAGES: dict[str, Stage] = {}


def stage(name: str, config: type[Frozen], version: int = 1,
          distributed: bool = False) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register `fn(cfg, inputs: dict[str, Artifact], out: Path) -> dict` as a stage.

    The function writes only under `out` and returns the facts that go into its manifest. A `distributed` stage
    trains on the Trainer: with several processes each one runs it, and only rank 0's `out` is kept.
    """

    def register(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        if name in STAGES:
            raise RuntimeError(f"stage {name!r} registered twice")
        STAGES[name] = Stage(name, fn, config, version, distributed)
        return fn

    return register
