"""What a bundle runs on the device is exactly what was measured.

For every runtime and precision a profile can ship, the bundle stage builds a bundle whose predict.py, run as a
device runs it (its own process, cwd = the bundle), gives bit for bit the outputs of the benchmark's session
(runtimes.open_session with the settings the bench stage recorded), and reads back those settings from the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from conftest import ship

from edgesmith.bundle_io import encode, open_bundle_session, run_as_predict
from edgesmith.cli import main
from edgesmith.errors import EdgesmithError
from edgesmith.runtimes import open_session, session_settings
from edgesmith.stages.bench import model_path

EVERY_PAIR = ("description: every runtime and precision\nthreads: 1\nseq_len: 16\n"
              "runtimes: {onnxruntime: [fp32, fp16, int8-dynamic, int8-static], openvino: [fp32, fp16, int8-static]}\n")
SHIPPABLE = ["onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8-dynamic", "onnxruntime-int8-static",
             "openvino-fp32", "openvino-fp16", "openvino-int8-static"]
RECIPE = """
task: classification
teacher: {{model: {model}}}
data: {{source: {data}, max_length: 32}}
prune: {{branches: [structured], structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}}}
distill: {{max_steps: 2, batch_size: 8}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5}}
profiles: [{profile}]
"""
# Lengths from 1 word to past max_length (truncation), in one batch (padding).
TEXTS = ["superb", "a good movie", "the plot was not quite boring and the actor was very sad but it is a fine film",
         " ".join(["really good"] * 30)]
# Run inside a bundle folder: what predict.py opened, as the runtime itself reports it.
READBACK = """
import json, sys
from predict import Predictor
m = Predictor(threads=int(sys.argv[1]) if len(sys.argv) > 1 else None)
if m.manifest["session"]["runtime"] == "openvino":
    got = {k: m.handle.get_property(k) for k in ("INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT")}
    got["INFERENCE_PRECISION_HINT"] = got["INFERENCE_PRECISION_HINT"].get_type_name()
    got["PERFORMANCE_HINT"] = str(got["PERFORMANCE_HINT"])
else:
    o = m.handle.get_session_options()
    got = {"intra_op_num_threads": o.intra_op_num_threads, "inter_op_num_threads": o.inter_op_num_threads,
           "graph_optimization_level": o.graph_optimization_level.name, "providers": m.handle.get_providers()}
print(json.dumps({"settings": m.settings, "readback": got}))
"""


@pytest.fixture(scope="module")
def run_out(tmp_path_factory, tiny_bert, tiny_data) -> Path:
    root = tmp_path_factory.mktemp("parity")
    (root / "all.yaml").write_text(EVERY_PAIR)
    (root / "recipe.yaml").write_text(RECIPE.format(model=tiny_bert, data=tiny_data, profile=root / "all.yaml"))
    assert main(["run", str(root / "recipe.yaml"), "--out", str(root / "out")]) == 0
    return root / "out"


def _ship_every_pair(run_out: Path, tmp_path_factory, branch: str) -> dict[str, tuple[Path, dict]]:
    """artifact name -> (bundle folder, its bench row): each of the branch's artifacts shipped by the bundle stage."""
    return {name: ship(run_out, "all", branch, name, tmp_path_factory.mktemp(f"{branch}-{name}")) for name in SHIPPABLE}


@pytest.fixture(scope="module")
def bundles(run_out, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The teacher's own candidates (unpruned), each shipped."""
    return _ship_every_pair(run_out, tmp_path_factory, "unpruned")


@pytest.fixture(scope="module")
def pruned_bundles(run_out, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The pruned student's candidates, each shipped: a sliced config.json, the shrunk student as PyTorch reference."""
    return _ship_every_pair(run_out, tmp_path_factory, "structured")


def _run(folder: Path, script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=folder, capture_output=True, text=True, check=check)


def _raw(stdout: str) -> np.ndarray:
    return np.asarray([json.loads(line)["outputs"] for line in stdout.splitlines()], dtype=np.float32)


@pytest.mark.parametrize("name", SHIPPABLE)
def test_predict_py_reproduces_the_benchmark_session_bit_for_bit(bundles, run_out, name):
    folder, row = bundles[name]
    got = _raw(_run(folder, "predict.py", "--raw", *TEXTS).stdout)
    measured = open_session(row["runtime"], model_path(row, run_out), settings=row["session"]["settings"])
    step = json.loads((folder / "manifest.json").read_text())["inputs"]["texts_per_call"]
    assert step == (1 if name == "onnxruntime-int8-dynamic" else 32)  # as the quantize stage scored the held-out texts
    want = np.concatenate([measured.run(encode(folder, TEXTS[i : i + step])) for i in range(0, len(TEXTS), step)])
    assert want.dtype == np.float32 and got.shape == want.shape == (len(TEXTS), 2)
    assert np.array_equal(got, want)
    ref = json.loads((folder / "reference.json").read_text())
    assert ref["session"] == row["session"]["settings"]
    # reference.json (what verify reproduces) holds the outputs as predict.py makes them, texts_per_call texts a call
    assert np.array_equal(np.asarray(ref["expected"], dtype=np.float32), run_as_predict(measured, folder, ref["texts"], ref["pairs"]))
    assert np.array_equal(_raw(_run(folder, "predict.py", "--raw", *ref["texts"]).stdout), np.asarray(ref["expected"], dtype=np.float32))


@pytest.mark.parametrize("name", SHIPPABLE)
def test_a_pruned_students_bundle_runs_as_measured_and_verifies(pruned_bundles, run_out, name):
    from edgesmith.verify import verify

    folder, row = pruned_bundles[name]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["branch"] == "structured"
    measured = open_session(row["runtime"], model_path(row, run_out), settings=row["session"]["settings"])
    got = _raw(_run(folder, "predict.py", "--raw", *TEXTS).stdout)
    assert np.array_equal(got, run_as_predict(measured, folder, TEXTS))
    verify(folder)


@pytest.mark.parametrize("name", SHIPPABLE)
def test_manifest_session_is_what_the_bench_stage_recorded(bundles, name):
    folder, row = bundles[name]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["session"] == row["session"] == {"runtime": row["runtime"], "settings": session_settings(row["runtime"], 1)}
    assert manifest["inputs"]["text_pairs"] is False


def test_the_shipped_bundle_of_the_run_carries_its_rows_settings(run_out):
    manifest = json.loads((run_out / "08-bundle-all" / "edgesmith-all" / "manifest.json").read_text())
    rows = json.loads((run_out / "07-bench-all" / "manifest.json").read_text())["facts"]["rows"]
    assert manifest["session"] == next(r["session"] for r in rows if r["artifact"] == manifest["artifact"])
    assert next(r for r in rows if r["branch"] == "teacher")["session"] == {"runtime": "torch", "settings": {"num_threads": 1}}


@pytest.mark.parametrize("name", [n for n in SHIPPABLE if n.startswith("openvino")])
def test_openvino_bundle_runs_in_f32_at_latency_hint(bundles, name):
    folder, _ = bundles[name]
    done = json.loads(_run(folder, "-c", READBACK).stdout)
    assert done["readback"] == {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    override = json.loads(_run(folder, "-c", READBACK, "2").stdout)
    assert override["readback"] == done["readback"] | {"INFERENCE_NUM_THREADS": 2}


@pytest.mark.parametrize("name", [n for n in SHIPPABLE if n.startswith("onnxruntime")])
def test_onnxruntime_bundle_applies_every_recorded_option(bundles, name):
    folder, row = bundles[name]
    done = json.loads(_run(folder, "-c", READBACK).stdout)
    assert done["readback"] == row["session"]["settings"] == done["settings"]
    override = json.loads(_run(folder, "-c", READBACK, "2").stdout)
    assert override["readback"] == done["readback"] | {"intra_op_num_threads": 2}


def _edited(bundles, name: str, tmp_path: Path, change: Callable[[dict], object]) -> Path:
    """A copy of a bundle whose manifest.json went through change(manifest)."""
    folder = shutil.copytree(bundles[name][0], tmp_path / "b")
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _pairs(bundles, tmp_path: Path, text_pairs: bool) -> Path:
    return _edited(bundles, "onnxruntime-int8-dynamic", tmp_path, lambda m: m["inputs"].update(text_pairs=text_pairs))


@pytest.mark.parametrize("pair_bundle, args, fix", [
    (False, ["--pair", "a good movie", "an awful film"], "drop --pair"),
    (True, ["a good movie", "an awful film"], "pass --pair"),
    (True, ["--pair", "a good movie", "an awful film", "superb"], "add the missing second sentence"),
])
def test_pair_mismatch_is_a_usage_error(bundles, tmp_path, pair_bundle, args, fix):
    folder = _pairs(bundles, tmp_path, pair_bundle)
    done = _run(folder, "predict.py", *args, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("predict.py: error: ") and fix in done.stderr and done.stderr.count("\n") == 1


def test_text_that_is_not_utf8_is_a_usage_error(bundles):
    """A Latin-1 terminal passes b"caf\\xe9": Python keeps the byte as a lone surrogate, and the tokenizer had
    raised a TypeError traceback."""
    folder = bundles["onnxruntime-int8-dynamic"][0]
    done = subprocess.run([sys.executable, "predict.py", "a good movie", b"caf\xe9 good"], cwd=folder, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("predict.py: error: text 2 is not valid UTF-8")


def test_pair_bundle_predicts_each_pair_as_measured(bundles, run_out, tmp_path):
    folder = _pairs(bundles, tmp_path, True)
    done = _run(folder, "predict.py", "--pair", "--raw", "a good movie", "an awful film", "superb", "dull")
    assert [(json.loads(x)["text"], json.loads(x)["pair"]) for x in done.stdout.splitlines()] == [("a good movie", "an awful film"), ("superb", "dull")]
    row = bundles["onnxruntime-int8-dynamic"][1]
    measured = open_session(row["runtime"], model_path(row, run_out), settings=row["session"]["settings"])
    alone = [measured.run(encode(folder, [first], [second])) for first, second in (("a good movie", "an awful film"), ("superb", "dull"))]
    assert np.array_equal(_raw(done.stdout), np.concatenate(alone))  # dynamic INT8: one pair a call, as scored


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory, tiny_bert, tiny_profiles) -> Path:
    """A real sentence-pair classification run (premise, hypothesis, label): the pair is positive when both halves
    hold a positive word, so the tiny model has something to read across the [SEP]."""
    import random

    from conftest import sentence

    root = tmp_path_factory.mktemp("pairs")
    rng = random.Random(7)
    for name, n in (("train.tsv", 96), ("dev.tsv", 32)):
        rows = [(sentence(rng), sentence(rng)) for _ in range(n)]
        (root / name).write_text("premise\thypothesis\tlabel\n" + "".join(f"{a}\t{b}\t{la * lb}\n" for (a, la), (b, lb) in rows))
    (root / "recipe.yaml").write_text(RECIPE.format(model=tiny_bert, data=root, profile=tiny_profiles / "tiny-ort.yaml"))
    assert main(["run", str(root / "recipe.yaml"), "--out", str(root / "out")]) == 0
    return root / "out"


@pytest.mark.parametrize(("branch", "artifact"), [("unpruned", "onnxruntime-int8-dynamic"), ("structured", "onnxruntime-int8-static")])
def test_a_sentence_pair_bundle_is_built_verified_and_run_on_pairs(pair_run, tmp_path, branch, artifact):
    from edgesmith.verify import verify

    folder, row = ship(pair_run, "tiny-ort", branch, artifact, tmp_path)
    assert json.loads((folder / "manifest.json").read_text())["inputs"]["text_pairs"] is True
    ref = json.loads((folder / "reference.json").read_text())
    assert ref["pairs"] and len(ref["pairs"]) == len(ref["texts"])  # verify reproduces the pairs, not first sentences
    verify(folder)
    firsts, seconds = ["a good movie", TEXTS[2], "superb"], ["the plot was dull", "fine", TEXTS[3]]
    done = _run(folder, "predict.py", "--pair", "--raw", *[t for pair in zip(firsts, seconds) for t in pair])
    measured = open_session(row["runtime"], model_path(row, pair_run), settings=row["session"]["settings"])
    assert np.array_equal(_raw(done.stdout), run_as_predict(measured, folder, firsts, seconds))
    # a pair is cut to the bundle's max length (32 tokens) as a whole: only the third, 60 words long, is past it
    assert [json.loads(x).get("truncated", False) for x in done.stdout.splitlines()] == [False, False, True]


def test_gpu_bundle_on_a_cpu_falls_back_and_says_so(bundles, tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: no fallback to see")
    folder = _edited(bundles, "onnxruntime-fp16", tmp_path,
                     lambda m: m["session"]["settings"].update(providers=["CUDAExecutionProvider"]))
    done = _run(folder, "predict.py", "a good movie")
    assert len(done.stdout.splitlines()) == 1
    note = "note: execution providers ['CUDAExecutionProvider'] not all available here; running on ['CPUExecutionProvider']"
    assert note in done.stderr


def test_bench_py_opens_the_manifest_session(bundles):
    folder, row = bundles["openvino-int8-static"]
    out = json.loads(_run(folder, "bench.py", "--warmup", "1", "--iterations", "5").stdout)
    assert out["session"] == row["session"]["settings"] and out["p50_ms"] > 0
    # the profile's 16 tokens, and the bundle's max_length (32) as well: the length the p90 budget was held to
    assert out["seq"] == 16 and out["longest"]["seq"] == 32 and 0 < out["longest"]["p50_ms"] <= out["longest"]["p90_ms"]
    assert "longest" not in json.loads(_run(folder, "bench.py", "--seq", "24", "--warmup", "1", "--iterations", "5").stdout)
    assert "override only the thread count" in _run(folder, "bench.py", "--help").stdout
    assert "override only the thread count" in _run(folder, "predict.py", "--help").stdout
    assert not (folder / "__pycache__").exists()  # verify would refuse the unlisted .pyc


@pytest.mark.parametrize("script, args, says", [
    ("bench.py", ["--iterations", "0"], "--iterations: 0 is outside 1 to"),
    ("bench.py", ["--seq", "5000"], "--seq: 5000 is outside 1 to 32 (the longest input the bundle accepts)"),
    ("bench.py", ["--seq", "0"], "--seq: 0 is outside 1 to 32"),
    ("bench.py", ["--batch", "0"], "--batch: 0 is outside 1 to"),
    ("bench.py", ["--warmup", "-1"], "--warmup: -1 is outside 0 to"),
    ("predict.py", ["--threads", "100000", "a good movie"], "--threads: 100000 is outside 1 to"),
    ("predict.py", ["--threads", "-1", "a good movie"], "--threads: -1 is outside 1 to"),
    ("predict.py", ["--threads", "two", "a good movie"], "--threads: 'two' is not a whole number"),
])
def test_the_bundle_scripts_refuse_values_they_cannot_use(bundles, script, args, says):
    """--iterations 0 had raised an IndexError, --seq 5000 a runtime traceback, --batch 0 "succeeded" at 0
    sequences/s, --seq 0 measured the profile's length unasked, and --threads 100000 hung with 3.8 GB."""
    folder = bundles["onnxruntime-int8-dynamic"][0]
    done = _run(folder, script, *args, check=False)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    assert says in done.stderr.splitlines()[-1]


def test_bench_py_refuses_a_batch_the_device_memory_cannot_hold(bundles, tmp_path):
    """--batch 4096 at the bundle's longest input had run as asked, whatever the device's memory (red-team 7). The
    tiny model's config.json is given enough heads that 4096 texts of 32 tokens take this machine's whole memory."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    heads = memory // (4096 * 4 * 32 * 2 * 32) + 1
    folder = shutil.copytree(bundles["onnxruntime-fp32"][0], tmp_path / "b")
    config = json.loads((folder / "config.json").read_text()) | {"num_attention_heads": heads}
    (folder / "config.json").write_text(json.dumps(config))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["config.json"] = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    per_text = 4 * 32 * (2 * heads * 32 + 2 * config["intermediate_size"] + 6 * config["hidden_size"])
    assert 4096 * per_text > memory / 2 and 2 * per_text < memory / 2
    done = _run(folder, "bench.py", "--batch", "4096", check=False)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    fits = int(memory / 2 // per_text)
    assert done.stderr.splitlines()[-1] == (
        f"bench.py: error: --batch 4096 at 32 tokens needs about {4096 * per_text / 2**30:.1f} GiB for one call's "
        f"activations (estimated from config.json), more than half of this device's {memory / 2**30:.1f} GiB; use "
        f"--batch {fits} or less")
    ran = json.loads(_run(folder, "bench.py", "--batch", "2", "--warmup", "0", "--iterations", "2").stdout)
    assert ran["batch"] == 2 and ran["longest"]["seq"] == 32  # a batch that fits runs, at the longest input too


def test_bench_py_sizing_reads_distilbert_names_and_ignores_numbers_that_say_nothing():
    import importlib.util

    template = Path(__file__).resolve().parents[1] / "pipeline" / "bundle_templates" / "bench.py"
    spec = importlib.util.spec_from_file_location("bundle_bench", template)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bert = {"num_attention_heads": 12, "intermediate_size": 1536, "hidden_size": 384}
    distil = {"n_heads": 12, "hidden_dim": 1536, "dim": 384}  # DistilBERT's config.json names
    gib = 2**30
    assert bench.sizing_error(bert, 4096, 128, gib) == bench.sizing_error(distil, 4096, 128, gib) is not None
    assert bench.sizing_error(bert, 1, 128, 16 * gib) is None and bench.sizing_error(bert, 4096, 128, None) is None
    assert "even one text of this length does not fit" in bench.sizing_error(bert, 1, 128, 2**20)
    for odd in ({"num_attention_heads": -5}, {"num_attention_heads": 10**400}, {"num_attention_heads": "many"}, {}):
        assert bench.sizing_error(bert | odd if odd else {}, 4096, 128, gib) is None  # no traceback, no false claim


def test_bundle_io_runs_no_bundle_code(bundles, tmp_path):
    folder = shutil.copytree(bundles["openvino-fp32"][0], tmp_path / "b")
    for script in ("predict.py", "bench.py"):
        (folder / script).write_text(f"raise SystemExit('{script} must not run')\n")
    session = open_bundle_session(folder, threads=2)
    assert session.settings["config"]["INFERENCE_NUM_THREADS"] == 2
    assert session.run(encode(folder, TEXTS)).shape == (len(TEXTS), 2)


def test_bundle_io_applies_no_option_edgesmith_does_not_make(bundles, tmp_path):
    written = tmp_path / "written.onnx"  # what ONNX Runtime would write, were the option applied
    folder = _edited(bundles, "onnxruntime-fp32", tmp_path,
                     lambda m: m["session"]["settings"].update(optimized_model_filepath=str(written)))
    with pytest.raises(EdgesmithError, match="no session settings edgesmith makes .*; rebuild the bundle"):
        open_bundle_session(folder)
    assert not written.exists()


def test_predict_py_says_which_texts_it_cut_at_the_max_length(bundles):
    """A text past inputs.max_length is cut, as it was scored; its line says so and a note counts them (a tagger's
    entities past the cut had simply vanished, with nothing on stderr)."""
    folder = bundles["openvino-int8-static"][0]
    done = _run(folder, "predict.py", *TEXTS)
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [x.get("truncated", False) for x in lines] == [False, False, False, True]
    assert "note: 1 of 4 texts were longer than the bundle's 32 tokens and were cut there" in done.stderr


def test_predict_py_reads_texts_from_a_file_or_stdin(bundles, run_out, tmp_path):
    folder, row = bundles["onnxruntime-fp32"]
    (tmp_path / "texts.txt").write_text("\r\n".join(TEXTS[:3]) + "\r\n", encoding="utf-8")
    from_file = _raw(_run(folder, "predict.py", "--raw", "--file", str(tmp_path / "texts.txt")).stdout)
    from_stdin = subprocess.run([sys.executable, "predict.py", "--raw", "--file", "-"], cwd=folder, input="\n".join(TEXTS[:3]),
                                capture_output=True, text=True, check=True)
    measured = open_session(row["runtime"], model_path(row, run_out), settings=row["session"]["settings"])
    assert np.array_equal(from_file, measured.run(encode(folder, TEXTS[:3])))
    assert np.array_equal(_raw(from_stdin.stdout), from_file)
    (tmp_path / "empty.txt").write_text("")
    for args, says in [(["--file", str(tmp_path / "empty.txt")], "holds no texts"),
                       (["--file", str(tmp_path / "none.txt")], "pass a readable file, or - for stdin"),
                       (["--file", str(tmp_path / "texts.txt"), "a good movie"], "as arguments or with --file, one of the two")]:
        done = _run(folder, "predict.py", *args, check=False)
        assert done.returncode == 2 and done.stdout == "" and says in done.stderr and "Traceback" not in done.stderr


def test_predict_py_reads_pairs_from_a_file_one_tab_each(bundles, tmp_path):
    folder = _pairs(bundles, tmp_path, True)
    (tmp_path / "pairs.tsv").write_text("a good movie\tan awful film\nsuperb\tdull\n")
    by_file = _run(folder, "predict.py", "--pair", "--raw", "--file", str(tmp_path / "pairs.tsv")).stdout
    assert by_file == _run(folder, "predict.py", "--pair", "--raw", "a good movie", "an awful film", "superb", "dull").stdout
    (tmp_path / "pairs.tsv").write_text("a good movie\tan awful film\nsuperb\n")
    done = _run(folder, "predict.py", "--pair", "--file", str(tmp_path / "pairs.tsv"), check=False)
    assert done.returncode == 2 and "line 2 is not FIRST<TAB>SECOND" in done.stderr


@pytest.mark.parametrize("damage, says", [
    (lambda f: (f / "model.onnx").write_bytes((f / "model.onnx").read_bytes()[:-100]), "'model.onnx' does not match its sha256"),
    (lambda f: (f / "tokenizer.json").unlink(), "'tokenizer.json' is missing"),
    (lambda f: (f / "manifest.json").write_text("{"), "manifest.json is unreadable"),
    (lambda f: (f / "manifest.json").unlink(), "manifest.json is unreadable"),
])
@pytest.mark.parametrize("script", ["predict.py", "bench.py"])
def test_the_bundle_scripts_stop_in_one_line_on_a_damaged_copy(bundles, tmp_path, damage, says, script):
    """A partial copy or a swapped file had run (a cut model gave an INVALID_PROTOBUF traceback, a missing manifest a
    FileNotFoundError one): every listed file is checked against its sha256 before anything runs."""
    folder = shutil.copytree(bundles["onnxruntime-fp32"][0], tmp_path / "b")
    damage(folder)
    done = _run(folder, script, *(["a good movie"] if script == "predict.py" else []), check=False)
    assert done.returncode == 1 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and says in done.stderr and "re-copy the bundle" in done.stderr


@pytest.mark.parametrize("name, change", [
    ("onnxruntime-fp32", lambda s: s.update(enable_profiling=True)),
    ("openvino-fp32", lambda s: s["config"].update(CACHE_DIR="cache")),
])
def test_the_bundle_scripts_apply_no_setting_edgesmith_does_not_make(bundles, tmp_path, name, change):
    """An edited manifest's extra session option (profiling files, OpenVINO's model cache) had been applied on the
    device, writing files where predict.py ran."""
    folder = _edited(bundles, name, tmp_path, lambda m: change(m["session"]["settings"]))
    done = _run(folder, "predict.py", "a good movie", check=False)
    assert done.returncode == 1 and done.stdout == "" and "are not ones edgesmith makes" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in bundles[name][0].iterdir())


def test_predict_py_runs_isolated_and_names_a_missing_package(bundles):
    folder = bundles["onnxruntime-fp32"][0]
    assert len(_run(folder, "-I", "predict.py", "a good movie").stdout.splitlines()) == 1
    hide = ("import runpy, sys; sys.modules['onnxruntime'] = None; sys.argv = ['predict.py', 'a good movie']; "
            "runpy.run_path('predict.py', run_name='__main__')")
    done = _run(folder, "-c", hide, check=False)
    assert done.returncode == 1 and "needs the Python package 'onnxruntime': pip install onnxruntime" in done.stderr
    assert "Traceback" not in done.stderr


def test_predict_py_takes_utf8_under_an_ascii_locale_and_stops_quietly_on_a_closed_pipe(bundles):
    folder = bundles["onnxruntime-fp32"][0]
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    done = subprocess.run([sys.executable, "predict.py", "café".encode()], cwd=folder, env=env, capture_output=True, check=True)
    assert json.loads(done.stdout)["text"] == "café"
    reader = subprocess.Popen([sys.executable, "predict.py", *["a good movie"] * 3000], cwd=folder,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.readline()
    reader.stdout.close()  # `| head -1`
    assert b"Traceback" not in reader.stderr.read() and reader.wait() != 0


def test_a_dynamic_int8_texts_answer_does_not_depend_on_the_texts_beside_it(bundles):
    """ONNX Runtime's dynamic INT8 takes one scale over the whole padded batch: run 32 a call, a text's logits had
    moved by up to 1.8e-4 with its company, and its scored accuracy was that of batches of 32. It runs alone now,
    in the quantize stage's scoring and in predict.py."""
    folder = bundles["onnxruntime-int8-dynamic"][0]
    alone = _raw(_run(folder, "predict.py", "--raw", TEXTS[1]).stdout)
    among = _raw(_run(folder, "predict.py", "--raw", *TEXTS).stdout)
    assert np.array_equal(alone[0], among[1])


def test_the_quantize_stage_scores_dynamic_int8_one_text_per_call(monkeypatch):
    """The accuracy the bundle stage judges is scored as the bundle's predict.py runs each precision."""
    from edgesmith.stages import quantize

    seen = []
    monkeypatch.setattr(quantize, "open_session", lambda *a, **k: object())
    monkeypatch.setattr(quantize, "outputs", lambda session, rows, tokenizer, n, task, per_call: seen.append(per_call))
    monkeypatch.setattr(quantize, "quality", lambda *a: {"metric": 1.0})
    cfg = quantize.QuantizeStageConfig(candidates=(), calibration_samples=1, fidelity_samples=0, task="classification", max_length=8)
    for runtime, precision in [("onnxruntime", "int8-dynamic"), ("onnxruntime", "int8-static"), ("openvino", "int8-static")]:
        quantize._quality(runtime, precision, Path("model"), [], None, cfg, np.zeros(1), [])
    assert seen == [1, 32, 32]


def test_predictor_predict_runs_as_predict_py_does(bundles):
    """Code that imports Predictor (as bench.py does) gets the texts_per_call runs too."""
    folder = bundles["onnxruntime-int8-dynamic"][0]
    script = "import json, sys\nfrom predict import Predictor\nprint(json.dumps(Predictor().predict(sys.argv[1:]).tolist()))"
    got = np.asarray(json.loads(_run(folder, "-c", script, *TEXTS).stdout), dtype=np.float32)
    assert np.array_equal(got, _raw(_run(folder, "predict.py", "--raw", *TEXTS).stdout))


@pytest.mark.parametrize("name", ["onnxruntime-fp32", "openvino-fp32"])
def test_a_thread_count_recorded_on_a_bigger_machine_is_clamped_with_a_note(bundles, tmp_path, name):
    """A mobile-cpu bundle (4 threads) on a 2-core board: more threads than cores only wait on each other, as the
    bench stage's own clamp says; predict.py had applied the recorded count as it was."""
    cores = os.cpu_count() or 1
    key = (lambda s: s["config"]) if name.startswith("openvino") else (lambda s: s)
    thread_key = "INFERENCE_NUM_THREADS" if name.startswith("openvino") else "intra_op_num_threads"
    folder = _edited(bundles, name, tmp_path, lambda m: key(m["session"]["settings"]).update({thread_key: cores + 6}))
    done = _run(folder, "-c", READBACK)
    assert f"note: {cores + 6} threads recorded, {cores} cores here; running on {cores}" in done.stderr
    assert key(json.loads(done.stdout)["settings"])[thread_key] == cores
