"""`edgesmith verify BUNDLE [--key PUB]`: re-check a bundle where it now lies (after copying it to a device, say).

A bundle from elsewhere is untrusted data: verify never imports or runs a file of it. In order, it checks
1. the layout (verify_layout): one folder of at most MAX_MEMBERS regular files and MAX_UNPACKED bytes (no links; an archive holds
   exactly that folder, its entries counted and sized before extraction), and manifest.json
   is JSON with a `files` table of plain relative names;
2. with --key, the ed25519 signature over manifest.json (which lists the sha256 of every other file);
3. the folder holds exactly the listed files, each with its recorded sha256;
4. the only code in it, predict.py and bench.py, is byte-identical to this edgesmith's templates, and
   edgesmith_runtime.py to what this edgesmith generates for the manifest's runtime (bundle_code); the metadata
   Hugging Face tools read (config.json, sentence-transformers' modules.json, whose classes it imports, and its
   modules' configs) is what edgesmith writes for the manifest's task, labels and max length (bundle_code.hf_files);
5. the session settings in the manifest are ones edgesmith makes (they are applied to the runtime);
6. the tokenizer metadata names no files or code, and AutoTokenizer (when transformers is installed) loads the
   bundle's own files and tokenizes the reference sentences and probes as predict.py does;
7. edgesmith's own runtime, on the bundle's model file, reproduces the outputs recorded at build time;
8. those outputs still agree with the PyTorch student (class agreement or cosine).
What makes a library interpret the tokenizer or the model (AutoTokenizer and tokenizer.json in 6, then 7 and 8) runs
in a child process under a memory limit and a timeout (verify_run.py); everything else first, in this one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from . import signing
from .artifacts import sha256_file
from .bundle_code import TEMPLATE_FILES, bundle_code, hf_files
from .bundle_io import REFERENCE_BYTES, REFERENCE_CHARS, REFERENCE_ROWS
from .errors import EdgesmithError, require
from .runtimes import RUNTIMES
from .tasks import get as get_task
from .verify_layout import extract, first_line, regular_files, safe_name, shown

OUTPUT_ATOL = 1e-3  # same model, same runtime: only thread scheduling may reorder sums
CODE = TEMPLATE_FILES  # code every bundle carries, copied from bundle_code.TEMPLATES; generated modules besides
MAX_JSON = 16 * 2**20  # manifest.json and the tokenizer's metadata are a few KB (tokenizer.json is a model file)
# Tokenizer metadata keys that name files or code: transformers lets tokenizer_config.json's "tokenizer_file" win over
# the bundle's own tokenizer.json, so a bundle could make AutoTokenizer read a file outside it. edgesmith writes none.
TOKENIZER_METADATA = ("tokenizer_config.json", "special_tokens_map.json")
# Files Python would import or load from the bundle folder (sys.path[0] when predict.py runs) besides CODE.
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyw", ".pyd", ".so", ".dll", ".dylib", ".pth")
UNLISTED = ("manifest.json", signing.SIGNATURE)  # the manifest cannot list itself, nor its signature


TIMEOUT_S = 120.0  # steps 6 to 8 on 8 sentences: seconds for a genuine bundle (MiniLM: 5 s on 2 cores, libraries loaded)


def verify(path: Path, key: Path | None = None, timeout: float = TIMEOUT_S) -> list[str]:
    """Returns the checks passed; raises EdgesmithError (naming `path`) on the first failure. `timeout`: seconds the
    checks that run the bundle's tokenizer and model may take (they run in a child process, verify_run.py)."""
    try:
        if path.is_dir():
            return _verify_folder(path, key, timeout)
        require(path.is_file(), "no such bundle; pass a bundle folder or .tar.gz made by edgesmith")
        with tempfile.TemporaryDirectory() as tmp:
            return _verify_folder(extract(path, Path(tmp)), key, timeout)
    except EdgesmithError as err:
        raise EdgesmithError(f"{path}: {err}") from None
    except (TypeError, KeyError, AttributeError, ValueError, IndexError) as err:  # fail closed, in one line
        raise EdgesmithError(f"{path}: its metadata is not shaped as edgesmith writes it ({type(err).__name__}: "
                             f"{first_line(err)[:200]}); tampered bundle, rebuild it") from None


def _verify_folder(folder: Path, key: Path | None, timeout: float) -> list[str]:
    present = regular_files(folder)
    manifest = _read_manifest(folder, present)
    passed = [signing.check(folder, key)]
    passed += _hashes(folder, manifest["files"], present)
    passed.append(_code(folder, manifest))
    passed.append(_hf_files(folder, manifest))
    passed.append(_session(manifest))
    _tokenizer_metadata(folder, manifest)  # what AutoTokenizer would read by name: refused before any of it is read
    _fast_tokenizer_class(folder, manifest)
    _reference(folder)
    return passed + _sandboxed(folder, timeout, memory_limit=not _gpu_session(manifest))


def sandboxed_checks(folder: Path) -> list[str]:
    """Steps 6 to 8, which run the bundle's tokenizer and model: called in verify_run's child process alone, after
    the parent passed steps 1 to 5 on this folder."""
    manifest = json.loads((folder / "manifest.json").read_bytes())
    return [_tokenizer(folder, manifest)] + _outputs(folder, manifest["task"])


def _gpu_session(manifest: dict[str, Any]) -> bool:
    """Whether the bundle's session would run on a GPU of this machine: GPU execution providers reserve address space
    far beyond the child's memory limit, which is then left off (the timeout still holds). A manifest naming GPU
    providers on a machine without them runs on the CPU, under the limit, as predict.py would run it there."""
    providers = manifest["session"]["settings"].get("providers", ())
    wanted = {p for p in providers if isinstance(p, str)} - {"CPUExecutionProvider"}
    if not wanted:
        return False
    import onnxruntime as ort

    return bool(wanted & set(ort.get_available_providers()))


def _sandboxed(folder: Path, timeout: float, memory_limit: bool = True) -> list[str]:
    """sandboxed_checks in a child process (verify_run.py: its fence), waited for `timeout` seconds, its whole process
    group killed after that; its output goes to a capped file, of which an error quotes the last line."""
    import signal
    import subprocess
    import sys

    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as scratch:
        result, log = Path(scratch) / "result.json", Path(scratch) / "output.log"
        cmd = [sys.executable, "-P", "-m", "edgesmith.verify_run", str(folder.resolve()), str(result), str(timeout), str(os.getpid())]
        # -P: the working directory stays off sys.path; the verdict comes in a file no library output can forge
        with log.open("wb") as output:
            child = subprocess.Popen(cmd + ([] if memory_limit else ["--no-memory-limit"]), cwd=scratch, env=env,
                                     stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True)
            try:
                code = child.wait(timeout=timeout)
            except BaseException:  # the timeout, or verify itself interrupted: nothing it started outlives it
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                    raise
                raise EdgesmithError(f"its tokenizer and model did not get through the reference sentences in {timeout:g} s "
                                     "(a genuine bundle takes seconds); tampered bundle, or give a slow machine more with --timeout") from None
        try:
            verdict = json.loads(result.read_text())
        except (OSError, ValueError):
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            raise EdgesmithError(f"the process running its tokenizer and model ended without a verdict ({how}; its last "
                                 f"output: {_last_line(log)}); a tampered or broken bundle, or out of memory here") from None
    if "setup" in verdict:
        raise EdgesmithError(f"could not fence the process that runs its tokenizer and model on this machine "
                             f"({verdict['setup']}); nothing of the bundle was read there")
    require("error" not in verdict, str(verdict.get("error", "")))
    return verdict["passed"]


def _last_line(log: Path) -> str:
    """The last non-empty line of the child's output file, shown escaped and clipped (its text is the libraries')."""
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - 4096))
        lines = [line for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    return shown(lines[-1]) if lines else "none"


def _read_manifest(folder: Path, present: set[str]) -> dict[str, Any]:
    require("manifest.json" in present, "no manifest.json; pass a bundle folder or .tar.gz made by edgesmith")
    manifest = _small_json(folder, "manifest.json", "re-copy the bundle")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    require(isinstance(files, dict) and bool(files) and all(isinstance(v, str) for v in files.values()),
            "manifest.json has no `files` table of sha256 digests; re-copy the bundle or rebuild it")
    for name in files:
        require(safe_name(name) and PurePosixPath(name).as_posix() == name,
                f"manifest.json lists {shown(name)}, a path outside the bundle folder or not a plain printable name; "
                "the manifest was tampered with")
    for field in ("task", "model_file"):
        require(isinstance(manifest.get(field), str), f"manifest.json has no {field!r}; rebuild the bundle")
    for name in (*CODE, "tokenizer.json", "reference.json", manifest["model_file"]):
        require(name in files, f"manifest.json does not list {name}, which every edgesmith bundle has; tampered bundle, rebuild it")
    return manifest


def _same_bytes(path: Path, data: bytes) -> bool:
    """Whether a file holds exactly `data`, its size compared before anything is read (a planted file may be huge)."""
    return path.stat().st_size == len(data) and path.read_bytes() == data


def _small_json(folder: Path, name: str, fix: str, limit: int = MAX_JSON) -> Any:
    """A metadata file of the bundle as JSON, refused unread when it is larger than any edgesmith writes."""
    size = (folder / name).stat().st_size
    require(size <= limit, f"{name} is {size / 2**20:.0f} MiB, over the {limit / 2**20:.0f} MiB edgesmith writes at most; {fix}")
    try:
        return json.loads((folder / name).read_bytes())
    except (ValueError, RecursionError):  # RecursionError: a few KB of nested brackets
        raise EdgesmithError(f"{name} is not valid JSON; {fix}") from None


def _hashes(folder: Path, files: dict[str, str], present: set[str]) -> list[str]:
    extra = sorted(present - set(files) - set(UNLISTED))
    require(not extra, f"{', '.join(map(shown, extra[:5]))}: not listed in manifest.json; a bundle carries only the files it was built with, remove them")
    for name in sorted(files):
        require(name in present, f"{name} is missing; re-copy the bundle")
        require(sha256_file(folder / name) == files[name], f"{name} does not match its sha256; re-copy the bundle")
    return [f"sha256 {files[name]} {name}" for name in sorted(files)] + [f"no files besides these {len(files)}, {' and '.join(UNLISTED)}"]


def _code(folder: Path, manifest: dict[str, Any]) -> str:
    """Refuses any code but edgesmith's own templates and the modules it generates for the manifest's runtime:
    predict.py would import a module planted beside it."""
    from importlib.metadata import version

    expected = bundle_code(manifest)  # refuses a runtime this edgesmith does not know
    for name in manifest["files"]:
        require(name in expected or not name.endswith(CODE_SUFFIXES),
                f"{name} is code, and a bundle carries only edgesmith's {', '.join(expected)}; tampered bundle")
    for name, data in expected.items():
        require(name in manifest["files"], f"manifest.json does not list {name}, which every edgesmith bundle has; tampered bundle, rebuild it")
        what = "template" if name in CODE else f"generated {manifest['session']['runtime']} module"
        require(_same_bytes(folder / name, data),
                f"{name} differs from edgesmith {version('edgesmith')}'s {what}; tampered bundle (or another edgesmith version: rebuild it)")
    return f"{', '.join(expected)} byte-identical to what edgesmith {version('edgesmith')} ships for this bundle (not run)"


def _hf_files(folder: Path, manifest: dict[str, Any]) -> str:
    """Refuses Hugging Face metadata that edgesmith would not write for this manifest: sentence-transformers imports
    the classes modules.json names, and transformers pipelines print config.json's label names."""
    require("config.json" in manifest["files"],
            "manifest.json does not list config.json, which every edgesmith bundle has; tampered bundle, rebuild it")
    config = _small_json(folder, "config.json", "rebuild the bundle")  # capped: a 1 GiB config.json had cost 3.2 GB
    try:
        require(isinstance(config, dict) and "auto_map" not in config, "config.json is not a plain transformers config "
                "(remote code, auto_map, is never in one edgesmith writes); tampered bundle, rebuild it")
        expected = hf_files(manifest, config)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise EdgesmithError("config.json or the manifest's labels and inputs are not what edgesmith writes; "
                             "tampered bundle, rebuild it") from None
    for name, data in expected.items():
        require(name in manifest["files"],
                f"manifest.json does not list {name}, which every edgesmith {manifest['task']} bundle has; tampered bundle, rebuild it")
        require(_same_bytes(folder / name, data), f"{name} differs from what edgesmith writes for this bundle's task, "
                "labels and max length; tampered bundle (or another edgesmith version: rebuild it)")
    return f"{', '.join(expected)}: what edgesmith writes for this bundle (Hugging Face tools read them; not run)"


def _session(manifest: dict[str, Any]) -> str:
    from .bundle_io import session_is_ours

    require(session_is_ours(manifest),
            "manifest.json session settings are not ones edgesmith makes; tampered bundle (or another edgesmith version: rebuild it)")
    runtime = RUNTIMES[manifest["session"]["runtime"]]
    # OpenVINO also reads ONNX: an OpenVINO bundle pointed at an ONNX file would run a graph no benchmark measured
    require(manifest["model_file"] == runtime.bundle_file, f"manifest.json's model_file {manifest['model_file']!r} is not "
            f"{runtime.bundle_file}, the file an edgesmith {runtime.name} bundle runs; tampered bundle, rebuild it")
    precision = manifest.get("precision")
    require(precision in runtime.precisions, f"manifest.json's precision {shown(str(precision))} is not "
            f"one {runtime.name} builds; tampered bundle (or another edgesmith version: rebuild it)")
    # how many texts predict.py runs per call: as they were scored (a dynamic INT8 text's answer depends on its company)
    per_call = manifest["inputs"].get("texts_per_call")
    require(type(per_call) is int and per_call == runtime.texts_per_call(precision), "manifest.json's "
            f"inputs.texts_per_call is not {runtime.texts_per_call(precision)}, how the held-out texts were scored for "
            f"{runtime.name} {precision}; tampered bundle, rebuild it")
    return f"session settings are edgesmith's ({manifest['session']['runtime']}, {precision}, {runtime.bundle_file})"


def _tokenizer(folder: Path, manifest: dict[str, Any]) -> str:
    """AutoTokenizer loads the bundle's tokenizer from its own files only, and gives the reference sentences and
    probes the ids that predict.py (and the measurement) gives them, called as a transformers pipeline calls it
    (truncation=True, no max_length: tokenizer_config.json's model_max_length decides): Optimum, sentence-transformers
    and pipelines load it this way. The probes hold what the reference sentences may not: a text longer than the
    bundle's max length, capitals, accents and CJK, rows of different lengths; tokenizer_config.json's
    truncation_side, padding_side, do_lower_case or model_max_length, edited, had passed on the reference alone."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return "tokenizer: transformers not installed here, skipped AutoTokenizer check"
    from .bundle_io import encode

    _added_tokens(folder, manifest)
    ref = _reference(folder)[0]
    texts, pairs = _probes(ref["texts"], ref["pairs"], manifest["inputs"]["max_length"])
    try:
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, use_fast=True)
        got = tok(texts, pairs, truncation=True, padding="longest", return_tensors="np")
        expected = encode(folder, texts, pairs)
    except Exception as err:  # untrusted files: any failure of the library means a broken tokenizer
        raise EdgesmithError(f"tokenizer does not load with AutoTokenizer ({first_line(err)}); re-copy or rebuild the bundle") from None
    # every model input, not the ids alone: model_input_names edited to drop attention_mask had passed
    require(all(name in got and np.array_equal(got[name], ids) for name, ids in expected.items()),
            "AutoTokenizer gives the reference sentences or probes other model inputs (token ids, attention mask or "
            "token types) than the bundle's tokenizer.json (what predict.py runs and what was measured); tampered bundle, rebuild it")
    return (f"AutoTokenizer.from_pretrained (trust_remote_code=False) tokenizes the {len(ref['texts'])} reference "
            f"sentences and {len(texts) - len(ref['texts'])} probes as predict.py does, from the bundle's own files")


def _added_tokens(folder: Path, manifest: dict[str, Any]) -> None:
    """tokenizer_config.json's added_tokens_decoder must be tokenizer.json's own added tokens, as save_pretrained writes
    them: AutoTokenizer adds any other on top, so an added word ("not") splits texts unlike predict.py, and no fixed
    probe can know which word (a review found it)."""
    if "tokenizer_config.json" not in manifest["files"]:
        return
    decoder = _small_json(folder, "tokenizer_config.json", "rebuild the bundle").get("added_tokens_decoder", {})
    tokenizer = json.loads((folder / "tokenizer.json").read_bytes())  # in verify_run's fenced process: a model file
    own = {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in tokenizer.get("added_tokens", [])}
    require(decoder in ({}, own), "tokenizer_config.json's added_tokens_decoder is not tokenizer.json's added tokens "
            "(AutoTokenizer would split texts with the difference, predict.py would not); tampered bundle, rebuild it")


def _probes(texts: list[str], pairs: list[str] | None, max_length: int) -> tuple[list[str], list[str] | None]:
    """The reference sentences, then probes of what changes a tokenizer's ids: a text past max_length, capitals,
    accents and CJK, and a short row beside long ones (padding)."""
    probes = [" ".join(["Superb"] * max_length + ["awful", "ending"]), "Great Movie, SUPERB Actor: Café Crème 電影 naïve", "ok"]
    return texts + probes, None if pairs is None else pairs + probes[::-1]


def _tokenizer_metadata(folder: Path, manifest: dict[str, Any]) -> None:
    """Refuses tokenizer metadata that names files or code (checked before transformers reads any of it)."""
    for name in TOKENIZER_METADATA:
        if name not in manifest["files"]:
            continue
        data = _small_json(folder, name, "rebuild the bundle")
        require(isinstance(data, dict), f"{name} is not a JSON object; tampered bundle, rebuild it")
        named = sorted(k for k, v in data.items() if (k.endswith(("_file", "_files")) or k == "auto_map") and v is not None)
        require(not named, f"{name} sets {', '.join(named)}: a bundle's tokenizer files are found by name inside it, and "
                "edgesmith never writes these keys; tampered bundle, rebuild it")


def _fast_tokenizer_class(folder: Path, manifest: dict[str, Any]) -> None:
    """The class AutoTokenizer would pick must have a fast (tokenizer.json) form: a class without one loads its own
    vocabulary files, and some (TransfoXL's) unpickle them. AutoTokenizer takes tokenizer_config.json's
    tokenizer_class, else config.json's, else the one of config.json's model_type: each is checked. (Without
    transformers there is no AutoTokenizer to check.)"""
    try:
        import transformers
    except ImportError:
        return

    from .arch import ARCHITECTURES

    config = _small_json(folder, "config.json", "rebuild the bundle")
    require(isinstance(config, dict) and isinstance(config.get("model_type"), str) and config["model_type"] in ARCHITECTURES,
            "config.json's model_type is not a "
            f"BERT-family type edgesmith builds ({', '.join(sorted(ARCHITECTURES))}); tampered bundle, rebuild it")
    metadata = _small_json(folder, "tokenizer_config.json", "rebuild the bundle") if "tokenizer_config.json" in manifest["files"] else {}
    for where, data in (("tokenizer_config.json", metadata), ("config.json", config)):
        named = data.get("tokenizer_class")
        require(named is None or (isinstance(named, str) and named.isidentifier()
                                  and hasattr(transformers, named.removesuffix("Fast") + "Fast")),
                f"{where} names tokenizer_class {shown(str(named))}, which has no fast (tokenizer.json) form; "
                "edgesmith bundles carry a fast tokenizer: tampered bundle, rebuild it")


def _outputs(folder: Path, task: str) -> list[str]:
    ref, expected, torch_out = _reference(folder)
    got = _run_model(folder, ref["texts"], ref["pairs"])
    require(got.shape == expected.shape == torch_out.shape,
            f"outputs have shape {got.shape} but reference.json records {expected.shape}; the model file is not the one built")
    diff = float(np.abs(got - expected).max())
    require(diff <= OUTPUT_ATOL, f"outputs differ from those recorded at build time (max abs diff {diff:.2e}); the model file is not the one built")
    from .bundle_io import encode

    ok, fidelity = get_task(task).fidelity(got, torch_out, encode(folder, ref["texts"], ref["pairs"]).get("attention_mask"))
    require(ok, f"{fidelity}: too far from PyTorch; the model file is wrong")
    return [f"edgesmith's runtime on the bundle's model reproduces the build (max abs diff {diff:.1e})", fidelity]


def _reference(folder: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """reference.json's sentences and outputs, refused when it holds more or longer sentences than the bundle stage
    writes (verify tokenizes and runs every one) or is larger than any it writes."""
    ref = _small_json(folder, "reference.json", "rebuild the bundle", REFERENCE_BYTES)
    try:
        texts, pairs = ref["texts"], ref["pairs"]
        sentences = texts + (pairs or []) if isinstance(texts, list) and isinstance(pairs, (list, type(None))) else None
        ok = (bool(texts) and len(texts) <= REFERENCE_ROWS and (pairs is None or len(pairs) == len(texts))
              and all(isinstance(t, str) and len(t) <= REFERENCE_CHARS for t in sentences))
        expected, torch_out = np.asarray(ref["expected"], dtype=np.float32), np.asarray(ref["pytorch"], dtype=np.float32)
    except (ValueError, KeyError, TypeError):
        ok = False
    require(ok, f"reference.json is malformed (edgesmith writes 1 to {REFERENCE_ROWS} sentences of at most {REFERENCE_CHARS} "
            "characters with their outputs); rebuild the bundle")
    return ref, expected, torch_out


def _run_model(folder: Path, texts: list[str], pairs: list[str] | None) -> np.ndarray:
    """The bundle's model through edgesmith's runtimes, tokenized as predict.py tokenizes (bundle_io)."""
    from .bundle_io import open_bundle_session, run_as_predict

    try:
        return run_as_predict(open_bundle_session(folder, threads=1), folder, texts, pairs)
    except EdgesmithError:
        raise
    except Exception as err:  # untrusted model and tokenizer files: each runtime raises its own exception types
        raise EdgesmithError(f"the bundle's model does not run on its reference sentences ({first_line(err)}); re-copy or rebuild the bundle") from None
