"""Bundles load with the tools users already have, and give the outputs predict.py gives: Optimum's ORTModel*/OVModel*
classes and transformers pipelines (classification, token classification), sentence-transformers' onnx and
openvino backends (embeddings). One tiny run per task; every library opens the bundle's own, measured model file,
and the bundle still verifies afterwards (none of them wrote into it)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import WORDS, make_model_dir, sentence, ship
from edgesmith.artifacts import sha256_file
from edgesmith.bundle_io import encode
from edgesmith.cli import main
from edgesmith.errors import EdgesmithError
from edgesmith.verify import verify

# The special token in the second text is read as that token on every side (README, "On the device")
TEXTS = ["a good movie", "the plot was dull [SEP] but the actor is great", "not quite lovely", "bad"]
NER_TEXTS = ["the good  movie was dull", "a superb happy film and a story", "plot"]
ATOL = 1e-4  # same graph and runtime, another session (threads, graph options): float sums in another order

RECIPE = """
name: tiny-{task}
task: {task}
teacher: {{model: {model}}}
data: {{source: {data}, max_length: 32}}
prune:
  branches: [structured]
  structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}
distill: {{max_steps: 2, batch_size: 8}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5, eval_samples: 16}}
profiles: [{profiles}]
"""


# What each profile's tests load, shipped whatever the run's timing chose: a pruned student run one text a call,
# and the teacher's own OpenVINO INT8 build.
SHIPS = {"tiny-ort": ("structured", "onnxruntime-int8-dynamic"), "tiny-ov": ("unpruned", "openvino-int8-static")}


def _run(root: Path, task: str, model: Path, data: Path, *profiles: Path) -> Path:
    recipe = root / f"{task}.yaml"
    recipe.write_text(RECIPE.format(task=task, model=model, data=data, profiles=", ".join(map(str, profiles))))
    assert main(["run", str(recipe), "--out", str(root / "out")]) == 0
    for profile in profiles:
        ship(root / "out", profile.stem, *SHIPS[profile.stem], root / "shipped" / profile.stem)
    return root / "out"


def _bundle(out: Path, profile: str) -> Path:
    return out.parent / "shipped" / profile / f"edgesmith-{profile}"


@pytest.fixture(scope="module")
def classification(tmp_path_factory, tiny_bert, tiny_data, tiny_profiles) -> Path:
    return _run(tmp_path_factory.mktemp("cls"), "classification", tiny_bert, tiny_data,
                tiny_profiles / "tiny-ort.yaml", tiny_profiles / "tiny-ov.yaml")


@pytest.fixture(scope="module")
def token_classification(tmp_path_factory, tiny_profiles) -> Path:
    root = tmp_path_factory.mktemp("ner")
    rng = random.Random(4)
    rows = []
    for _ in range(64):  # positive words are POS entities, film/movie THING: something for the tiny tagger to learn
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
        tags = ["B-POS" if w in {"good", "great", "happy"} else "B-THING" if w in {"film", "movie"} else "O" for w in words]
        rows.append(json.dumps({"tokens": words, "ner_tags": tags}))
    (root / "ner.jsonl").write_text("\n".join(rows) + "\n")
    model = make_model_dir(root / "bare", task="embedding")  # a bare encoder: the teacher stage fine-tunes a tagger
    return _run(root, "token-classification", model, root / "ner.jsonl",
                tiny_profiles / "tiny-ort.yaml", tiny_profiles / "tiny-ov.yaml")


@pytest.fixture(scope="module")
def embedding(tmp_path_factory, tiny_profiles) -> Path:
    root = tmp_path_factory.mktemp("emb")
    for name, seed, n in (("train", 1, 48), ("dev", 2, 24)):
        rng = random.Random(seed)
        (root / f"{name}.tsv").write_text("sentence\n" + "".join(sentence(rng)[0] + "\n" for _ in range(n)))
    model = make_model_dir(root / "model", task="embedding")
    return _run(root, "embedding", model, root, tiny_profiles / "tiny-ort.yaml", tiny_profiles / "tiny-ov.yaml")


def predict(bundle: Path, texts: list[str], raw: bool = False) -> list[dict]:
    """The bundle's own predict.py, in its folder, as a user runs it."""
    done = subprocess.run([sys.executable, "predict.py", *(["--raw"] if raw else []), *texts], cwd=bundle,
                          capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def raw(bundle: Path, texts: list[str]) -> np.ndarray:
    return np.asarray([line["outputs"] for line in predict(bundle, texts, raw=True)], dtype=np.float32)


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---- classification -----------------------------------------------------------------------------------------------

def _check_classifier(bundle: Path, model) -> None:
    from transformers import AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(bundle)
    assert tokenizer(TEXTS[1])["input_ids"].count(tokenizer.sep_token_id) == 2
    assert list(encode(bundle, [TEXTS[1]])["input_ids"][0]).count(tokenizer.sep_token_id) == 2  # predict.py's tokenizer
    # one text a call on the library's side: predict.py runs a dynamic INT8 bundle so (texts_per_call), and batch
    # composition moves its logits by up to ~2e-4; other precisions give the same either way
    logits = np.concatenate([model(**tokenizer([text], return_tensors="pt")).logits.numpy() for text in TEXTS])
    expected = raw(bundle, TEXTS)
    np.testing.assert_allclose(logits, expected, atol=ATOL)
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    labels = manifest(bundle)["labels"]
    # the pipeline runs one text at a time, unpadded; so does this side (dynamic INT8 scales span the padded batch)
    alone = [(predict(bundle, [text])[0], softmax(raw(bundle, [text])[0])) for text in TEXTS]
    for got, (want, probs) in zip(classify(TEXTS, top_k=None), alone):
        assert got[0]["label"] == want["label"]  # top_k=None: best first
        assert {g["label"]: g["score"] for g in got} == pytest.approx(dict(zip(labels, probs.tolist())), abs=1e-5)
    # past the max length (32 tokens) and the model's 64 positions: the README's truncation=True cuts where predict.py
    # does (without it the pipeline fed the whole text, and the runtime failed past the positions)
    long = " ".join(["really good"] * 40)
    (got,), want = classify([long], truncation=True, top_k=None), predict(bundle, [long])[0]
    assert want["truncated"] and got[0]["label"] == want["label"]
    assert {g["label"]: g["score"] for g in got} == pytest.approx(dict(zip(labels, softmax(raw(bundle, [long])[0]).tolist())), abs=1e-5)


def test_classification_bundle_files_carry_the_names_and_labels_the_libraries_read(classification):
    from transformers import AutoConfig

    for profile, model_files in (("tiny-ort", {"model.onnx"}), ("tiny-ov", {"openvino_model.xml", "openvino_model.bin"})):
        bundle = _bundle(classification, profile)
        m = manifest(bundle)
        assert model_files <= set(m["files"]) and m["model_file"] in model_files and "config.json" in m["files"]
        config = AutoConfig.from_pretrained(bundle)  # metadata only: the graph holds the pruned per-layer shapes
        assert config.id2label == dict(enumerate(m["labels"])) and config.label2id == {n: i for i, n in enumerate(m["labels"])}
        assert json.loads((bundle / "tokenizer_config.json").read_text())["model_max_length"] == m["inputs"]["max_length"]


def test_classification_onnx_bundle_loads_with_optimum_and_runs_in_a_pipeline(classification):
    from optimum.onnxruntime import ORTModelForSequenceClassification

    bundle = _bundle(classification, "tiny-ort")
    _check_classifier(bundle, ORTModelForSequenceClassification.from_pretrained(bundle))


def test_classification_openvino_bundle_loads_with_optimum_intel_and_runs_in_a_pipeline(classification):
    from optimum.intel import OVModelForSequenceClassification

    bundle = _bundle(classification, "tiny-ov")
    config = manifest(bundle)["session"]["settings"]["config"]  # as measured: f32, also on a bf16 CPU
    _check_classifier(bundle, OVModelForSequenceClassification.from_pretrained(bundle, ov_config=config))


# ---- token classification -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["tiny-ort", "tiny-ov"])
def test_token_classification_bundle_loads_with_optimum_and_finds_predict_pys_entities(token_classification, profile):
    from optimum.intel import OVModelForTokenClassification
    from optimum.onnxruntime import ORTModelForTokenClassification
    from transformers import AutoTokenizer, pipeline

    bundle = _bundle(token_classification, profile)
    if profile == "tiny-ort":
        model = ORTModelForTokenClassification.from_pretrained(bundle)
    else:
        model = OVModelForTokenClassification.from_pretrained(bundle, ov_config=manifest(bundle)["session"]["settings"]["config"])
    tokenizer = AutoTokenizer.from_pretrained(bundle)
    for text in NER_TEXTS:  # one text a call on both sides (dynamic INT8: predict.py's texts_per_call); [tokens, tags]
        logits = model(**tokenizer([text], return_tensors="pt")).logits.numpy()[0]
        np.testing.assert_allclose(logits, np.asarray(predict(bundle, [text], raw=True)[0]["outputs"], dtype=np.float32), atol=ATOL)
    # run together, each text's raw rows are still its own tokens, not the padding of the longest
    assert [len(x["outputs"]) for x in predict(bundle, NER_TEXTS, raw=True)] == [len(tokenizer(t)["input_ids"]) for t in NER_TEXTS]
    # aggregation "first": a word takes its first sub-token's tag, as predict.py's words do
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first")
    found = 0
    # one text per call on both sides: the pipeline never pads, and ONNX Runtime's dynamic INT8 takes each activation's
    # scale over the whole batch, padding included, so a padded batch moves scores by up to ~5e-4 (CI saw 4e-4)
    for got, want in zip(tagger(NER_TEXTS), [predict(bundle, [text])[0] for text in NER_TEXTS]):
        spans = [(e["type"], e["start"], e["end"]) for e in want["entities"]]
        assert [(g["entity_group"], g["start"], g["end"]) for g in got] == spans
        assert [g["score"] for g in got] == pytest.approx([e["score"] for e in want["entities"]], abs=1e-4)
        found += len(got)
    assert found, "the tiny tagger found no entity: nothing was compared"


# ---- sentence embeddings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile, backend", [("tiny-ort", "onnx"), ("tiny-ov", "openvino")])
def test_embedding_bundle_loads_with_sentence_transformers_and_encodes_as_predict_and_verify_do(embedding, profile, backend):
    from sentence_transformers import SentenceTransformer

    bundle = _bundle(embedding, profile)
    settings = manifest(bundle)["session"]["settings"]
    kwargs = {"ov_config": settings["config"]} if backend == "openvino" else {}  # OpenVINO as measured: f32
    model = SentenceTransformer(str(bundle), backend=backend, device="cpu", model_kwargs=kwargs)
    assert model.get_sentence_embedding_dimension() == 32 and model.max_seq_length == manifest(bundle)["inputs"]["max_length"]
    # batch_size=1: as predict.py runs a dynamic INT8 bundle (texts_per_call); other precisions give the same either way
    np.testing.assert_allclose(model.encode(TEXTS, batch_size=1), raw(bundle, TEXTS), atol=ATOL)
    reference = json.loads((bundle / "reference.json").read_text())  # what verify reproduces
    np.testing.assert_allclose(model.encode(reference["texts"], batch_size=1), np.asarray(reference["expected"]), atol=ATOL)


def test_the_embedding_graph_outputs_token_states_first_and_edgesmith_reads_the_pooled_one(embedding):
    import onnxruntime as ort

    bundle = _bundle(embedding, "tiny-ort")
    outputs = [o.name for o in ort.InferenceSession(str(bundle / "model.onnx")).get_outputs()]
    assert outputs == ["last_hidden_state", "sentence_embedding"] and manifest(bundle)["output"] == "sentence_embedding"
    assert np.allclose(np.linalg.norm(raw(bundle, TEXTS), axis=-1), 1, atol=1e-5)  # predict.py: pooled, normalised
    modules = json.loads((bundle / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]


# ---- after every library: the bundles are untouched and verify; verify refuses edited metadata --------------------

def test_every_bundle_still_verifies_after_the_libraries_loaded_it(classification, token_classification, embedding):
    bundles = [_bundle(classification, "tiny-ort"), _bundle(classification, "tiny-ov"),
               _bundle(token_classification, "tiny-ort"), _bundle(token_classification, "tiny-ov"),
               _bundle(embedding, "tiny-ort"), _bundle(embedding, "tiny-ov")]
    for bundle in bundles:
        checks = verify(bundle)  # refuses any file the manifest does not list: nothing was written into the bundle
        assert any("config.json" in line and "what edgesmith writes" in line for line in checks)


def _edited(bundle: Path, tmp_path: Path, name: str, edit) -> Path:
    """A copy of `bundle` with `name` edited and every hash recorded again, as someone covering their tracks would."""
    copy = Path(shutil.copytree(bundle, tmp_path / bundle.name))
    (copy / name).write_text(json.dumps(edit(json.loads((copy / name).read_text())), indent=2, sort_keys=True) + "\n")
    m = manifest(copy)
    m["files"] = {f: sha256_file(copy / f) for f in m["files"]}
    (copy / "manifest.json").write_text(json.dumps(m))
    return copy


def test_verify_refuses_metadata_edgesmith_did_not_write(embedding, classification, tmp_path):
    def other_module(modules: list) -> list:  # sentence-transformers would import this class
        return [*modules[:2], {**modules[2], "type": "some_package.Module"}]

    with pytest.raises(EdgesmithError, match="modules.json differs from what edgesmith writes"):
        verify(_edited(_bundle(embedding, "tiny-ort"), tmp_path / "a", "modules.json", other_module))
    with pytest.raises(EdgesmithError, match="config.json differs"):  # a pipeline would print other label names
        verify(_edited(_bundle(classification, "tiny-ort"), tmp_path / "b", "config.json",
                       lambda c: c | {"id2label": {"0": "spam", "1": "ham"}}))
    with pytest.raises(EdgesmithError, match="auto_map"):
        verify(_edited(_bundle(classification, "tiny-ort"), tmp_path / "c", "config.json", lambda c: c | {"auto_map": {}}))
