"""Stage `bundle` (per profile): the fastest measured artifact within the accuracy budget (and, where one of those is,
within the profile's size, memory and p90 budgets), packed with its tokenizer, labels, manifest (sha256 of every file,
versions, profile, recipe, inputs, metrics, and the session settings the artifact was benchmarked with, which
predict.py / bench.py apply as they are) and standalone predict.py / bench.py with the runtime's opener generated
beside them (bundle_code), as a folder and a .tar.gz. The model file keeps the name Optimum and sentence-transformers
look for, beside config.json and the task's other metadata for them (bundle_code.hf_files), so those tools load the
measured model itself: no second graph."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import runtimes
from ..artifacts import file_hashes, library_versions
from ..bundle_code import hf_files, write_code
from ..bundle_io import REFERENCE_BYTES, REFERENCE_CHARS, REFERENCE_ROWS, encode, open_bundle_session, run_as_predict
from ..config import BenchConfig, Budgets, Frozen, Profile, Task
from ..confirm import ROUNDS, alternative, confirm, needed
from ..errors import EdgesmithError
from ..latency import budget_p90, budget_peak_mb, measure
from ..modeling import load_model, load_tokenizer
from ..registry import stage
from ..signing import SigningKey, sign_folder
from ..tasks import get as get_task
from .bench import model_path
from .common import read_rows
from .teacher import TorchModelSession

MB = 2**20  # as the report counts sizes


class BundleStageConfig(Frozen):
    profile: Profile  # the whole profile: the bundle's manifest.json records it
    task: Task
    max_length: int
    budget: float
    bench: BenchConfig  # warm-up, iterations and least speed-up of the paired rounds that confirm a pruned bundle
    recipe_json: str  # the resolved recipe, recorded in the manifest: any recipe edit rightly rebuilds the bundle
    signing: SigningKey | None = None  # `run --sign KEY`: the key's path and public half, never the private key


def choose(rows: list[dict[str, Any]], teacher_metric: float, budget: float) -> tuple[dict[str, Any], bool]:
    """(row, within_budget): the fastest p50 among rows within the quality budget (the teacher quantized unpruned
    is one of them, so a bundle that plain quantization beats never ships); when none is, the fastest of
    the most accurate rows. Without latency (hardware absent) the smallest file stands in for the fastest."""
    compressed = [r for r in rows if r["branch"] != "teacher" and "metric" in r["quality"]]
    if not compressed:
        raise EdgesmithError("bundle: no artifact could be evaluated on this machine; see the bench stage output")
    ok = [r for r in compressed if teacher_metric - r["quality"]["metric"] <= budget]
    within = bool(ok)
    if not ok:  # nothing within budget: the most accurate ones, and among equals the fastest
        best = max(r["quality"]["metric"] for r in compressed)
        ok = [r for r in compressed if r["quality"]["metric"] >= best - 1e-9]
    timed = [r for r in ok if "p50_ms" in r["latency"]]
    if timed:
        return min(timed, key=lambda r: r["latency"]["p50_ms"]), within
    return min(ok, key=lambda r: r["bytes"]), within  # profile hardware absent: the smallest


HARDWARE_BUDGETS = ("p90", "peak memory", "size")
# Size is the file's own; p90 and memory are this machine's readings, which on a smaller machine than the profile's
# (threads clamped) no artifact may meet: then the choice still keeps to the size budget.
BUDGET_TIERS = (HARDWARE_BUDGETS, ("size",))


# Each hardware budget once: its Budgets field -> (its name in words, unit, the bench row's figure). The bundle's
# choice and the report's budget verdicts both read it, so the two cannot judge a figure differently.
BUDGET_FIGURES: dict[str, tuple[str, str, Callable[[dict[str, Any]], float | None]]] = {
    "p90_ms": ("p90", "ms", lambda row: budget_p90(row["latency"])),
    "peak_memory_mb": ("peak memory", "MB", lambda row: budget_peak_mb(row["latency"])),
    "size_mb": ("size", "MB", lambda row: row["bytes"] / MB),
}


def budget_figures(row: dict[str, Any], budgets: Budgets) -> dict[str, tuple[float | None, float]]:
    """Budgets field -> (this row's figure, None where this machine could not measure it; the limit), for each of the
    profile's hardware budgets that is set."""
    return {field: (figure(row), getattr(budgets, field)) for field, (_, _, figure) in BUDGET_FIGURES.items()
            if getattr(budgets, field) is not None}


def missed_budgets(row: dict[str, Any], budgets: Budgets, names: tuple[str, ...] = HARDWARE_BUDGETS) -> list[str]:
    """The profile's budgets among `names` that this row's measurements break, in words ("size 65.8 MB > 25"); a
    figure this machine could not measure counts against none."""
    words = {field: (name, unit) for field, (name, unit, _) in BUDGET_FIGURES.items()}
    return [f"{words[field][0]} {value:.1f} {words[field][1]} > {limit:g}"
            for field, (value, limit) in budget_figures(row, budgets).items()
            if words[field][0] in names and value is not None and value > limit]


def eligible(rows: list[dict[str, Any]], teacher_metric: float, budget: float,
             budgets: Budgets) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """(rows the bundle is chosen from, the budgets they keep to): those within the profile's p90, memory and size
    budgets when one of them is also within the accuracy budget, else those within its size budget, else all rows
    (the report shows which budgets the bundle misses). The embedded profile (25 MB) had shipped a 65.8 MB FP32
    student, faster than every 22 MB INT8 build."""
    for names in BUDGET_TIERS:
        fits = [r for r in rows if r["branch"] == "teacher" or not missed_budgets(r, budgets, names)]
        if any(r["branch"] != "teacher" and "metric" in r["quality"] and teacher_metric - r["quality"]["metric"] <= budget
               for r in fits):
            return fits, names
    return rows, ()


def left_out(rows: list[dict[str, Any]], chosen: dict[str, Any], teacher_metric: float, budget: float,
             budgets: Budgets, names: tuple[str, ...]) -> list[str]:
    """Artifacts within the accuracy budget and faster than the chosen one that broke one of the budgets `names`."""
    p50 = chosen["latency"].get("p50_ms")
    out = []
    for r in rows:
        missed = missed_budgets(r, budgets, names) if r["branch"] != "teacher" and "metric" in r["quality"] else []
        if missed and teacher_metric - r["quality"]["metric"] <= budget and p50 is not None and r["latency"].get("p50_ms", p50) < p50:
            out.append(f"{r['branch']}:{r['artifact']} ({', '.join(missed)})")
    return out


# 10: the profile's size, memory and p90 budgets narrow the choice (`eligible`)
# 9: a pruned artifact ships only if faster than the quantized teacher in every paired round (edgesmith.confirm)
@stage("bundle", BundleStageConfig, version=16)  # 16: the runtime opener refuses providers that are not distinct provider names; 15: predict.py checks sha256s, marks cut texts, --file, runs texts_per_call texts a call; the runtime opener applies only edgesmith's settings; 14: at least bench.min_speedup faster in every round, reference texts cut to REFERENCE_CHARS; 13: the paired rounds time the longest input too, `alternative` recorded; 12: token entities by whitespace words, as scored; bench.py times the longest input too; 11: predict.py refuses text that is not UTF-8; 8: token entities by the tokenizer's words; 7: files named for HF tools
def run(cfg: BundleStageConfig, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    bench, teacher = inputs["bench"], inputs["teacher"]
    run_folder = bench.path.parent  # bench rows name their models relative to it (bench.model_path)
    metric = teacher.facts["quality"]["metric"]
    rows, kept = eligible(bench.facts["rows"], metric, cfg.budget, cfg.profile.budgets)
    row, within = choose(rows, metric, cfg.budget)
    alt, confirmation = alternative(rows, metric, cfg.budget), None
    if needed(row, alt):
        confirmation = confirm(row, alt, _remeasure(cfg, run_folder, bench.facts["threads"], load_tokenizer(teacher.path / "model").vocab_size),
                               min_speedup=cfg.bench.min_speedup)
        row = row if confirmation["measurable"] else alt
    folder = out / f"edgesmith-{cfg.profile.name}"
    folder.mkdir()
    runtime = runtimes.RUNTIMES[row["runtime"]]
    model = model_path(row, run_folder)
    model_file = _copy_model(runtime.files(model), folder, runtime.bundle_file)
    student_dir = inputs[f"shrink-{row['branch']}"].path / "model"
    tokenizer = load_tokenizer(student_dir)
    tokenizer.model_max_length = cfg.max_length  # transformers pipelines' truncation=True then cuts where predict.py does
    tokenizer.save_pretrained(folder)
    labels = teacher.facts["label_names"]
    (folder / "labels.json").write_text(json.dumps(labels))
    text_pairs = len(inputs["data"].facts["text_columns"]) == 2
    names = _input_names(model, row["runtime"], get_task(cfg.task).output_name)
    manifest = _manifest(cfg, row, within, model_file, names, tokenizer, labels, bench.facts, teacher.facts, text_pairs)
    write_code(folder, manifest)
    _write_hf_files(folder, manifest, student_dir)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    _write_reference(folder, student_dir, read_rows(inputs["data"].path / "eval.jsonl")[:REFERENCE_ROWS], cfg, text_pairs)
    manifest["files"] = file_hashes(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if cfg.signing is not None:  # last: the signature covers the final manifest, and the tar carries it
        sign_folder(folder, cfg.signing)
    with tarfile.open(out / f"{folder.name}.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return {"bundle": folder.name, "chosen": {k: row[k] for k in ("branch", "artifact", "bytes", "quality", "latency")},
            "within_budget": within, "tar_bytes": (out / f"{folder.name}.tar.gz").stat().st_size, "speedup_confirmation": confirmation,
            "budgets_kept": list(kept), "meets_profile_budgets": kept == HARDWARE_BUDGETS,
            # what would have shipped had pruning not paid, chosen among the rows the budgets left (None: no unpruned
            # build was within the accuracy budget and those budgets): the report holds the bundle to this one
            "alternative": None if alt is None else f"{alt['branch']}:{alt['artifact']}",
            "left_out_for_budgets": left_out(bench.facts["rows"], row, metric, cfg.budget, cfg.profile.budgets, kept)}


def _remeasure(cfg: BundleStageConfig, run_folder: Path, threads: int, vocab: int) -> Any:
    """A row's p50 measured again in a fresh process, as the bench stage measured it (a share of its iterations), at
    the profile's length and, where the bundle takes longer inputs, at data.max_length."""
    iterations = max(5, cfg.bench.iterations // ROUNDS)
    output = get_task(cfg.task).output_name
    return lambda row: measure(row["runtime"], model_path(row, run_folder), cfg.profile.measurement(), threads, vocab, cfg.bench.warmup,
                               iterations, output, longest=cfg.max_length)


def _copy_model(files: list[Path], folder: Path, name: str) -> str:
    """Copies a model's files (runtimes: the opened one first) as `name`, the others under its stem with their own
    suffixes (openvino_model.xml, openvino_model.bin); returns `name`."""
    for f in files:
        shutil.copy2(f, folder / Path(name).with_suffix(f.suffix))
    return name


def _write_hf_files(folder: Path, manifest: dict[str, Any], student_dir: Path) -> None:
    """config.json (the student's, with the bundle's labels) and the task's other files for Hugging Face tools."""
    for name, data in hf_files(manifest, json.loads((student_dir / "config.json").read_text())).items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)


def _manifest(cfg: BundleStageConfig, row: dict[str, Any], within: bool, model_file: str, input_names: list[str], tokenizer: Any,
              labels: list[str], bench: dict[str, Any], teacher: dict[str, Any], text_pairs: bool) -> dict[str, Any]:
    teacher_row = next(r for r in bench["rows"] if r["branch"] == "teacher")
    return {
        "format": "edgesmith-bundle/2", "task": cfg.task, "runtime": row["runtime"], "model_file": model_file,
        "artifact": row["artifact"], "precision": row["precision"], "branch": row["branch"], "labels": labels,
        "session": row["session"],
        "inputs": {"names": input_names, "max_length": cfg.max_length,
                   # as the held-out texts were scored: one a call where quantization scales are per call
                   "texts_per_call": runtimes.RUNTIMES[row["runtime"]].texts_per_call(row["precision"]),
                   "dynamic_axes": ["batch", "sequence"],
                   "pad_token": tokenizer.pad_token, "pad_token_id": tokenizer.pad_token_id, "text_pairs": text_pairs},
        "output": get_task(cfg.task).output_name,
        "profile": cfg.profile.model_dump(mode="json"), "recipe": json.loads(cfg.recipe_json),
        "metrics": {"quality": row["quality"], "latency": row["latency"], "bytes": row["bytes"], "within_budget": within,
                    "threads_used": bench["threads"], "thread_clamp": bench["thread_clamp"], "cpu": bench["cpu"]},
        "teacher": {"quality": teacher["quality"], "latency": teacher_row["latency"], "bytes": teacher["bytes"]},
        "libraries": library_versions(),
    }


def _input_names(path: Path, runtime: str, output: str) -> list[str]:
    return runtimes.open_session(runtime, path, threads=1, output=output).input_names


def _write_reference(folder: Path, student_dir: Path, rows: list[dict[str, Any]], cfg: BundleStageConfig, text_pairs: bool) -> None:
    """Sentences with the bundle's own outputs (integrity) and the PyTorch student's (fidelity), for verify.

    The outputs come from the manifest's session settings, as predict.py applies them (f32 on every CPU), through
    edgesmith's own session: no bundle code runs here. `session` says what produced them (a GPU bundle built on a
    CPU machine falls back to the CPU provider)."""
    texts = [r["text"][0][:REFERENCE_CHARS] for r in rows]  # verify's limits (the outputs are of the cut texts)
    # Inputs as the bundle takes them: a single-sentence bundle (an encoder scored on STS pairs included) gets
    # first sentences only, since predict.py refuses --pair for it.
    pairs = [r["text"][1][:REFERENCE_CHARS] for r in rows] if text_pairs else None
    feed = encode(folder, texts, pairs)
    session = open_bundle_session(folder)
    # the bundle's outputs as predict.py makes them (texts_per_call texts a call); PyTorch's in one batch
    torch_out = np.asarray(TorchModelSession(load_model(student_dir), cfg.task).run(feed))
    expected = run_as_predict(session, folder, texts, pairs)
    # verify's check 8, here: a bundle that `edgesmith verify` would refuse is never written as finished.
    # padding left out, as verify leaves it out: one-a-call outputs are zero-padded where PyTorch computed logits
    ok, fidelity = get_task(cfg.task).fidelity(expected, torch_out, feed.get("attention_mask"))
    if not ok:
        raise EdgesmithError(f"the chosen model's outputs on the reference texts are too far from PyTorch ({fidelity}), so "
                             "edgesmith verify would refuse the bundle; this is a build defect: report it with the run folder")
    text = json.dumps({"texts": texts, "pairs": pairs, "session": session.settings, "expected": expected.tolist(),
                       "pytorch": torch_out.tolist()})
    if len(text) > REFERENCE_BYTES and len(rows) > 1:  # a tagger's per-token outputs: 8 rows of 512 tokens and ~100 tags
        return _write_reference(folder, student_dir, rows[: len(rows) // 2], cfg, text_pairs)
    if len(text) > REFERENCE_BYTES:
        raise EdgesmithError(f"one reference sentence's outputs take {len(text) / 2**20:.0f} MiB, over the {REFERENCE_BYTES / 2**20:.0f} "
                             "MiB edgesmith verify reads; lower data.max_length")
    (folder / "reference.json").write_text(text)
