"""A finished run's outcome as an object (what `edgesmith.run` returns) and as the table `edgesmith run` prints:
per profile, the bundle chosen and its measurements against the profile's budgets. Read from RUN/summary.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# summary.json budget key -> (column title, digits)
BUDGETS = {"quality_drop": ("drop", 1), "p90_ms": ("p90 ms", 1), "peak_memory_mb": ("peak MB", 0), "size_mb": ("size MB", 1)}


@dataclass(frozen=True)
class ProfileResult:
    """One profile's bundle. Measurements are None when the profile's hardware is absent (`status` "not measured")."""
    name: str
    status: str  # "measured" or "not measured"
    reason: str | None  # why not measured
    bundle: Path | None  # the bundle folder (RUN/08-bundle-PROFILE/edgesmith-PROFILE); its .tar.gz lies beside it
    artifact: str | None  # "branch:runtime-precision", e.g. "structured:openvino-int8-static"
    quality: float | None  # points: accuracy %, or mean cosine x100 for encoders
    quality_drop: float | None  # points below the teacher
    p90_ms: float | None  # at the profile's batch and sequence length; budgets["p90_ms"]["value"] is the figure the
    # budget was judged on: at data.max_length where the bundle accepts longer inputs ("tokens" says which)
    size_mb: float | None
    budgets: dict[str, dict[str, Any]]  # name -> {"value", "limit", "verdict": "pass" | "FAIL" | "not measured"}
    verdict: str | None  # whether pruning paid against the teacher quantized alone, in one sentence

    @property
    def within_budgets(self) -> bool:
        return self.status == "measured" and all(b["verdict"] == "pass" for b in self.budgets.values())


@dataclass(frozen=True)
class RunSummary:
    """What a run produced: `profiles` maps each profile name to its bundle; `data` is summary.json as written."""
    out: Path
    recipe: str
    metric: str
    profiles: dict[str, ProfileResult]
    data: dict[str, Any]

    @property
    def report(self) -> Path:
        return self.out / "report.html"

    @classmethod
    def read(cls, out: Path) -> "RunSummary":
        data = json.loads((out / "summary.json").read_text())
        profiles = {name: _profile(out, name, p) for name, p in data["profiles"].items()}
        return cls(out, data["recipe"], data["metric"], profiles, data)

    def table(self) -> str:
        """The bundles against their budgets, one row per profile (value/limit, FAIL where over), then each
        profile's verdict and where the report is."""
        head = ["profile", "bundle", self.metric.split(" (")[0], *(title + "/budget" for title, _ in BUDGETS.values())]
        rows = [head] + [_row(p) for p in self.profiles.values()]
        widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines += [f"{p.name}: {p.verdict}" for p in self.profiles.values() if p.verdict]
        lines += [f"note: {note}" for note in self.data.get("notes", [])]
        lines.append(f"bundles: {self.out}/08-bundle-*/  report: {self.report}  summary: {self.out / 'summary.json'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _profile(out: Path, name: str, p: dict[str, Any]) -> ProfileResult:
    bundle = out / f"08-bundle-{name}" / p["bundle"] if p.get("bundle") else None
    return ProfileResult(name, p["status"], p.get("reason"), bundle, p.get("artifact"), p.get("quality"), p.get("quality_drop"),
                         p.get("p90_ms"), p.get("size_mb"), p.get("budgets") or {}, p.get("verdict"))


def _row(p: ProfileResult) -> list[str]:
    if p.status != "measured":
        return [p.name, f"not measured: {p.reason}"]
    cells = [p.name, p.artifact or "-", "-" if p.quality is None else f"{p.quality:.1f}"]
    for key, (_, digits) in BUDGETS.items():
        b = p.budgets.get(key)
        if b is None or b.get("value") is None:
            cells.append("-")
            continue
        limit = "-" if b.get("limit") is None else f"{b['limit']:g}"
        cells.append(f"{b['value']:.{digits}f}/{limit}" + (" FAIL" if b["verdict"] == "FAIL" else ""))
    return cells
