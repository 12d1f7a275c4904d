"""benchmarks/recovery.py step-profile refuses bad arguments in one line, before it loads the teacher."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import recovery  # noqa: E402


@pytest.mark.parametrize(("steps", "changes", "says"), [
    (30, ("batch=0",), "batch=N once"),
    (30, ("batch=x",), "batch=N once"),
    (30, ("batch=64", "batch=128"), "batch=N once"),
    (5, (), "more than 5"),
    (51, (), "at most 50"),
    (30, ("bf16-student", "bogus"), "unknown step-profile changes ['bogus']"),
])
def test_step_profile_refuses_bad_arguments_before_loading(monkeypatch, steps, changes, says):
    def no_setup():
        raise AssertionError("the teacher was loaded before the arguments were checked")

    monkeypatch.setattr(recovery, "setup", no_setup)
    with pytest.raises(SystemExit) as err:
        recovery.step_profile(4, 0.33, steps, changes)
    assert says in str(err.value)


@pytest.mark.parametrize("argv", [
    ["step-profile", "4:0.33", "abc"],
    ["step-profile", "4", "30"],
    ["step-profile"],
    ["distill", "4:0.33", "many", "attn"],
    ["fit-speedup", "four", "3.0"],
    ["shapes", "4:0.25:0.4:1"],
    ["shapes", "4"],
    ["shapes", "4:0.33", "nncf=bogus"],
    ["sts-slices", "4:1:x"],
    ["sts-slices", "4+recon:1"],
    ["sts-slices", "1:1:1"],
    ["shapes", "7:0.5"],
    ["retrain-free", "1:0.5"],
])
def test_malformed_command_lines_are_refused_in_one_line(argv):
    with pytest.raises(SystemExit) as err:
        recovery.parse(argv)
    assert "malformed arguments" in str(err.value)


def test_accuracy_control_refuses_bad_arguments(tmp_path):
    import accuracy_control

    (tmp_path / "05-export-structured").mkdir()
    assert accuracy_control.parse([str(tmp_path)]) == (tmp_path, 0.001, 1000)
    for argv in ([str(tmp_path), "x"], [str(tmp_path), "1.5"], [str(tmp_path), "0.01", "0"], [str(tmp_path / "nothing")], []):
        with pytest.raises(SystemExit, match="usage: python benchmarks/accuracy_control.py"):
            accuracy_control.parse(argv)


def test_shapes_take_heads_and_ffn_apart(monkeypatch):
    seen = []
    monkeypatch.setattr(recovery, "shapes", lambda specs, setting: seen.append((specs, setting)))
    recovery.parse(["shapes", "4:0.33", "4:0.25:0.4"])()
    recovery.parse(["shapes", "3:0.5", "nncf=smoothquant-off"])()
    assert seen == [([(4, 0.33, 0.33), (4, 0.25, 0.4)], "smoothquant"), ([(3, 0.5, 0.5)], "smoothquant-off")]


def test_sts_slices_read_shapes_and_which_to_reconstruct(monkeypatch):
    seen = []
    monkeypatch.setattr(recovery, "sts_slices", lambda specs, recon: seen.append((specs, recon)))
    recovery.parse(["sts-slices", "4:1:0.5+recon", "3:1"])()
    recovery.parse(["sts-slices"])()
    assert seen == [([(4, 1.0, 0.5), (3, 1.0, 1.0)], {(4, 1.0, 0.5)}), ([(3, 1.0, 1.0), (4, 1.0, 1.0)], set())]
