"""The whole stage graph on a tiny random BERT: every stage runs, caches, bundles verify, predict.py works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgesmith.cli import main
from edgesmith.registry import STAGES
from edgesmith.verify import verify

RECIPE = """
name: tiny
task: classification
teacher: {{model: {model}}}
data: {{source: {data}, max_length: 32}}
prune:
  branches: [structured, sparse]
  structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8, steps: 2}}
  sparse: {{sparsity: 0.7}}
distill: {{max_steps: 4, batch_size: 8, label_weight: 0.5}}
quantize: {{calibration_samples: 8, fidelity_samples: 500, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5}}
profiles: [{ort}, {ov}, {gpu}]
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert, tiny_data, tiny_profiles, capsys_module=None):
    root = tmp_path_factory.mktemp("run")
    recipe = root / "tiny.yaml"
    recipe.write_text(RECIPE.format(model=tiny_bert, data=tiny_data, ort=tiny_profiles / "tiny-ort.yaml", ov=tiny_profiles / "tiny-ov.yaml",
                                  gpu=tiny_profiles / "tiny-gpu.yaml"))
    out = root / "out"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    return recipe, out


def _manifests(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/manifest.json")}


def test_every_registered_stage_ran_and_wrote_a_complete_manifest(tiny_run):
    _, out = tiny_run
    manifests = _manifests(out)
    assert {m["stage"] for m in manifests.values()} == set(STAGES)
    for name, m in manifests.items():
        assert m["files"], name
        assert {"torch", "onnxruntime", "openvino"} <= set(m["libraries"]), name
        assert all(len(h) == 64 for h in m["files"].values())
    assert not list(out.glob(".*.tmp"))


def test_structured_branch_is_physically_smaller_and_fused(tiny_run):
    _, out = tiny_run
    shrink = _manifests(out)["04-shrink-structured"]["facts"]
    assert shrink["params"] < shrink["teacher_params"] and shrink["bytes"] < shrink["teacher_bytes"]
    prune, distill = _manifests(out)["02-prune-structured"]["facts"], _manifests(out)["03-distill-structured"]["facts"]
    assert prune["steps_heads_total"][0] > prune["steps_heads_total"][1] == sum(prune["heads_per_layer"])  # gradual: 2 cuts
    assert len(distill["step_losses"]) == 2 and distill["steps"] == 4
    export = _manifests(out)["05-export-structured"]["facts"]
    assert export["fused_ops"].get("Attention") == 2 and export["fused_ops"].get("SkipLayerNormalization", 0) >= 2
    assert export["validation"]["onnxruntime"]["argmax_agreement"] == 1.0
    assert export["validation"]["openvino"]["max_abs_diff"] < 1e-3


def test_sparse_branch_reports_density_and_no_speed_claim(tiny_run):
    _, out = tiny_run
    facts = _manifests(out)["04-shrink-sparse"]["facts"]
    assert facts["encoder_density"] == pytest.approx(0.3, abs=0.02)
    assert "no speed-up" in facts["note"]


def test_quantized_candidates_are_measured_against_the_budget(tiny_run):
    _, out = tiny_run
    cands = _manifests(out)["06-quantize-structured"]["facts"]["candidates"]
    # every profile's pairs, each built once, in the order the profiles list them (ort, ov, gpu)
    assert [(c["runtime"], c["precision"]) for c in cands] == [
        ("onnxruntime", "int8-dynamic"), ("onnxruntime", "int8-static"), ("openvino", "int8-static"), ("onnxruntime", "fp16")]
    assert all("metric" in c["quality"] and c["drop"] is not None for c in cands if c["precision"].startswith("int8"))


def test_each_profile_benches_only_its_own_pairs_of_the_shared_quantize_stage(tiny_run):
    _, out = tiny_run
    expected = {"tiny-ort": {"onnxruntime-fp32", "onnxruntime-int8-dynamic", "onnxruntime-int8-static"},
                "tiny-ov": {"openvino-fp32", "openvino-int8-static"}, "tiny-gpu": {"onnxruntime-fp32", "onnxruntime-fp16"}}
    for profile, artifacts in expected.items():
        rows = _manifests(out)[f"07-bench-{profile}"]["facts"]["rows"]
        for branch in ("structured", "sparse", "unpruned"):
            assert {r["artifact"] for r in rows if r["branch"] == branch} == artifacts, (profile, branch)
    assert not list(out.glob("06-quantize-*-tiny-*"))  # no per-profile quantize folders


def test_openvino_int8_is_chosen_on_training_rows_past_the_calibration_and_the_report_says_how(tiny_run):
    """The held rows are the training rows after the 8 calibration rows (never eval rows); the bench measures the
    chosen file and the report names the setting with both distances."""
    _, out = tiny_run
    train = sum(1 for _ in (out / "00-data" / "train.jsonl").open())
    for branch in ("structured", "sparse", "unpruned"):
        (cand,) = [c for c in _manifests(out)[f"06-quantize-{branch}"]["facts"]["candidates"] if c["runtime"] == "openvino"]
        q = cand["quantizer"]
        assert q["held_rows"] == min(500, train - 8) > 0 and q["setting"] in q["mean_abs_diff_vs_fp32"]
        assert q["mean_abs_diff_vs_fp32"][q["setting"]] == min(q["mean_abs_diff_vs_fp32"].values())
        assert cand["widened_intervals"] == q["widened_intervals"][q["setting"]] >= 0  # the shipped setting's count
    rows = _manifests(out)["07-bench-tiny-ov"]["facts"]["rows"]
    assert sum("quantizer" in r for r in rows) == 3 and not any("quantizer" in r for r in _manifests(out)["07-bench-tiny-ort"]["facts"]["rows"])
    assert all(isinstance(r["widened_intervals"], int) for r in rows if "quantizer" in r)
    assert "training rows the calibration did not use" in (out / "report.md").read_text()


def test_bench_measures_teacher_and_every_artifact_with_thread_clamp(tiny_run):
    _, out = tiny_run
    facts = _manifests(out)["07-bench-tiny-ort"]["facts"]
    branches = [r["branch"] for r in facts["rows"]]
    # the teacher in PyTorch, then per branch (structured, sparse, and the teacher unpruned) its FP32 export and the
    # profile's two INT8 candidates
    assert branches.count("teacher") == 1 and len(branches) == 10 and branches.count("unpruned") == 3
    for r in facts["rows"]:
        lat = r["latency"]
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] and lat["peak_rss_mb"] > lat["rss_before_load_mb"] > 0
        # the bundle takes data.max_length (32) tokens, the profile measures at 16: the budgets' figures are at 32
        assert lat["longest_len"] == 32 and 0 < lat["longest_p50_ms"] <= lat["longest_p90_ms"]
        assert lat["longest_peak_rss_mb"] >= lat["peak_rss_mb"]
    assert facts["threads"] <= 8 and (facts["thread_clamp"] is not None) == (facts["threads"] < 8)


def test_summary_and_report(tiny_run):
    _, out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    for name in ("tiny-ort", "tiny-ov"):
        s = summary["profiles"][name]
        assert s["status"] == "measured" and s["p50_ms"] > 0 and s["teacher"]["p50_ms"] > 0 and s["size_mb"] > 0
    assert set(summary["profiles"]["tiny-ort"]["budgets"]) == {"quality_drop", "p90_ms", "peak_memory_mb", "size_mb"}
    ort = summary["profiles"]["tiny-ort"]  # its budgets are generous: the choice kept to all of them, and the bundle meets them
    assert ort["budgets_kept"] == ["p90", "peak memory", "size"] and ort["meets_profile_budgets"] is True
    assert all(b["verdict"] == "pass" for k, b in ort["budgets"].items() if k != "quality_drop")
    assert ort["budgets"]["p90_ms"]["tokens"] == 32 and ort["budgets"]["p90_ms"]["value"] == ort["p90_ms_longest"]
    assert "p90 ms at 32" in (out / "report.md").read_text() and "at 32 tokens)" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "tiny-ov" in html
    gpu = summary["profiles"]["tiny-gpu"]
    assert gpu["status"] == "not measured" and "CUDA" in gpu["reason"] and gpu["p50_ms"] is None
    assert gpu["verdict"].startswith("Not judged: this machine lacks the profile's hardware") and "fastest" not in gpu["verdict"]
    assert "| profile |" in (out / "report.md").read_text()
    assert summary["notes"] == [] and "## Data and labels" not in (out / "report.md").read_text()  # both splits hold both labels


def test_the_printed_summary_ends_with_the_reports_label_notes(tiny_run, tmp_path):
    from edgesmith.summary import RunSummary

    _, out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    assert "note:" not in RunSummary.read(out).table()
    (tmp_path / "summary.json").write_text(json.dumps(summary | {"notes": ["Held-out labels that no training row holds: 'x'."]}))
    assert RunSummary.read(tmp_path).table().splitlines()[-2] == "note: Held-out labels that no training row holds: 'x'."


def test_every_profile_measures_the_teacher_quantized_alone_and_says_whether_pruning_paid(tiny_run):
    """The baseline a one-liner gives (the teacher unpruned, quantized with each of the profile's pairs) is built,
    measured in the same run, and the summary gives the bundle's speed-up and quality change against it."""
    _, out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    for name, pairs in (("tiny-ort", {"onnxruntime-int8-dynamic", "onnxruntime-int8-static"}), ("tiny-ov", {"openvino-int8-static"})):
        rows = _manifests(out)[f"07-bench-{name}"]["facts"]["rows"]
        assert pairs <= {r["artifact"] for r in rows if r["branch"] == "unpruned"}
        s = summary["profiles"][name]
        ref = s["quantized_teacher"]
        # the reference is what the bundle stage would have shipped had pruning not paid (an unpruned FP32 export can
        # beat the INT8 builds of a tiny model); only without one is it the fastest of the profile's quantized builds
        recorded = _manifests(out)[f"08-bundle-{name}"]["facts"]["alternative"]
        assert ref["artifact"] == (recorded or ref["artifact"]) and ref["p50_ms"] > 0
        assert recorded is not None or ref["artifact"].split(":", 1)[1] in pairs
        c = s["speedup_confirmation"]  # a pruned bundle is re-measured against the quantized teacher in paired rounds
        confirmed = c is not None and c["measurable"] and c["against"] == ref["artifact"]
        if c is not None:  # the tiny profiles measure 16 tokens and the bundles take 32: every round timed both
            assert c["longest_len"] == 32 and len(c["longest_speedups"]) == 3 and all("against_longest_p50_ms" in r for r in c["rounds"])
        assert s["speedup_p50_vs_quantized_teacher"] == pytest.approx(c["speedup"] if confirmed else ref["p50_ms"] / s["p50_ms"])
        assert s["pruning_paid"] == (not s["artifact"].startswith("unpruned:"))
        assert s["verdict"].startswith("A pruned build ships because" if s["pruning_paid"] and recorded is None else "Pruning")
        if s["pruning_paid"] and recorded is not None:  # a pruned bundle shipped over a quantized teacher: faster in every round
            assert c["measurable"] and len(c["rounds"]) == 3 and c["artifact"] == s["artifact"]
        elif c is not None:  # it was chosen on the bench's reading but a paired round contradicted it
            assert not c["measurable"] and s["artifact"] == c["against"] and "did not pay measurably" in s["verdict"]
    assert "Against the teacher quantized alone" in (out / "report.md").read_text()


def test_gpu_profile_gets_an_fp16_candidate_without_invented_latency(tiny_run):
    _, out = tiny_run
    cands = [c for c in _manifests(out)["06-quantize-structured"]["facts"]["candidates"] if c["precision"] == "fp16"]
    assert [c["runtime"] for c in cands] == ["onnxruntime"] and cands[0]["bytes"] > 0
    rows = _manifests(out)["07-bench-tiny-gpu"]["facts"]["rows"]
    assert all(set(r["latency"]) == {"not_measured"} for r in rows)


def test_bundles_verify_and_run_standalone(tiny_run):
    _, out = tiny_run
    for profile, model_file in (("tiny-ort", "model.onnx"), ("tiny-ov", "openvino_model.xml")):
        folder = out / f"08-bundle-{profile}" / f"edgesmith-{profile}"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["model_file"] == model_file and manifest["inputs"]["max_length"] == 32
        assert set(manifest["files"]) >= {model_file, "tokenizer.json", "predict.py", "bench.py", "labels.json", "reference.json"}
        assert any("sha256" in line for line in verify(folder))
        assert verify(folder.parent / f"edgesmith-{profile}.tar.gz")
        done = subprocess.run([sys.executable, "predict.py", "a good movie", "an awful film"], cwd=folder, capture_output=True, text=True, check=True)
        lines = [json.loads(x) for x in done.stdout.splitlines()]
        assert len(lines) == 2 and lines[0]["label"] in manifest["labels"]
        bench = json.loads(subprocess.run([sys.executable, "bench.py", "--iterations", "5"], cwd=folder, capture_output=True, text=True, check=True).stdout)
        assert bench["p50_ms"] > 0
        probe = ("import runpy, sys; sys.argv = ['predict.py', 'a good movie']; runpy.run_path('predict.py', run_name='__main__'); "
                 "print(sorted(m for m in ('torch', 'transformers', 'edgesmith', 'pipeline', 'optimum') if m in sys.modules))")
        heavy = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        assert heavy == "[]"  # the bundle needs only numpy, tokenizers and its runtime


def test_tampered_bundle_fails_verification(tiny_run, tmp_path):
    import shutil

    from edgesmith.errors import EdgesmithError

    _, out = tiny_run
    copy = tmp_path / "b"
    shutil.copytree(out / "08-bundle-tiny-ort" / "edgesmith-tiny-ort", copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgesmithError, match="model.onnx does not match its sha256"):
        verify(copy)


def test_rerun_skips_everything_and_force_redoes_a_stage(tiny_run, capsys):
    recipe, out = tiny_run
    before = _manifests(out)
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == len(before) and "running" not in err
    assert main(["run", str(recipe), "--out", str(out), "--force", "prune"]) == 0
    err = capsys.readouterr().err
    assert "[02-prune-structured] running" in err and "[02-prune-sparse] running" in err and "[00-data] skipped" in err
