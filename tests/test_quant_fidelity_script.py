"""benchmarks/quant_fidelity.py refuses a folder that is not a finished run with one line, before quantizing."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quant_fidelity  # noqa: E402


def test_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "00-data").mkdir()  # half a run: the data stage's folder, nothing else
    with pytest.raises(SystemExit, match=r"not a finished edgesmith run .*missing 00-data/manifest.json, 01-teacher"):
        quant_fidelity.measure(tmp_path, "structured", ["pipeline"], tmp_path / "scratch")


def test_refuses_an_unknown_variant_before_any_work() -> None:
    with pytest.raises(SystemExit, match="unknown variant 'smoothquant'"):
        quant_fidelity.nncf_variant("smoothquant")
