"""The harness scores each artifact as it runs on the device: ONNX Runtime's dynamic INT8 one text a call (its scales
come from each call's whole input), as edgesmith scores and ships it; every other artifact 32 texts a call."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import measure  # noqa: E402
from report import _scoring_note  # noqa: E402

TEACHER = {"name": "teacher", "group": "teacher", "suite": "sst2", "runtime": "torch", "int8": False, "path": "t"}
PEER_DYNAMIC = {"name": "Optimum ONNX + ORTQuantizer INT8", "group": "peer", "suite": "sst2", "runtime": "onnxruntime",
                "int8": True, "path": "p1"}
PEER_OV = {"name": "optimum-intel OpenVINO NNCF INT8", "group": "peer", "suite": "sst2", "runtime": "openvino", "int8": True,
           "path": "p2"}
PEER_FP32 = {"name": "optimum-intel OpenVINO FP32", "group": "peer", "suite": "sst2", "runtime": "openvino", "int8": False,
             "path": "p3"}
OURS_DYNAMIC = {"name": "student ORT", "group": "edgesmith", "suite": "sst2", "runtime": "onnxruntime", "int8": True,
                "artifact": "structured:onnxruntime-int8-dynamic", "precision": "int8-dynamic", "path": "s1"}
OURS_STATIC = {"name": "student ORT static", "group": "edgesmith", "suite": "sst2", "runtime": "onnxruntime", "int8": True,
               "artifact": "unpruned:onnxruntime-int8-static", "precision": "int8-static", "path": "s2"}
OURS_OV = {"name": "student OV", "group": "edgesmith", "suite": "sst2", "runtime": "openvino", "int8": True,
           "artifact": "structured:openvino-int8-static", "precision": "int8-static", "path": "s3"}


@pytest.mark.parametrize("entry, precision, per_call", [
    (TEACHER, "fp32", 32), (PEER_DYNAMIC, "int8-dynamic", 1), (PEER_OV, "int8-static", 32), (PEER_FP32, "fp32", 32),
    (OURS_DYNAMIC, "int8-dynamic", 1), (OURS_STATIC, "int8-static", 32), (OURS_OV, "int8-static", 32)])
def test_each_artifact_is_scored_as_its_runtime_runs_it(entry, precision, per_call):
    assert measure.precision(entry) == precision
    assert measure.texts_per_call(entry) == per_call


def test_quality_passes_the_count_to_every_call(monkeypatch):
    """quality() scores each artifact with its own texts_per_call (recorded on the entry), not one count for all."""
    import edgesmith.evaluate as evaluate
    import edgesmith.runtimes as runtimes

    seen = {}
    rows = [{"sentence": "a", "label": 0}, {"sentence": "b", "label": 1}]

    def fake_outputs(session, rows_, tokenizer, max_length, task, batch_size=32):
        seen[session] = batch_size
        return np.array([[1.0, 0.0], [0.0, 1.0]])

    monkeypatch.setattr(evaluate, "outputs", fake_outputs)
    monkeypatch.setattr(runtimes, "open_session", lambda runtime, path, threads, output: str(path))
    entries = [dict(e) for e in (TEACHER, PEER_DYNAMIC, PEER_OV, OURS_DYNAMIC, OURS_OV)]
    measure.quality(entries, {"sst2": {"rows": rows, "tokenizer": None}})
    assert seen == {"t": 32, "p1": 1, "p2": 32, "s1": 1, "s3": 32}
    assert [e["texts_per_call"] for e in entries] == [32, 1, 32, 1, 32]
    assert all(e["quality"] == 100.0 for e in entries)


def test_the_page_says_how_quality_was_scored():
    mixed = [TEACHER | {"texts_per_call": 32}, OURS_DYNAMIC | {"texts_per_call": 1}]
    assert "one text a call for ONNX Runtime's dynamic INT8" in _scoring_note(mixed) and "32 a call" in _scoring_note(mixed)
    assert _scoring_note([TEACHER | {"texts_per_call": 32}, OURS_OV | {"texts_per_call": 32}]).endswith("32 texts a call for every artifact.")
    # a page re-rendered from a harness run that did not record it: every artifact was scored 32 a call then
    assert _scoring_note([TEACHER, OURS_DYNAMIC]).endswith("32 texts a call for every artifact.")


def test_the_harness_entries_carry_the_precision_they_are_scored_by(tmp_path):
    """Entries as benchmarks/levels.py builds them record their precision, so a change to the artifact names cannot
    quietly send dynamic INT8 back to 32 texts a call."""
    import levels as lv

    run = lv.Run(lv.LEVELS["sst2"], 0, tmp_path / "r.yaml", tmp_path / "sst2-seed0")
    dynamic = lv._entry(run, "structured", "onnxruntime-int8-dynamic", "onnxruntime", tmp_path / "m.onnx")
    static = lv._entry(run, "unpruned", "openvino-int8-static", "openvino", tmp_path / "m.xml")
    assert (dynamic["precision"], measure.texts_per_call(dynamic)) == ("int8-dynamic", 1)
    assert (static["precision"], measure.texts_per_call(static)) == ("int8-static", 32)
