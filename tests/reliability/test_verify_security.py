"""`edgesmith verify` is a security boundary: a bundle is untrusted data. Verify never runs the bundle's code,
refuses files its manifest does not list, links, paths that leave the bundle and malformed archives or
manifests (each with one line, exit 2), and with `--key` proves the bundle is the one that was built and signed.

One signed tiny bundle is built per module; each test tampers with its own copy."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgesmith.artifacts import sha256_file
from edgesmith.cli import main
from harness import assert_refused, edgesmith

RECIPE = """name: tiny
task: classification
teacher: {{model: '{model}'}}
data: {{source: '{data}', max_length: 32}}
prune: {{branches: [structured], structured: {{keep_heads: 0.5, keep_ffn: 0.5, importance_samples: 16, ffn_multiple_of: 8}}}}
distill: {{max_steps: 2, batch_size: 8}}
quantize: {{calibration_samples: 8, accuracy_budget: 100}}
bench: {{warmup: 1, iterations: 5}}
profiles: ['{profile}']
"""


@dataclass(frozen=True)
class Built:
    folder: Path  # the signed bundle folder
    recipe: Path
    key: Path
    pub: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, tiny_data: Path, tiny_profiles: Path) -> Built:
    root = tmp_path_factory.mktemp("signed")
    assert main(["keygen", str(root / "builder")]) == 0
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=tiny_bert, data=tiny_data, profile=tiny_profiles / "tiny-ort.yaml"))
    assert main(["run", str(recipe), "--out", str(root / "out"), "--sign", str(root / "builder.key")]) == 0
    return Built(root / "out" / "08-bundle-tiny-ort" / "edgesmith-tiny-ort", recipe, root / "builder.key", root / "builder.pub")


@pytest.fixture()
def bundle(built: Built, tmp_path: Path) -> Path:
    """This test's own copy of the signed bundle, to tamper with."""
    return Path(shutil.copytree(built.folder, tmp_path / built.folder.name))


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def rehash(folder: Path, *added: str) -> None:
    """Record the current sha256 of every listed file (and of `added`), as someone covering their tracks would."""
    manifest = manifest_of(folder)
    for name in [*manifest["files"], *added]:
        manifest["files"][name] = sha256_file(folder / name)
    write_manifest(folder, manifest)


def evil_code(marker: Path) -> str:
    """Python that leaves `marker` behind when imported: proof that verify ran it."""
    return f"from pathlib import Path\nPath({str(marker)!r}).write_text('verify ran bundle code')\n"


def entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", data: bytes = b"") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar_of(folder: Path, path: Path, *extra: tuple[tarfile.TarInfo, bytes]) -> Path:
    """The bundle as edgesmith archives it, plus `extra` entries."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def test_clean_verify_names_every_file_and_hash_it_checked(built: Built) -> None:
    done = edgesmith("verify", built.folder)
    assert done.code == 0, done.stderr
    for name, digest in manifest_of(built.folder)["files"].items():
        assert f"sha256 {digest} {name}" in done.stdout
    assert "byte-identical" in done.stdout and "signed, not checked (pass --key" in done.stdout


def test_good_signature_passes_for_the_folder_and_the_archive(built: Built) -> None:
    for path in (built.folder, built.folder.parent / f"{built.folder.name}.tar.gz"):
        done = edgesmith("verify", path, "--key", built.pub)
        assert done.code == 0, done.stderr
        assert "signature: valid" in done.stdout


def test_a_new_key_rebuilds_only_the_bundle_and_no_manifest_holds_the_private_key(built: Built, tmp_path: Path, capsys) -> None:
    out = Path(shutil.copytree(built.folder.parents[1], tmp_path / "out"))
    assert main(["keygen", str(tmp_path / "new")]) == 0
    assert main(["run", str(built.recipe), "--out", str(out), "--sign", str(tmp_path / "new.key")]) == 0
    err = capsys.readouterr().err
    assert "[07-bench-tiny-ort] skipped" in err and "[08-bundle-tiny-ort] running" in err
    assert edgesmith("verify", out / "08-bundle-tiny-ort" / built.folder.name, "--key", tmp_path / "new.pub").code == 0
    private_body = "".join((tmp_path / "new.key").read_text().splitlines()[1:-1])
    for manifest in out.rglob("manifest.json"):
        assert private_body not in manifest.read_text().replace("\n", "")
    signing = json.loads((out / "08-bundle-tiny-ort" / "manifest.json").read_text())["config"]["signing"]
    assert set(signing) == {"path", "public_key"} and len(signing["public_key"]) == 64


def test_unsigned_bundle_passes_without_key_and_says_unsigned(bundle: Path) -> None:
    (bundle / "manifest.sig").unlink()
    done = edgesmith("verify", bundle)
    assert done.code == 0, done.stderr
    assert "signature: unsigned" in done.stdout


def test_key_given_but_bundle_unsigned(bundle: Path, built: Built) -> None:
    (bundle / "manifest.sig").unlink()
    assert_refused(edgesmith("verify", bundle, "--key", built.pub), "unsigned", "--key")


def test_wrong_key(bundle: Path, tmp_path: Path) -> None:
    assert edgesmith("keygen", tmp_path / "stranger").code == 0
    assert_refused(edgesmith("verify", bundle, "--key", tmp_path / "stranger.pub"), "signed by key", "stranger.pub")


def test_edited_manifest_fails_the_signature(bundle: Path, built: Built) -> None:
    manifest = manifest_of(bundle)
    manifest["metrics"]["quality"]["metric"] = 0.999
    write_manifest(bundle, manifest)
    assert_refused(edgesmith("verify", bundle, "--key", built.pub), "signature does not match manifest.json")


def test_tampered_predict_py_is_refused_and_never_runs(bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (bundle / "predict.py").write_text(evil_code(marker) + (bundle / "predict.py").read_text())
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "predict.py", "template", "tampered")
    assert_refused(edgesmith("verify", tar_of(bundle, tmp_path / "evil.tar.gz")), "predict.py", "template")
    assert not marker.exists()


def test_tampered_generated_runtime_module_is_refused_and_never_runs(bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    module = bundle / "edgesmith_runtime.py"  # predict.py imports it: generated for the manifest's runtime
    module.write_text(module.read_text() + evil_code(marker))
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "edgesmith_runtime.py", "generated onnxruntime module", "tampered")
    assert not marker.exists()


def test_another_runtimes_generated_module_is_refused(bundle: Path) -> None:
    from edgesmith.bundle_code import generate
    from edgesmith.runtimes import RUNTIMES

    other = generate([("edgesmith_runtime.py", RUNTIMES["openvino"].bundle_functions)])["edgesmith_runtime.py"]  # genuine, not this bundle's
    (bundle / "edgesmith_runtime.py").write_bytes(other)
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "edgesmith_runtime.py", "differs", "generated onnxruntime module")


def test_unknown_runtime_in_manifest_is_refused(bundle: Path) -> None:
    manifest = manifest_of(bundle)
    manifest["session"]["runtime"] = "tflite"
    write_manifest(bundle, manifest)
    assert_refused(edgesmith("verify", bundle), "runtime 'tflite'", "onnxruntime", "tampered")


def test_unlisted_file_is_refused_and_listed_code_too(bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (bundle / "tokenizers.py").write_text(evil_code(marker))  # predict.py's `import tokenizers` would load it
    assert_refused(edgesmith("verify", bundle), "tokenizers.py", "not listed")
    rehash(bundle, "tokenizers.py")
    assert_refused(edgesmith("verify", bundle), "tokenizers.py", "is code")
    assert not marker.exists()


def test_missing_file(bundle: Path) -> None:
    (bundle / "labels.json").unlink()
    assert_refused(edgesmith("verify", bundle), "labels.json is missing")
    (bundle / "reference.json").unlink()
    manifest = manifest_of(bundle)
    for name in ("labels.json", "reference.json"):
        del manifest["files"][name]
    write_manifest(bundle, manifest)
    assert_refused(edgesmith("verify", bundle), "does not list reference.json")


def test_swapped_model_is_caught_by_reference_outputs_and_by_signature(bundle: Path, built: Built) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(bundle / "model.onnx")
    bias = next(t for t in model.graph.initializer if t.name.endswith("classifier.bias"))
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.array([1, -1], np.float32), bias.name))
    onnx.save(model, bundle / "model.onnx")  # a valid model, not the one built
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "outputs differ from those recorded", "model file")
    assert_refused(edgesmith("verify", bundle, "--key", built.pub), "signature does not match")


def test_a_model_that_disagrees_with_pytorch_is_refused(bundle: Path) -> None:
    """Check 8: outputs that reproduce the build but not the PyTorch student (a build that put the wrong model in)."""
    ref = json.loads((bundle / "reference.json").read_text())
    ref["pytorch"] = [row[::-1] for row in ref["pytorch"]]  # every class flipped: what another head would say
    (bundle / "reference.json").write_text(json.dumps(ref))
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "0% class agreement with PyTorch", "too far from PyTorch")


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_manifest_paths_outside_the_bundle_are_never_read(bundle: Path, tmp_path: Path, where: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of any bundle")
    name = f"../{secret.name}" if where == "relative" else str(secret)
    manifest = manifest_of(bundle)
    manifest["files"][name] = sha256_file(secret)  # the right hash: only the path gives it away
    write_manifest(bundle, manifest)
    assert_refused(edgesmith("verify", bundle), "outside the bundle")


def test_links_in_a_bundle_folder(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "labels-outside.json"
    shutil.move(bundle / "labels.json", outside)
    (bundle / "labels.json").symlink_to(outside)  # same content, so its hash matches
    assert_refused(edgesmith("verify", bundle), "labels.json", "symbolic link")
    (bundle / "labels.json").unlink()
    os.link(outside, bundle / "labels.json")
    assert_refused(edgesmith("verify", bundle), "labels.json", "hard link")
    (bundle / "labels.json").unlink()
    shutil.copy(outside, bundle / "labels.json")
    (bundle / "up").symlink_to(tmp_path, target_is_directory=True)
    assert_refused(edgesmith("verify", bundle), "up", "symbolic link")


def test_archive_path_traversal(bundle: Path, tmp_path: Path) -> None:
    up = tar_of(bundle, tmp_path / "up.tar.gz", entry(f"{bundle.name}/../../evil.txt", data=b"x"))
    assert_refused(edgesmith("verify", up), "evil.txt", "leaves the bundle folder")
    target = tmp_path / "absolute-evil.txt"
    absolute = tar_of(bundle, tmp_path / "abs.tar.gz", entry(str(target), data=b"x"))
    assert_refused(edgesmith("verify", absolute), "absolute-evil.txt", "leaves the bundle folder")
    assert not target.exists()


def test_archive_symlinks(bundle: Path, tmp_path: Path) -> None:
    out = tar_of(bundle, tmp_path / "out.tar.gz", entry(f"{bundle.name}/passwd", tarfile.SYMTYPE, "/etc/passwd"))
    assert_refused(edgesmith("verify", out), "passwd", "is a link")
    inside = tar_of(bundle, tmp_path / "in.tar.gz", entry(f"{bundle.name}/labels2.json", tarfile.SYMTYPE, "labels.json"))
    assert_refused(edgesmith("verify", inside), "labels2.json", "is a link")


def test_archive_hardlink(bundle: Path, tmp_path: Path) -> None:
    hard = tar_of(bundle, tmp_path / "hard.tar.gz", entry(f"{bundle.name}/copy.json", tarfile.LNKTYPE, f"{bundle.name}/labels.json"))
    assert_refused(edgesmith("verify", hard), "copy.json", "is a link")


def test_archive_with_two_top_level_entries(bundle: Path, tmp_path: Path) -> None:
    stray = tar_of(bundle, tmp_path / "stray.tar.gz", entry("notes.txt", data=b"hello"))
    assert_refused(edgesmith("verify", stray), "2 top-level entries")
    twice = tmp_path / "twice.tar.gz"
    with tarfile.open(twice, "w:gz") as tar:
        tar.add(bundle, arcname="a")
        tar.add(bundle, arcname="b")
    assert_refused(edgesmith("verify", twice), "2 top-level entries")


def test_empty_non_gzip_and_truncated_archives(bundle: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar.gz"
    tarfile.open(empty, "w:gz").close()
    assert_refused(edgesmith("verify", empty), "empty")
    whole = tar_of(bundle, tmp_path / "whole.tar.gz").read_bytes()
    for name, data in (("text.tar.gz", b"not an archive\n"), ("zero.tar.gz", b""), ("garbage.tar.gz", gzip.compress(b"garbage" * 99)),
                       ("truncated.tar.gz", whole[: len(whole) // 2])):
        (tmp_path / name).write_bytes(data)
        assert_refused(edgesmith("verify", tmp_path / name), name, "not a readable .tar.gz")


@pytest.mark.parametrize("text", ["{not json", "\udcff", "[1, 2]", '{"task": "classification"}', '{"files": ["model.onnx"]}'])
def test_malformed_manifest(bundle: Path, text: str) -> None:
    (bundle / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    needle = "not valid JSON" if text in ("{not json", "\udcff") else "no `files` table"
    assert_refused(edgesmith("verify", bundle), "manifest.json", needle)


def test_session_settings_from_the_manifest_are_edgesmiths_own(bundle: Path, tmp_path: Path) -> None:
    written = tmp_path / "written-by-verify.onnx"
    manifest = manifest_of(bundle)
    manifest["session"]["settings"]["optimized_model_filepath"] = str(written)  # ONNX Runtime would write there
    write_manifest(bundle, manifest)
    assert_refused(edgesmith("verify", bundle), "session settings")
    assert not written.exists()


def test_bad_key_files_are_one_line(bundle: Path, built: Built, tmp_path: Path) -> None:
    assert_refused(edgesmith("verify", bundle, "--key", built.key), "builder.key", "not a PEM public key")
    assert_refused(edgesmith("verify", bundle, "--key", tmp_path / "nope.pub"), "nope.pub", "no such key file")
    out = tmp_path / "run"
    assert_refused(edgesmith("run", built.recipe, "--out", out, "--sign", built.pub), "builder.pub", "not an unencrypted PEM private key")
    assert not out.exists()


def test_keygen_writes_an_owner_only_private_key_and_never_overwrites(tmp_path: Path) -> None:
    assert edgesmith("keygen", tmp_path / "k").code == 0
    private = tmp_path / "k.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and b"PRIVATE KEY" in private.read_bytes()
    assert b"PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    before = private.read_bytes()
    assert_refused(edgesmith("keygen", tmp_path / "k"), "k.key", "already exists")
    assert private.read_bytes() == before


def test_archive_that_unpacks_past_the_limit_is_refused_before_extraction(bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """A decompression bomb: the sizes in the headers are summed before anything is written."""
    from edgesmith import verify, verify_layout
    from edgesmith.errors import EdgesmithError

    archive = tar_of(bundle, tmp_path / "big.tar.gz")
    monkeypatch.setattr(verify_layout, "MAX_UNPACKED", 1000)
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda *a, **k: pytest.fail("extracted before the size check"))
    with pytest.raises(EdgesmithError, match="limit for a bundle; refusing to extract it"):
        verify.verify(archive)


@pytest.mark.parametrize("key", ["tokenizer_file", "vocab_file"])
def test_tokenizer_metadata_cannot_name_a_file_outside_the_bundle(bundle: Path, tmp_path: Path, key: str) -> None:
    """transformers lets tokenizer_config.json's file keys win over the bundle's own files: a valid tokenizer outside
    the bundle would pass every other check and be what Optimum and pipelines load on the device."""
    outside = tmp_path / "outside-tokenizer.json"
    shutil.copy(bundle / "tokenizer.json", outside)
    cfg = json.loads((bundle / "tokenizer_config.json").read_text())
    cfg[key] = str(outside)
    (bundle / "tokenizer_config.json").write_text(json.dumps(cfg))
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "tokenizer_config.json sets", key)


def test_tokenizer_metadata_is_checked_before_transformers_reads_a_path(bundle: Path, monkeypatch) -> None:
    """/dev/zero as the tokenizer file would be read until memory runs out: refused before AutoTokenizer runs."""
    import transformers

    from edgesmith import verify
    from edgesmith.errors import EdgesmithError

    cfg = json.loads((bundle / "tokenizer_config.json").read_text())
    (bundle / "tokenizer_config.json").write_text(json.dumps(cfg | {"tokenizer_file": "/dev/zero"}))
    rehash(bundle)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: pytest.fail("read before the check"))
    monkeypatch.setattr(verify, "_sandboxed", lambda *a: pytest.fail("the tokenizer ran before the check"))
    with pytest.raises(EdgesmithError, match="tokenizer_file"):
        verify.verify(bundle)


def test_autotokenizer_must_tokenize_as_the_bundle_does(bundle: Path) -> None:
    """Metadata that changes what AutoTokenizer gives is refused: here no lower-casing on an uncased vocabulary (the
    fast BERT tokenizer rebuilds its normalizer from tokenizer_config.json). Users' tools would feed the model other
    ids than the ones predict.py feeds it and the bench measured."""
    cfg = json.loads((bundle / "tokenizer_config.json").read_text())
    (bundle / "tokenizer_config.json").write_text(json.dumps(cfg | {"do_lower_case": False}))
    ref = json.loads((bundle / "reference.json").read_text())
    (bundle / "reference.json").write_text(json.dumps(ref | {"texts": [t.upper() for t in ref["texts"]]}))
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "AutoTokenizer gives the reference sentences or probes other model inputs")


@pytest.mark.parametrize("edit", [{"do_lower_case": False}, {"truncation_side": "left"}, {"model_max_length": 8},
                                  {"padding_side": "left"}, {"model_input_names": ["input_ids", "token_type_ids"]}])
def test_tokenizer_config_edits_that_change_autotokenizer_are_caught_on_the_probes(bundle: Path, edit: dict) -> None:
    """The reference sentences alone (short, lower-case, called with an explicit max_length) had let these through:
    Hugging Face tools would then cut, pad or case texts unlike predict.py and the measurement (red-team 6)."""
    cfg = json.loads((bundle / "tokenizer_config.json").read_text())
    (bundle / "tokenizer_config.json").write_text(json.dumps(cfg | edit))
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "AutoTokenizer gives the reference sentences or probes other model inputs")


def test_archive_with_too_many_entries_is_refused_before_extraction(bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """Empty entries weigh nothing against the size limit: 50,000 of them pack into 300 KB."""
    from edgesmith import verify, verify_layout
    from edgesmith.errors import EdgesmithError

    archive = tar_of(bundle, tmp_path / "many.tar.gz", *(entry(f"{bundle.name}/empty{i}") for i in range(50)))
    monkeypatch.setattr(verify_layout, "MAX_MEMBERS", 40)
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda *a, **k: pytest.fail("extracted before the count check"))
    with pytest.raises(EdgesmithError, match="over 40 entries"):
        verify.verify(archive)


@pytest.mark.parametrize("name", ["manifest.json", "padding.bin"])
def test_oversized_bundle_folder_is_refused_before_reading(bundle: Path, monkeypatch, name: str) -> None:
    """Sparse files cost nothing on disk: an 8 GiB manifest.json or a 1 TiB file must be refused by their size."""
    from edgesmith import verify, verify_layout
    from edgesmith.errors import EdgesmithError

    with open(bundle / name, "ab") as f:
        f.truncate(64 * 2**20)
    monkeypatch.setattr(verify_layout, "MAX_UNPACKED", 32 * 2**20)
    monkeypatch.setattr(verify, "sha256_file", lambda p: pytest.fail("hashed before the size check"))
    with pytest.raises(EdgesmithError, match="over 32 MiB, verify's limit for a bundle"):
        verify.verify(bundle)


def test_oversized_manifest_is_refused_unread(bundle: Path, monkeypatch) -> None:
    from edgesmith import verify
    from edgesmith.errors import EdgesmithError

    with open(bundle / "manifest.json", "ab") as f:
        f.truncate(17 * 2**20)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self.name} before the size check"))
    with pytest.raises(EdgesmithError, match="manifest.json is 17 MiB"):
        verify.verify(bundle)


def test_a_manifest_that_points_its_runtime_at_another_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    """The tiny bundle runs ONNX Runtime on model.onnx: a manifest naming another model file (OpenVINO reads ONNX too)
    would run a graph no benchmark measured."""
    shutil.copy(bundle / "model.onnx", bundle / "other.onnx")
    manifest = manifest_of(bundle)
    manifest["model_file"] = "other.onnx"
    write_manifest(bundle, manifest)
    rehash(bundle, "other.onnx")
    assert_refused(edgesmith("verify", bundle), "model_file 'other.onnx'", "model.onnx")


@pytest.mark.parametrize("change, says", [
    (lambda m: m["inputs"].update(texts_per_call=m["inputs"]["texts_per_call"] % 32 + 1), "inputs.texts_per_call is not"),
    (lambda m: m["inputs"].pop("texts_per_call"), "inputs.texts_per_call is not"),
    (lambda m: m["inputs"].update(texts_per_call=float(m["inputs"]["texts_per_call"])), "inputs.texts_per_call is not"),
    (lambda m: m["session"]["settings"].update(intra_op_num_threads=100000), "session settings are not ones edgesmith makes"),
    (lambda m: m.update(precision="int4"), "precision 'int4' is not one onnxruntime builds"),
])
def test_a_manifest_that_runs_texts_otherwise_than_they_were_scored_is_refused(bundle: Path, change, says) -> None:
    """predict.py runs inputs.texts_per_call texts a call, as the held-out texts were scored (one for dynamic INT8,
    whose scales span the batch): an edited count would answer differently from what was measured."""
    manifest = manifest_of(bundle)
    change(manifest)
    write_manifest(bundle, manifest)
    assert_refused(edgesmith("verify", bundle), says)


def test_tokenizer_metadata_naming_no_file_still_verifies(bundle: Path) -> None:
    """Older tokenizer configs carry `"tokenizer_file": null`: a key that names nothing is not refused."""
    cfg = json.loads((bundle / "tokenizer_config.json").read_text())
    (bundle / "tokenizer_config.json").write_text(json.dumps(cfg | {"tokenizer_file": None}))
    rehash(bundle)
    done = edgesmith("verify", bundle)
    assert done.code == 0, done.stderr


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_a_huge_entry_name_is_refused_before_tarfile_reads_it(bundle: Path, tmp_path: Path, monkeypatch, fmt: int) -> None:
    """tarfile reads a GNU long-name or PAX header whole before any entry is seen: a 131 KB archive holding a 128 MB
    name took 8.8 GB and a minute, and the error printed the whole name. The raw headers are walked first."""
    from edgesmith import verify
    from edgesmith.errors import EdgesmithError

    archive = tmp_path / "longname.tar.gz"
    with tarfile.open(archive, "w:gz", format=fmt) as tar:
        tar.add(bundle, arcname=bundle.name)
        tar.addfile(tarfile.TarInfo(f"{bundle.name}/{'a' * 200_000}"), None)
    assert archive.stat().st_size < 2_000_000
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("tarfile read the archive before the header scan"))
    with pytest.raises(EdgesmithError, match="name or extended header") as err:
        verify.verify(archive)
    assert len(str(err.value)) < 400


def test_an_entry_name_under_the_header_limit_but_too_long_is_refused_and_shown_clipped(bundle: Path, tmp_path: Path) -> None:
    archive = tar_of(bundle, tmp_path / "long.tar.gz", entry(f"{bundle.name}/{'b' * 5000}"))
    done = edgesmith("verify", archive)
    assert_refused(done, "not a plain printable name")
    assert len(done.stderr) < 400


@pytest.mark.parametrize("name", ["spoof\nsignature: valid", "erase\x1b[2K\rok", "lookalike\ua789 ok", "caf\u00e9.json"])
def test_names_that_could_forge_verifys_output_are_refused(bundle: Path, tmp_path: Path, name: str) -> None:
    """verify prints every name it checked: a newline, a terminal escape or a look-alike colon in one could add a
    forged 'signature: valid' line or erase the real one. edgesmith names every file in printable ASCII."""
    archive = tar_of(bundle, tmp_path / "named.tar.gz", entry(f"{bundle.name}/{name}", data=b"{}"))
    assert_refused(edgesmith("verify", archive), "not a plain printable name")
    (bundle / name).write_bytes(b"{}")
    rehash(bundle, name)  # listed with its true sha256, as someone covering their tracks would
    done = edgesmith("verify", bundle)
    assert_refused(done, "not a plain printable file name")
    assert name not in done.stderr and name not in done.stdout
    (bundle / name).unlink()  # listed in the manifest but absent: refused by the manifest check, escaped
    assert_refused(edgesmith("verify", bundle), "manifest.json lists", "not a plain printable name")


def test_reference_json_holding_more_or_longer_sentences_than_edgesmith_writes_is_refused(bundle: Path) -> None:
    """verify tokenizes and runs every reference sentence: 80,000 of them had taken 4.2 GB on the tiny model."""
    from edgesmith.bundle_io import REFERENCE_CHARS, REFERENCE_ROWS

    original = json.loads((bundle / "reference.json").read_text())
    assert 1 <= len(original["texts"]) <= REFERENCE_ROWS and all(len(t) <= REFERENCE_CHARS for t in original["texts"])
    for edit in ({"texts": original["texts"] * (REFERENCE_ROWS + 1)}, {"texts": ["x" * (REFERENCE_CHARS + 1)] + original["texts"][1:]},
                 {"texts": []}, {"texts": "one string"}, {"pairs": ["a"]}):
        (bundle / "reference.json").write_text(json.dumps(original | edit))
        rehash(bundle)
        assert_refused(edgesmith("verify", bundle), "reference.json is malformed", f"1 to {REFERENCE_ROWS} sentences")
    (bundle / "reference.json").write_text(json.dumps(original))
    with open(bundle / "reference.json", "ab") as f:
        f.truncate(17 * 2**20)  # sparse: refused by its size, unread
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "reference.json is 17 MiB")


def test_an_oversized_or_misshapen_signature_is_refused_unread_and_not_echoed(bundle: Path, built: Built) -> None:
    sig = bundle / "manifest.sig"
    good = json.loads(sig.read_text())
    with open(sig, "ab") as f:
        f.truncate(300 * 2**20)  # sparse: read whole it had taken 670 MB
    assert_refused(edgesmith("verify", "--key", built.pub, bundle), "manifest.sig is 314,572,800 bytes")
    sig.write_text(json.dumps(good | {"key": "\x1b[2K" + "f" * 3000}))
    done = edgesmith("verify", "--key", built.pub, bundle)
    assert_refused(done, "not an ed25519 signature as edgesmith writes one")
    assert "fff" not in done.stderr
    sig.write_text(json.dumps(good))
    assert edgesmith("verify", "--key", built.pub, bundle).code == 0


@pytest.mark.parametrize("named", ["TransfoXLTokenizer", "os.system", 7])
def test_a_tokenizer_class_without_a_fast_form_is_refused_before_transformers_loads_it(bundle: Path, monkeypatch, named) -> None:
    """A slow tokenizer class loads its own vocabulary files by name, and TransfoXL's unpickles vocab.pkl: the bundle's
    tokenizer is always a fast one (tokenizer.json)."""
    import transformers

    config = json.loads((bundle / "tokenizer_config.json").read_text())
    (bundle / "tokenizer_config.json").write_text(json.dumps(config | {"tokenizer_class": named}))
    rehash(bundle)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: pytest.fail("loaded before the check"))
    from edgesmith import verify
    from edgesmith.errors import EdgesmithError

    monkeypatch.setattr(verify, "_sandboxed", lambda *a: pytest.fail("the tokenizer ran before the check"))

    with pytest.raises(EdgesmithError, match="has no fast .tokenizer.json. form"):
        verify.verify(bundle)


def _raw_entry(kind: bytes, data: bytes, name: str = "././@LongLink") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data)
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n"
    n = len(body) + 1
    n = len(f"{n}{body}") if len(f"{n}{body}") != n else n
    return f"{n}{body}".encode()


@pytest.mark.parametrize("case, prefix, says", [
    ("solaris X header", _raw_entry(b"X", b"9 a=bcde\n" * 1000), "tar type b'X'"),
    ("old GNU sparse", _raw_entry(b"S", b"", "sparse"), "tar type b'S'"),
    ("PAX size record", _raw_entry(b"x", _pax_record("size", "0")), "PAX records set its size"),
    ("PAX sparse map", _raw_entry(b"x", _pax_record("GNU.sparse.major", "1")), "PAX records set its size or a sparse layout"),
    ("chained long names", b"".join(_raw_entry(b"L", b"n" * 500) for _ in range(10)), "(4 in a row)"),
    # tarfile reads the block after a folder entry as the next header whatever its size says: a walk that skipped
    # 2 MiB there would miss the 1 MiB long name tarfile reads next
    ("folder declaring data", _raw_entry(b"5", _raw_entry(b"L", b"n" * 2**20) + bytes(2**20), "dir"), "declares 2,097,664 bytes"),
    ("V7 folder declaring data", _raw_entry(b"\0", bytes(1024), "dir/"), "declares 1,024 bytes"),
])
def test_archive_entries_that_would_make_tarfile_read_past_the_header_walk_are_refused(
        bundle: Path, tmp_path: Path, monkeypatch, case: str, prefix: bytes, says: str) -> None:
    """tarfile honours more than the raw headers show: a Solaris X header is read as PAX, a PAX `size` record moves
    the next entry's size, a sparse map is parsed from the data, 400 chained long-name headers recurse. A review
    hid an 8 MiB name from the first header walk so: each is refused before tarfile opens the archive."""
    from edgesmith import verify
    from edgesmith.errors import EdgesmithError

    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(bundle, arcname=bundle.name)
    archive = tmp_path / "odd.tar.gz"
    archive.write_bytes(gzip.compress(prefix + plain.read_bytes()))
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("tarfile read the archive before the header walk"))
    with pytest.raises(EdgesmithError, match=re.escape(says)):
        verify.verify(archive)


def test_a_tokenizer_class_or_model_type_in_config_json_is_held_to_the_same_rule(bundle: Path, monkeypatch) -> None:
    """AutoTokenizer falls back to config.json's tokenizer_class, then to its model_type's class."""
    import transformers

    from edgesmith import verify
    from edgesmith.errors import EdgesmithError

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: pytest.fail("loaded before the check"))
    monkeypatch.setattr(verify, "_sandboxed", lambda *a: pytest.fail("the tokenizer ran before the check"))
    config = json.loads((bundle / "config.json").read_text())
    for edit, says in (({"tokenizer_class": "TransfoXLTokenizer"}, "config.json names tokenizer_class 'TransfoXLTokenizer'"),
                       ({"model_type": "transfo-xl"}, "config.json's model_type is not a BERT-family type")):
        monkeypatch.setattr(verify, "_hf_files", lambda folder, manifest: "skipped: config.json as the bundle has it")
        (bundle / "config.json").write_text(json.dumps(config | edit))
        rehash(bundle)
        with pytest.raises(EdgesmithError, match=re.escape(says)):
            verify.verify(bundle)


def test_deeply_nested_json_is_refused_in_one_line(bundle: Path, built: Built) -> None:
    """A few KB of brackets make json.loads raise RecursionError, which had come out as a traceback."""
    (bundle / "manifest.sig").write_text("[" * 4000)
    assert_refused(edgesmith("verify", "--key", built.pub, bundle), "manifest.sig is not an ed25519 signature")
    (bundle / "manifest.sig").unlink()
    (bundle / "reference.json").write_text("[" * 100_000)
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "reference.json is not valid JSON")


def _scalar_classifier(path: Path, nodes: list, scalar: str) -> None:
    """An ONNX classifier of the bundle's inputs whose two logits are the float scalar `scalar` that `nodes` compute."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = nodes + [_const("zero", T.INT64, [1], [0]), _const("one", T.INT64, [1], [1]), _const("two", T.INT64, [1], [2]),
                     h.make_node("Shape", ["input_ids"], ["shape"]), h.make_node("Slice", ["shape", "zero", "one"], ["b"]),
                     h.make_node("Concat", ["b", "two"], ["out_shape"], axis=0), h.make_node("Expand", [scalar, "out_shape"], ["logits"])]
    inputs = [h.make_tensor_value_info(n, T.INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    graph = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("logits", T.FLOAT, ["batch", 2])])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)


def _const(name: str, kind: int, dims: list[int], value: list) -> object:
    from onnx import helper as h

    return h.make_node("Constant", [], [name], value=h.make_tensor(name + "_t", kind, dims, value))


def _endless_loop_model(path: Path) -> None:
    """Logits that wait on a Loop of 10^15 iterations (747 bytes)."""
    from onnx import TensorProto as T
    from onnx import helper as h

    body = h.make_graph([h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Identity", ["v_in"], ["v_out"])], "body",
                        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                         h.make_tensor_value_info("v_in", T.FLOAT, [])],
                        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [])])
    _scalar_classifier(path, [_const("trip", T.INT64, [], [10**15]), _const("cond", T.BOOL, [], [True]),
                              _const("v0", T.FLOAT, [], [0.0]), h.make_node("Loop", ["trip", "cond", "v0"], ["v"], body=body)], "v")


def test_a_model_that_never_finishes_is_refused_after_the_timeout(bundle: Path) -> None:
    """verify runs the bundle's model in a child process it waits for at most --timeout seconds: a 747-byte ONNX Loop
    had kept it running for ever (red-team 6)."""
    _endless_loop_model(bundle / "model.onnx")
    rehash(bundle)
    assert_refused(edgesmith("verify", "--timeout", "5", bundle, timeout=120), "did not get through the reference sentences in 5 s")


def test_a_tokenizer_whose_regex_panics_is_refused_in_one_line(bundle: Path) -> None:
    """A Rust panic in `tokenizers` (Oniguruma's retry limit) is pyo3's PanicException, a BaseException that no
    `except Exception` caught: verify had ended in a 160-line traceback."""
    tokenizer = json.loads((bundle / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a+)+b"}, "behavior": "Isolated", "invert": False}
    (bundle / "tokenizer.json").write_text(json.dumps(tokenizer))
    ref = json.loads((bundle / "reference.json").read_text())
    (bundle / "reference.json").write_text(json.dumps(ref | {"texts": ["a" * 40 + "!"] + ref["texts"][1:]}))
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "the library reading its tokenizer or model failed", "PanicException")


def test_the_checks_that_run_the_bundle_start_in_a_child_process_under_a_memory_limit(bundle: Path, monkeypatch) -> None:
    """The tokenizer and model run in verify_run's process, under its address-space limit, never in verify's own."""
    import subprocess

    from edgesmith import verify, verify_run

    started = []
    real = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: started.append(cmd) or real(cmd, **kw))
    assert verify.verify(bundle)[-1].startswith("100% class agreement")
    assert len(started) == 1 and started[0][1:4] == ["-P", "-m", "edgesmith.verify_run"]
    assert 1 * 2**30 <= verify_run.MEMORY_LIMIT <= 16 * 2**30
    assert "--no-memory-limit" not in started[0]


def _allocating_model(path: Path, gib: float) -> None:
    """Logits that depend on a float tensor of `gib` GiB."""
    from onnx import TensorProto as T
    from onnx import helper as h

    _scalar_classifier(path, [_const("size", T.INT64, [1], [int(gib * 2**30 / 4)]), h.make_node("ConstantOfShape", ["size"], ["big"]),
                              h.make_node("ReduceSum", ["big"], ["v"], keepdims=0)], "v")


def test_a_model_asking_for_more_memory_than_the_fence_is_refused_without_getting_it(bundle: Path) -> None:
    """10 GiB is past the child's 8 GiB address-space limit: the runtime's allocation fails there, in one line. Without
    the limit it would have been allocated (and the outputs then found to differ)."""
    _allocating_model(bundle / "model.onnx", 10)
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle, timeout=300), "does not run on its reference sentences")


def test_a_verify_that_is_itself_stopped_leaves_no_child_running(bundle: Path) -> None:
    """A supervisor's SIGTERM to verify alone (not its process group) had left the endless child running as an
    orphan: the child dies with its parent (PR_SET_PDEATHSIG)."""
    import signal
    import subprocess
    import sys
    import time

    _endless_loop_model(bundle / "model.onnx")
    rehash(bundle)
    parent = subprocess.Popen([sys.executable, "-P", "-m", "edgesmith.cli", "verify", str(bundle)], stderr=subprocess.DEVNULL,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})
    children = []
    for _ in range(120):  # until the child has started
        time.sleep(0.5)
        children = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).count(str(bundle)) and "verify_run" in _cmdline(p)]
        if children:
            break
    assert children, "the child never started"
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=30)
    time.sleep(2)
    assert not [p for p in children if p.exists() and _state(p) != "Z"], "the child outlived verify"


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _state(proc: Path) -> str:
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_a_machine_with_a_lower_address_space_limit_still_verifies_a_genuine_bundle(bundle: Path) -> None:
    """The child may only lower limits: under a 6 GiB hard limit (SLURM jobs, some containers) setting 8 GiB had failed,
    and every genuine bundle was called tampered."""
    import resource
    import subprocess
    import sys

    limit = 6 * 2**30
    done = subprocess.run([sys.executable, "-P", "-m", "edgesmith.cli", "verify", str(bundle)], capture_output=True, text=True,
                          env=os.environ | {"OMP_NUM_THREADS": "1"}, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert done.returncode == 0, done.stderr


def test_the_memory_limit_is_left_off_only_where_the_bundles_gpu_providers_exist(monkeypatch) -> None:
    """CUDA reserves address space far beyond the child's limit, so a GPU session goes without it, but only on a
    machine with that GPU provider: elsewhere the session runs on the CPU, and a manifest naming CUDA must not lift
    the limit there."""
    import onnxruntime as ort

    from edgesmith import verify

    gpu = {"session": {"settings": {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}}}
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert not verify._gpu_session(gpu)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert verify._gpu_session(gpu)
    assert not verify._gpu_session({"session": {"settings": {"providers": ["CPUExecutionProvider"]}}})
    assert not verify._gpu_session({"session": {"settings": {"inference_precision_hint": "f32"}}})  # OpenVINO's


def test_an_oversized_config_json_is_refused_unread(bundle: Path, monkeypatch) -> None:
    """config.json was read whole before any size check: a 1.37 MB archive holding a 1 GiB one took 3.2 GB."""
    from edgesmith import verify
    from edgesmith.errors import EdgesmithError

    (bundle / "config.json").write_text(json.dumps({"pad": "x" * (verify.MAX_JSON + 2**20)}))
    rehash(bundle)
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda text, *a, **k: pytest.fail("read whole") if len(text) > verify.MAX_JSON else real(text, *a, **k))
    with pytest.raises(EdgesmithError, match="config.json is 17 MiB, over the 16 MiB edgesmith writes at most"):
        verify.verify(bundle)


def test_a_word_added_to_the_tokenizer_config_is_refused(bundle: Path) -> None:
    """AutoTokenizer adds tokenizer_config.json's added_tokens_decoder on top of tokenizer.json: a word added there
    splits texts that hold it unlike predict.py, and no fixed probe knows which word."""
    cfg = json.loads((bundle / "tokenizer_config.json").read_text())
    added = {"content": "not", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False, "special": False}
    (bundle / "tokenizer_config.json").write_text(json.dumps(cfg | {"added_tokens_decoder": cfg["added_tokens_decoder"] | {"9999": added}}))
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "added_tokens_decoder is not tokenizer.json's added tokens")


def test_metadata_of_an_unexpected_shape_is_one_line(bundle: Path) -> None:
    """A list where a name goes had raised TypeError in verify's own process (a traceback)."""
    config = json.loads((bundle / "config.json").read_text())
    (bundle / "config.json").write_text(json.dumps(config | {"model_type": []}, indent=2, sort_keys=True) + "\n")  # as edgesmith writes it
    rehash(bundle)
    assert_refused(edgesmith("verify", bundle), "model_type")


@pytest.mark.parametrize("providers", [[[]], [], ["CPUExecutionProvider", "CPUExecutionProvider"], ["--help"],
                                       ["EvilExecutionProvider", "CPUExecutionProvider"]])
def test_providers_that_are_not_names_are_refused(bundle: Path, providers: list) -> None:
    """A list where a provider name goes, no provider, one twice, a non-name or a name ONNX Runtime does not know is
    not a setting edgesmith makes; with the rest of the bundle intact (an earlier test only passed because its
    config.json was still broken from the case before). [[]] had passed verify, and predict.py then ran on the CPU
    (2026-12-07)."""
    manifest = manifest_of(bundle)
    manifest["session"]["settings"]["providers"] = providers
    write_manifest(bundle, manifest)
    assert_refused(edgesmith("verify", bundle), "session settings")
