"""Every runtime in edgesmith.runtimes.RUNTIMES, through the one interface: what it declares, its settings, its
FP32 conversion and every precision it declares built from a tiny random BERT and run against PyTorch, and its
bundle-side module run standalone. Profiles are checked against the declared precisions when they load, and no
module outside pipeline/runtimes/ tells runtimes apart by name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesmith import profiles
from edgesmith.bundle_code import generate
from edgesmith.errors import EdgesmithError
from edgesmith.runtimes import REFERENCE, RUNTIMES, Runtime, get

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [(r, p) for r, rt in RUNTIMES.items() for p in rt.precisions]
KNOWN_PRECISIONS = sorted({p for rt in RUNTIMES.values() for p in rt.precisions})
UNDECLARED = [(r, p) for r, rt in RUNTIMES.items() for p in KNOWN_PRECISIONS if p not in rt.precisions]
FP32_ATOL = 1e-3  # fusions reorder float sums (the export stage's classification tolerance)
# Run inside a folder holding only edgesmith_runtime.py, the model and feed.npz: the bundle's opener on its own.
STANDALONE = """
import json, sys
import numpy as np
from edgesmith_runtime import open_model
handle, run, names, settings = open_model(sys.argv[1], json.loads(sys.argv[2]))
feed = dict(np.load("feed.npz"))
np.save("out.npy", run(feed))
print(json.dumps({"names": names, "settings": settings, "edgesmith": "edgesmith" in sys.modules, "torch": "torch" in sys.modules}))
"""


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """The tiny BERT saved as edgesmith saves a teacher (with its shape plan): what the PyTorch reference opens."""
    from edgesmith.modeling import load_pretrained, load_tokenizer, save_model

    folder = tmp_path_factory.mktemp("teacher") / "model"
    save_model(load_pretrained(tiny_bert, "classification", "safetensors")[0], load_tokenizer(tiny_bert), folder, "classification")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, teacher: Path) -> dict:
    """The tiny BERT as raw ONNX, a feed [2, 12], its PyTorch FP32 outputs and calibration feeds."""
    from edgesmith.exporters.onnx import export_onnx
    from edgesmith.modeling import load_model
    from edgesmith.runtimes import input_names_for

    folder = tmp_path_factory.mktemp("exported")
    names = input_names_for(teacher)
    export_onnx(load_model(teacher, attn="eager"), "classification", names, folder / "model.raw.onnx", opset=17)
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(5, 2000, size=(2, 12)), "attention_mask": np.ones((2, 12), np.int64),
            "token_type_ids": np.zeros((2, 12), np.int64)}
    feed = {n: feed[n].astype(np.int64) for n in names}
    calibration = [{n: v[:1] for n, v in feed.items()} for _ in range(8)]
    reference = REFERENCE.open(teacher, REFERENCE.settings(1)).run(feed)
    return {"onnx": folder / "model.raw.onnx", "feed": feed, "reference": reference, "calibration": calibration}


@pytest.fixture(scope="module")
def converted(exported: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each runtime's FP32 model, converted from the raw ONNX."""
    out = {}
    for name, rt in RUNTIMES.items():
        folder = tmp_path_factory.mktemp(f"fp32-{name}")
        out[name], _ = rt.convert(exported["onnx"], folder)
    return out


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_declares_what_profiles_and_bundles_read(name: str) -> None:
    rt = get(name)
    assert isinstance(rt, Runtime) and rt.name == name
    assert rt.precisions and "fp32" in rt.precisions and len(set(rt.precisions)) == len(rt.precisions)
    assert "cpu" in rt.devices and rt.export_format and rt.modules
    assert rt.open_model in rt.bundle_functions  # the opener edgesmith calls is the one bundles carry


@pytest.mark.parametrize("name", RUNTIMES)
def test_settings_are_json_made_here_and_threads_change_nothing_else(name: str) -> None:
    rt = get(name)
    settings = rt.settings(3)
    assert json.loads(json.dumps(settings)) == settings and rt.made_here(settings)
    assert rt.with_threads(settings, 5) == rt.settings(5) and rt.with_threads(settings, None) == settings
    assert settings == rt.settings(3)  # with_threads copied, never changed its argument
    assert not rt.made_here(settings | {"optimized_model_filepath": "x.onnx"}) and not rt.made_here(None)
    # a thread count that is not a whole number from 1 to 1024 (True == 1 and 1.0 == 1 in Python) is not edgesmith's
    assert not any(rt.made_here(rt.settings(n)) for n in (0, -1, 1.0, True, "2", 100000, None))


@pytest.mark.parametrize("name", RUNTIMES)
def test_fp32_conversion_matches_pytorch_through_both_openers(name: str, exported: dict, converted: dict[str, Path]) -> None:
    rt = get(name)
    path = converted[name]
    assert all(f.is_file() for f in rt.files(path)) and rt.bytes(path) == sum(f.stat().st_size for f in rt.files(path))
    session = rt.open(path, rt.settings(1))
    got = session.run(exported["feed"])
    assert got.dtype == np.float32 and got.shape == exported["reference"].shape
    assert np.abs(got - exported["reference"]).max() < FP32_ATOL
    assert sorted(session.input_names) == sorted(exported["feed"]) and session.settings == rt.settings(1)
    bundle_side = rt.open_bundle(path, rt.settings(2), threads=1)
    assert bundle_side.settings == rt.settings(1) and np.array_equal(bundle_side.run(exported["feed"]), got)


@pytest.mark.parametrize("name", RUNTIMES)
def test_generated_module_runs_without_edgesmith_and_gives_the_same_bits(name: str, exported: dict, converted: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    rt = get(name)
    (module,) = generate([("edgesmith_runtime.py", rt.bundle_functions)]).values()
    assert generate([("edgesmith_runtime.py", rt.bundle_functions)])["edgesmith_runtime.py"] == module  # same bytes each time
    assert _imports(module) <= {"__future__", "copy", "os", "sys", "numpy", *rt.modules}  # the standard library, numpy, the runtime
    (tmp_path / "edgesmith_runtime.py").write_bytes(module)
    for f in rt.files(converted[name]):
        (tmp_path / f"model{f.suffix}").write_bytes(f.read_bytes())
    np.savez(tmp_path / "feed.npz", **exported["feed"])
    done = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, '.'); " + STANDALONE,
                           f"model{converted[name].suffix}", json.dumps(rt.settings(1))],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["settings"] == rt.settings(1) and not report["edgesmith"] and not report["torch"]
    assert np.array_equal(np.load(tmp_path / "out.npy"), rt.open(converted[name], rt.settings(1)).run(exported["feed"]))


@pytest.mark.parametrize("name, precision", PAIRS)
def test_every_declared_precision_builds_and_runs(name: str, precision: str, exported: dict, converted: dict[str, Path],
                                                  tmp_path: Path) -> None:
    rt = get(name)
    path = rt.quantize(precision, converted[name], tmp_path, exported["calibration"], exported=exported["onnx"])
    assert path.is_file() and path.is_relative_to(tmp_path) and rt.bytes(path) > 0
    got = rt.open(path, rt.settings(1)).run(exported["feed"])
    assert got.dtype == np.float32 and got.shape == exported["reference"].shape and np.isfinite(got).all()
    if precision == "fp32":
        assert np.abs(got - exported["reference"]).max() < FP32_ATOL
    else:  # reduced precision moves the outputs, not into others: cosine to PyTorch's, flattened (OpenVINO INT8 of the
        # tiny random model: 0.95 on an Intel Xeon with AVX-512; garbage would be near 0)
        ref = exported["reference"].ravel()
        cosine = float(got.ravel() @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))
        assert cosine > (0.999 if precision == "fp16" else 0.8), f"{name} {precision}: cosine {cosine:.4f} to PyTorch's outputs"


def test_onnxruntime_static_int8_quantizes_every_weight_matrix_and_the_activations(exported: dict, converted: dict[str, Path],
                                                                                    tmp_path: Path, monkeypatch) -> None:
    """On the fused graph the QDQ quantizer skipped the fused Attention/EmbedLayerNormalization weights and, past
    SkipLayerNormalization, every activation: a mostly-FP32 file slower than FP32. It must quantize the plain graph."""
    import onnx
    from onnx import numpy_helper

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # ORT's symbolic shape inference leaves temp files in the working directory: not used
    out = tmp_path / "out"
    out.mkdir()
    path = get("onnxruntime").quantize("int8-static", converted["onnxruntime"], out, exported["calibration"],
                                       exported=exported["onnx"])
    assert not list(cwd.iterdir()) and [p.name for p in out.iterdir()] == [path.name]
    model = onnx.load(str(path))
    float_matrices = {t.name for t in model.graph.initializer
                      if t.data_type == onnx.TensorProto.FLOAT and numpy_helper.to_array(t).ndim == 2}
    unquantized = [i for n in model.graph.node if n.op_type in ("MatMul", "Gather") for i in n.input if i in float_matrices]
    assert not unquantized, f"FP32 weights feed MatMul/Gather directly: {unquantized}"  # (the Gemm head stays FP32)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= ops.count("MatMul") > 0  # every MatMul's activation input is quantized


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_cpu_profile_has_its_hardware_here(name: str) -> None:
    cpu = profiles.load("mobile-cpu").model_copy(update={"runtimes": {name: ("fp32",)}})
    assert get(name).hardware_gap(cpu) is None


def test_the_pytorch_reference_opens_a_model_folder(teacher: Path, exported: dict) -> None:
    assert REFERENCE.name not in RUNTIMES and get(REFERENCE.name) is REFERENCE  # measured, never a profile runtime
    assert REFERENCE.settings(2) == {"num_threads": 2} and REFERENCE.made_here({"num_threads": 4})
    assert [f.suffix for f in REFERENCE.files(teacher)] == [".safetensors"]
    assert exported["reference"].shape == (2, 2) and exported["reference"].dtype == np.float32


def test_an_unknown_runtime_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(EdgesmithError) as err:
        get("tflite")
    assert "'tflite'" in str(err.value) and all(n in str(err.value) for n in RUNTIMES) and "\n" not in str(err.value)


def _profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"description: p\nthreads: 1\nseq_len: 16\n{body}")
    return path


@pytest.mark.parametrize("name, precision", UNDECLARED)
def test_a_precision_the_runtime_does_not_declare_is_refused_at_load(name: str, precision: str, tmp_path: Path) -> None:
    with pytest.raises(EdgesmithError, match=f"runtimes: .*{name} has no {precision}; it builds {', '.join(RUNTIMES[name].precisions)}") as err:
        profiles.load(str(_profile(tmp_path, f"runtimes: {{{name}: [{precision}]}}\n")))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("body, words", [
    ("runtimes: {tflite: [fp32]}\n", ("unknown runtime 'tflite'", *RUNTIMES)),
    ("runtimes: {onnxruntime: [int3]}\n", ("unknown precision 'int3'", *KNOWN_PRECISIONS)),
    ("device: cuda\nruntimes: {openvino: [fp32]}\n", ("openvino does not run on device 'cuda'",)),
])
def test_a_profile_naming_what_no_runtime_declares_is_refused_at_load(body: str, words: tuple[str, ...], tmp_path: Path) -> None:
    with pytest.raises(EdgesmithError) as err:
        profiles.load(str(_profile(tmp_path, body)))
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


# --- no runtime-name comparisons outside pipeline/runtimes/ ------------------------------------------------------

NAMES = {*RUNTIMES, REFERENCE.name, ".xml", ".bin", ".onnx"}  # runtime names and model-file suffixes


def runtime_name_tests(source: str) -> list[str]:
    """Places in `source` that tell runtimes apart by a literal name or model-file suffix: a comparison or `in`
    test against one, startswith/endswith on one, or a dict literal keyed by runtime names (a dispatch table)."""
    def literal(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and node.value in NAMES:
            return node.value
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return next(filter(None, map(literal, node.elts)), None)
        return None

    found = []
    for node in ast.walk(ast.parse(source)):
        hit = None
        if isinstance(node, ast.Compare):
            hit = next(filter(None, map(literal, [node.left, *node.comparators])), None)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("startswith", "endswith"):
            hit = next(filter(None, map(literal, node.args)), None)
        elif isinstance(node, ast.Dict):
            hit = next((k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in RUNTIMES), None)
        elif isinstance(node, ast.MatchValue):
            hit = literal(node.value)
        if hit:
            found.append(f"line {node.lineno}: {hit!r}")
    return found


def test_the_name_scan_sees_each_kind_of_comparison() -> None:
    snippets = ['x == "openvino"', 'if "openvino" in formats: pass', 'p.suffix == ".xml"', 'k in ("torch", "onnxruntime")',
                'name.startswith("openvino")', '{"onnxruntime": 1, "openvino": 2}[kind]',
                'match k:\n    case "openvino": pass']
    assert all(runtime_name_tests(s) for s in snippets)
    assert not runtime_name_tests('formats = ("onnx", "openvino")\nfor pkg in ("torch", "onnxruntime"): pass\nRUNTIMES["openvino"]')


def test_no_module_outside_runtimes_compares_runtime_names() -> None:
    files = [p for folder in ("pipeline", "exporters") for p in sorted((ROOT / folder).rglob("*.py"))
             if (ROOT / "pipeline" / "runtimes") not in p.parents]
    assert len(files) > 20
    offenders = {str(p.relative_to(ROOT)): hits for p in files if (hits := runtime_name_tests(p.read_text()))}
    assert not offenders, f"runtime names compared outside pipeline/runtimes/ (ask edgesmith.runtimes instead): {offenders}"


def _imports(source: bytes) -> set[str]:
    tree = ast.parse(source)
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_openvino_int8_ships_the_nncf_setting_closest_to_fp32_on_held_rows(exported: dict, converted: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """Both NNCF settings are built; the one kept is the one nearer FP32 on the held rows, byte for byte what that
    setting builds on its own, and the other leaves nothing behind in the run folder."""
    from edgesmith.runtimes import Held
    from edgesmith.runtimes.openvino import held_outputs, nncf_int8, nncf_settings

    rng = np.random.default_rng(1)
    held = Held([{n: rng.integers(5, 2000, size=(1, 9)).astype(np.int64) if n == "input_ids" else v[:, :9]
                  for n, v in exported["feed"].items()} for _ in range(6)], None)
    out = tmp_path / "out"
    out.mkdir()
    path, facts = get("openvino").quantize_choosing("int8-static", converted["openvino"], out, exported["calibration"],
                                                    exported["onnx"], held)
    chosen = facts["quantizer"]
    assert facts["widened_intervals"] == chosen["widened_intervals"][chosen["setting"]]  # the shipped model's count
    distances = chosen["mean_abs_diff_vs_fp32"]
    assert set(distances) == set(nncf_settings()) and chosen["held_rows"] == 6
    assert chosen["setting"] == min(distances, key=distances.__getitem__)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        ["openvino-int8-static", "openvino-int8-static/model.bin", "openvino-int8-static/model.xml"]
    reference = held_outputs(converted["openvino"], held)
    assert float(np.mean(np.abs(held_outputs(path, held) - reference))) == pytest.approx(distances[chosen["setting"]], rel=1e-6)
    alone = nncf_int8(converted["openvino"], tmp_path / "alone" / "model.xml", exported["calibration"], chosen["setting"])
    assert alone.read_bytes() == path.read_bytes() and alone.with_suffix(".bin").read_bytes() == path.with_suffix(".bin").read_bytes()


@pytest.mark.parametrize("name", RUNTIMES)
def test_without_held_rows_every_runtime_quantizes_its_one_default_way(name: str, exported: dict, converted: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    from edgesmith.runtimes import Held

    rt = get(name)
    for i, held in enumerate((None, Held([], None))):
        out = tmp_path / str(i)
        out.mkdir()
        path, facts = rt.quantize_choosing("int8-static", converted[name], out, exported["calibration"], exported["onnx"], held)
        assert "quantizer" not in facts and path.is_file() and path.is_relative_to(out)
        # OpenVINO says how many activation intervals it widened (balance_activation_ranges); nothing else is chosen
        assert set(facts) == ({"widened_intervals"} if name == "openvino" else set())
