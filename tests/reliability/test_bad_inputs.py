"""Bad input, refused before any work: exit status 2, one line on stderr naming the problem (and the line, label or
weight at fault), no traceback, and no run folder left behind. Each case builds its bad input in tmp_path from the
tiny models and data of tests/conftest.py and runs the real console entry point."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgesmith.artifacts import sha256_file
from conftest import make_model_dir, tiny_config, write_tsv, write_vocab
from harness import assert_refused, edgesmith, short_profile, tree, write_recipe  # noqa: F401  (short_profile: a fixture)

# model, data; optionally data_keys (more keys of the recipe's data mapping), extra (recipe YAML), args (CLI flags)
Setup = dict[str, Any]


def data_folder(tmp: Path, train: str | None = None) -> Path:
    """Valid tiny task data (train 40 rows, dev 20), or with train.tsv replaced by `train`."""
    folder = tmp / "data"
    folder.mkdir()
    write_tsv(folder / "train.tsv", 40, seed=1)
    write_tsv(folder / "dev.tsv", 20, seed=2)
    if train is not None:
        (folder / "train.tsv").write_text(train)
    return folder


def one_file(tmp: Path, name: str, text: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def jsonl(bad_line: str, at: int) -> str:
    """JSON Lines with `bad_line` as line number `at` (1-based) among good rows."""
    lines = [json.dumps({"text": f"good film {i}", "label": i % 2}) for i in range(40)]
    lines.insert(at - 1, bad_line)
    return "\n".join(lines) + "\n"


def model_copy(tmp: Path, model: Path, config: dict[str, Any] | str | None = None) -> Path:
    """A copy of the tiny model; `config` updates config.json (a dict) or replaces its text (a str)."""
    folder = tmp / "model"
    shutil.copytree(model, folder)
    if isinstance(config, str):
        (folder / "config.json").write_text(config)
    elif config:
        (folder / "config.json").write_text(json.dumps(json.loads((folder / "config.json").read_text()) | config))
    return folder


def damaged_weights(tmp: Path, model: Path, damage: Callable[[bytes], bytes]) -> Path:
    folder = model_copy(tmp, model)
    weights = folder / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    return folder


def pickled(tmp: Path, state: Any) -> Path:
    """A model folder whose only weights are `state` in pytorch_model.bin."""
    import torch

    folder = make_model_dir(tmp / "pickled", task="embedding")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


class Payload:
    """Unpickling this would create the file `marker`: weights_only must refuse it before that happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.marker), "w")


def malicious_pickle(tmp: Path, model: Path) -> Setup:
    return {"model": pickled(tmp, {"weight": Payload(tmp / "pwned")}), "data": data_folder(tmp), "args": ["--allow-pickle"]}


def truncated_pickle(tmp: Path, model: Path) -> Setup:
    folder = pickled(tmp, {})
    blob = folder / "pytorch_model.bin"
    blob.write_bytes(blob.read_bytes()[:40])
    return {"model": folder, "data": data_folder(tmp), "args": ["--allow-pickle"]}


def pickle_with_foreign_layers(tmp: Path, model: Path) -> Setup:
    """A bare-encoder pickle whose second layer is named as another model's would name it."""
    from safetensors.torch import load_file

    encoder = make_model_dir(tmp / "enc", task="embedding")
    state = load_file(str(encoder / "model.safetensors"))
    state = {k.replace("encoder.layer.1.", "encoder.block.1."): v for k, v in state.items()}
    return {"model": pickled(tmp, state), "data": data_folder(tmp), "args": ["--allow-pickle"]}


def three_label_model(tmp: Path, model: Path) -> Setup:
    from transformers import AutoModelForSequenceClassification, BertTokenizerFast

    folder = tmp / "three"
    AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=3)).save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(write_vocab(folder))).save_pretrained(folder)
    return {"model": folder, "data": data_folder(tmp)}


def relabelled(tmp: Path, names: tuple[str, str]) -> Path:
    """The tiny data with labels 0/1 written as names[0]/names[1]."""
    folder = data_folder(tmp)
    for f in folder.iterdir():
        header, *rows = f.read_text().splitlines()
        f.write_text("\n".join([header] + [f"{r.rsplit(chr(9), 1)[0]}\t{names[int(r[-1])]}" for r in rows]) + "\n")
    return folder


def dev_only(tmp: Path) -> Path:
    folder = tmp / "dev-only"
    folder.mkdir()
    write_tsv(folder / "dev.tsv", 20, seed=2)
    return folder


UNLABELLED_TRAIN = "sentence\n" + "a good film\nthe plot was dull\n" * 20


def same(extra: str = "", args: tuple[str, ...] = ()) -> Callable[[Path, Path], Setup]:
    """The good tiny model and data, with recipe YAML `extra` and CLI `args`."""
    return lambda tmp, model: {"model": model, "data": data_folder(tmp), "extra": extra, "args": list(args)}


def keep(structured: str) -> Callable[[Path, Path], Setup]:
    return same(f"prune: {{structured: {{{structured}}}}}\n")


def bad_profile(yaml_text: str) -> Callable[[Path, Path], Setup]:
    """The good model and data, run for a profile written from `yaml_text`."""
    def build(tmp: Path, model: Path) -> Setup:
        (tmp / "prof.yaml").write_text(yaml_text)
        return {"model": model, "data": data_folder(tmp), "args": ["--profile", str(tmp / "prof.yaml")]}
    return build


def bad_data(make: Callable[[Path], Path], extra: str = "", data_keys: str = "") -> Callable[[Path, Path], Setup]:
    return lambda tmp, model: {"model": model, "data": make(tmp), "extra": extra, "data_keys": data_keys}


def bad_file(name: str, text: str | bytes) -> Callable[[Path, Path], Setup]:
    return bad_data(lambda tmp: one_file(tmp, name, text))


def bad_train(text: str, extra: str = "") -> Callable[[Path, Path], Setup]:
    return bad_data(lambda tmp: data_folder(tmp, text), extra)


def bad_unlabeled(name: str, text: str | None) -> Callable[[Path, Path], Setup]:
    """Good data with `data.unlabeled` naming the file `name` holding `text` (None: no such file)."""
    def build(tmp: Path, model: Path) -> Setup:
        path = tmp / name if text is None else one_file(tmp, name, text)
        return {"model": model, "data": data_folder(tmp), "data_keys": f"unlabeled: '{path}'"}
    return build


def bad_model(make: Callable[[Path, Path], Path]) -> Callable[[Path, Path], Setup]:
    return lambda tmp, model: {"model": make(tmp, model), "data": data_folder(tmp)}


def bad_config(config: dict[str, Any] | str) -> Callable[[Path, Path], Setup]:
    return bad_model(lambda tmp, model: model_copy(tmp, model, config))


def bad_weights(damage: Callable[[bytes], bytes]) -> Callable[[Path, Path], Setup]:
    return bad_model(lambda tmp, model: damaged_weights(tmp, model, damage))


def swapped_names_model(tmp: Path, model: Path) -> Setup:
    names = {"id2label": {"0": "positive", "1": "negative"}, "label2id": {"positive": 0, "negative": 1}}
    return {"model": model_copy(tmp, model, names), "data": relabelled(tmp, ("bad", "good"))}


def latin1_profile(tmp: Path, model: Path) -> Setup:
    (tmp / "prof.yaml").write_bytes("# mon téléphone\ndescription: p\nruntimes: {onnxruntime: [fp32]}\nthreads: 1\n"
                                    "seq_len: 16\n".encode("latin-1"))
    return {"model": model, "data": data_folder(tmp), "args": ["--profile", str(tmp / "prof.yaml")]}


MIXED_SPELLINGS = "".join(json.dumps({"text": f"good film {i}", "label": [0, 1, 0.0, 1.0][i % 4]}) + "\n" for i in range(40))


def spelled(*labels: str) -> str:
    """JSON Lines whose labels take each of `labels` in turn, two spellings of one label among them."""
    return "".join(json.dumps({"text": f"good film {i}", "label": labels[i % len(labels)]}) + "\n" for i in range(40))


def bare_encoder_unlabelled_train(tmp: Path, model: Path) -> Setup:
    return {"model": make_model_dir(tmp / "enc", task="embedding"), "data": data_folder(tmp, UNLABELLED_TRAIN)}


CASES: dict[str, tuple[tuple[str, ...], Callable[[Path, Path], Setup]]] = {
    # the model folder and its checkpoint
    "config-not-json": (("config.json", "not valid JSON"), bad_config("{not json")),
    "config-not-an-object": (("config.json", "not a JSON object"), bad_config("[1, 2]")),
    "unknown-model-type": (("'toaster'", "not a supported"), bad_config({"model_type": "toaster"})),
    "truncated-safetensors": (("model.safetensors", "truncated or corrupt"), bad_weights(lambda b: b[: len(b) // 2])),
    "junk-safetensors": (("model.safetensors", "truncated or corrupt"), bad_weights(lambda b: b"not a checkpoint" * 4)),
    "malicious-pickle": (("pytorch_model.bin", "weights_only"), malicious_pickle),
    "truncated-pickle": (("pytorch_model.bin", "truncated or corrupt"), truncated_pickle),
    "pickle-encoder-keys-do-not-fit": (("lacks", "encoder weights", "bert.encoder.layer.1"), pickle_with_foreign_layers),
    "checkpoint-deeper-than-config": (("encoder weights that config.json does not describe", "layer.1"),
                                      bad_config({"num_hidden_layers": 1})),
    "checkpoint-shapes-unlike-config": (("shaped unlike config.json",), bad_config({"intermediate_size": 48})),
    # labels against the teacher's head
    "head-label-count": (("3 labels", "has 2", "reinit_head"), three_label_model),
    "label-names-the-head-lacks": (("['bad', 'good']", "['positive', 'negative']"), swapped_names_model),
    "labels-1-2-against-LABEL_i": (("['1', '2']", "['LABEL_0', 'LABEL_1']"), bad_data(lambda t: relabelled(t, ("1", "2")))),
    "one-class": (("every row has the label '1'", "two classes"), bad_file("d.tsv", "sentence\tlabel\n" + "a film\t1\n" * 40)),
    "new-head-without-labels": (("untrained", "no labels"), bare_encoder_unlabelled_train),
    "labels-one-number-written-two-ways": (("'0' and '0.0'", "one number written two ways"), bad_file("d.jsonl", MIXED_SPELLINGS)),
    # red-team 6: these had become classes of their own, silently (a bare encoder numbers the data's labels)
    "labels-differing-only-in-case": (("'Good' and 'good'", "differ only in case"), bad_file("d.jsonl", spelled("good", "Good"))),
    "labels-nfc-and-nfd": (("'cafe\\u0301' and 'caf\\xe9'", "accent encoding"), bad_file("d.jsonl", spelled("caf\u00e9", "cafe\u0301"))),
    "labels-with-a-zero-width-space": (("'good' and 'go\\u200bod'", "invisible characters"),
                                       bad_file("d.jsonl", spelled("good", "go\u200bod"))),
    "labels-that-are-scores": (("'label'", "fractional numbers (0.4, 1.6", "scores, not classes", "task: embedding"),
                               bad_data(lambda t: relabelled(t, ("0.4", "1.6")))),
    "label-weight-without-labels": (("label_weight",), bad_train(UNLABELLED_TRAIN, "distill: {label_weight: 0.5}\n")),
    # the data files
    "jsonl-array-line": (("line 4", "an array, not an object"), bad_file("d.jsonl", jsonl("[1, 2]", 4))),
    "jsonl-string-line": (("line 2", "a string, not an object"), bad_file("d.jsonl", jsonl('"x"', 2))),
    "jsonl-broken-line": (("line 7", "not valid JSON"), bad_file("d.jsonl", jsonl('{"text": oops}', 7))),
    "jsonl-label-not-a-value": (("label [1]", "not a string or a number"),
                                bad_file("d.jsonl", jsonl('{"text": "a film", "label": [1]}', 3))),
    # JSON NaN (what json.dumps writes for a pandas blank) had become a third class "nan", in the bundle's labels
    "jsonl-label-nan": (("label nan", "not a class", "missing value"), bad_file("d.jsonl", jsonl('{"text": "a film", "label": NaN}', 3))),
    "jsonl-label-infinity": (("label -inf", "not a class"), bad_file("d.jsonl", jsonl('{"text": "a film", "label": -Infinity}', 5))),
    "jsonl-lone-surrogate": (("line 6", "lone surrogate"), bad_file("d.jsonl", jsonl('{"text": "a \\ud800 film", "label": 1}', 6))),
    "csv-ragged-row": (("line 5 has 3 fields", "header has 2"),
                       bad_file("d.csv", "text,label\n" + "a film,1\n" * 3 + "a film,0,extra\n" + "b,0\n" * 40)),
    "tsv-missing-field": (("train.tsv: line 3 has 1 fields",), bad_train("sentence\tlabel\na good film\t1\nno label field\n")),
    "not-utf8": (("not UTF-8", "0xe9"), bad_file("d.tsv", b"sentence\tlabel\n" + b"caf\xe9 film\t1\nbad\t0\n" * 20)),
    "column-named-twice": (("'sentence' twice",), bad_file("d.tsv", "sentence\tsentence\tlabel\n" + "a film\tb\t1\nc\td\t0\n" * 20)),
    "max-length-beyond-the-models-positions": (("data.max_length 256", "64 positions"),
                                               bad_data(data_folder, data_keys="max_length: 256")),
    "folder-without-train-file": (("no train file",), bad_data(dev_only)),
    "one-data-row": (("1 data row", "too few for a held-out split"), bad_file("d.tsv", "sentence\tlabel\na good film\t1\n")),
    "empty-file": (("no rows",), bad_file("d.tsv", "")),
    "label-column-missing": (("no values in the label column 'stars'",), bad_data(data_folder, data_keys="label_column: stars")),
    "some-labels-empty": (("(train)", "1 of 40 rows have no label"),
                          bad_train("sentence\tlabel\n" + "a good film\t1\nbad\t0\n" * 19 + "dull\t1\nno label\t\n")),
    "too-few-held-out-rows": (("1 held-out row", "fewer than 2"), same(args=("--max-eval-samples", "1"))),
    "unlabeled-file-missing": (("data.unlabeled", "more.txt not found"), bad_unlabeled("more.txt", None)),
    "unlabeled-text-column-missing": (("data.unlabeled", "no column 'sentence'", "rename its columns"),
                                      bad_unlabeled("more.tsv", "review\na good film\n")),
    # structured keep ratios
    "keep-ratio-not-whole": (("keep_heads", "1.5", "neither a share"), keep("keep_heads: 1.5")),
    "keep-more-heads-than-the-model-has": (("keep_heads", "100", "model's 8"), keep("keep_heads: 100")),
    "keep-more-ffn-than-the-model-has": (("keep_ffn", "model's 128"), keep("keep_ffn: 1000")),
    "keep-more-layers-than-the-model-has-with-a-fit-profile": (("keep_layers", "model's 2"),
                                                               keep("keep_layers: 5, fit_profile: embedded")),
    "fit-speedup-without-a-fit-profile": (("fit_speedup needs fit_profile",), keep("fit_speedup: 3")),
    "fit-speedup-infinite": (("fit_speedup", "finite number"), keep("fit_speedup: .inf, fit_profile: embedded")),
    "keep-heads-infinite": (("keep_heads", "finite number"), keep("keep_heads: .inf")),
    "fit-speedup-below-one": (("fit_speedup", "greater than or equal to 1"), keep("fit_speedup: 0.5, fit_profile: embedded")),
    "layers-beyond-the-model": (("layers", "numbered 0 to 1"), keep("layers: [0, 2]")),
    "layers-listed-twice": (("layers", "each kept layer once"), keep("layers: [1, 1]")),
    "layers-negative": (("layers", "each kept layer once"), keep("layers: [-1]")),
    "layers-a-boolean": (("layers", "valid integer"), keep("layers: [true]")),
    "layers-and-keep-layers": (("set the depth once",), keep("layers: [0], keep_layers: 0.5")),
    "layers-keeping-everything": (("nothing would be pruned",), keep("layers: [1, 0], keep_heads: 1.0, keep_ffn: 1.0")),
    "keep-everything": (("nothing would be pruned",), keep("keep_heads: 1.0, keep_ffn: 1.0")),
    "keep-every-head-and-neuron-by-count": (("nothing would be pruned",), keep("keep_heads: 8, keep_ffn: 128")),
    # the recipe and profile files themselves
    "epochs-infinite": (("distill.epochs", "finite number"), same("distill: {epochs: .inf}\n")),
    "recipe-key-given-twice": (("'distill' is given twice", "merge the two"),
                               same("distill: {epochs: 2, learning_rate: 0.5}\ndistill: {max_steps: 1}\n")),
    "profile-not-utf8": (("prof.yaml", "not UTF-8", "0xe9"), latin1_profile),
    # recipe against profile
    "profile-runtime-not-exported": (("export.formats", "['openvino']"),
                                     same("export: {formats: [onnx]}\n", args=("--profile", "embedded"))),
    "profile-batch-beyond-any-device": (("batch", "4096"),
                                        bad_profile("description: p\nruntimes: {onnxruntime: [fp32]}\nthreads: 1\nbatch: 2000000\nseq_len: 16\n")),
    "openvino-int8-dynamic-would-be-static": (("int8-dynamic", "int8-static"),
                                              bad_profile("description: p\nruntimes: {openvino: [int8-dynamic]}\nthreads: 1\nseq_len: 16\n")),
    "profile-name-leaves-the-run-folder": (("not a safe name",),
                                           bad_profile("name: ../../x\ndescription: p\nruntimes: {onnxruntime: [fp32]}\nthreads: 1\nseq_len: 16\n")),
    "recipe-name-leaves-the-run-folder": (("not a safe name",), lambda tmp, model: same()(tmp, model) | {"name": "../victim"}),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A finished tiny run: the folder a bad rerun must leave exactly as it was."""
    root = tmp_path_factory.mktemp("finished")
    profile = root / "short.yaml"
    profile.write_text("description: short\nruntimes: {onnxruntime: [int8-dynamic]}\nthreads: 1\nseq_len: 16\n")
    recipe = write_recipe(root, tiny_bert, data_folder(root), profile,
                          "distill: {max_steps: 2, batch_size: 8}\nbench: {warmup: 1, iterations: 5}\n"
                          "prune: {structured: {importance_samples: 16, ffn_multiple_of: 8}}\n")
    done = edgesmith("run", recipe, "--out", root / "run")
    assert done.code == 0, done.stderr
    return root / "run"


def digests(folder: Path) -> dict[str, str]:
    return {name: sha256_file(folder / name) for name in tree(folder)}


@pytest.mark.parametrize("mode", ["fresh", "rerun"])
@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_refused_before_any_work(name: str, mode: str, tmp_path: Path, tiny_bert: Path,
                                              short_profile: Path, request: pytest.FixtureRequest) -> None:  # noqa: F811
    """fresh: no run folder is left behind; rerun: a finished run folder is left byte for byte as it was."""
    needles, build = CASES[name]
    setup = build(tmp_path, tiny_bert)
    recipe = write_recipe(tmp_path, setup["model"], setup["data"], short_profile, setup.get("extra", ""), setup.get("name", "tiny"))
    if setup.get("data_keys"):
        source = f"source: '{setup['data']}'"
        recipe.write_text(recipe.read_text().replace(source, f"{source}, {setup['data_keys']}"))
    out = tmp_path / "out"
    if mode == "rerun":
        shutil.copytree(request.getfixturevalue("finished_run"), out)
    before, existed = digests(out), out.exists()
    assert_refused(edgesmith("run", recipe, "--out", out, *setup.get("args", [])), *needles)
    assert digests(out) == before and (mode == "rerun" or before == {})
    assert out.exists() == existed  # fresh: not even an empty folder (digests lists files only)
    assert not (tmp_path / "pwned").exists()  # the malicious pickle ran nothing
