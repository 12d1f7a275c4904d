"""What recovers a deeply pruned MiniLM on SST-2, measured (docs/recovery.md). The experiments' results are appended
to docs/recovery.jsonl:

    python benchmarks/recovery.py shapes                      p50 of sliced shapes vs the OpenVINO INT8 teacher
        (LAYERS:WIDTH keeps that share of heads and FFN neurons; LAYERS:HEADS:FFN gives the two shares apart;
        a last argument nncf=SETTING quantizes every shape but the teacher with that NNCF setting of
        edgesmith.runtimes.openvino.nncf_settings, e.g. nncf=smoothquant-off; the teacher keeps NNCF's default)
    python benchmarks/recovery.py retrain-free 6:0.5 4:0.5    dev accuracy without training: plain vs reconstructed
    python benchmarks/recovery.py sts-slices 3:1 4:1:0.5      the packaged all-MiniLM-L6-v2 sliced, untrained: Spearman
        x100 on all 1,500 STS-B dev pairs, PyTorch FP32 (Fisher scores and the depth search, importance.choose_layers,
        on the first 512 SST-2 training sentences of 10+ words, as recipes/minilm-sts.yaml's prune stage takes them;
        FFN kept in multiples of 16, eager attention as the prune stage loads it); a shape followed by +recon is scored
        after least-squares reconstruction as well
    python benchmarks/recovery.py fit-speedup 4 3.0           prune.structured.fit_speedup's walk on the SST-2 teacher
    python benchmarks/recovery.py distill 4:0.33 15000 attn,aug_attn
        short distillations of one shape; variants: base, attn, recon, recon_attn, aug_attn, labels_attn
    python benchmarks/recovery.py teacher-precision 4:0.33 60
        seconds per distillation step (batch 32, attention terms) with the teacher's forward in fp32 and in bf16
        (distill.teacher_precision), 3 interleaved rounds of that many steps each, median
    python benchmarks/recovery.py step-profile 4:0.33 40
        where one distillation step's time goes (the distill stage's loss terms, bf16 teacher, fused AdamW as the
        Trainer uses on torch >= 2.8), batches of 32 training sentences in the order the Trainer's length grouping
        gives roughly (sorted within chunks of 50 batches), first 5 steps not counted; a third argument, comma-separated,
        tries changes the stage does not make: `bf16-student` (the student's forward and losses under bf16 autocast,
        backward outside it, as torch's mixed-precision recipe has it), `frozen-embeddings` (the student's word
        embeddings, 11.7M of its parameters, not trained), `batch=N` (batches of N rows instead of 32; ms per row
        is recorded too)

Latency: 1 thread, batch 1, seq 128, each artifact in its own process, 5 interleaved rounds, median. Accuracy: all
872 SST-2 dev sentences, one seed: differences under ~1 point are within the noise (paired SE ~0.9 points).
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TEACHER, DATA = SHARED / "models" / "minilm-sst2", SHARED / "data" / "sst2"
LOG = ROOT / "docs" / "recovery.jsonl"


def record(entry: dict[str, Any]) -> None:
    from edgesmith.stages.bench import _cpu_name

    entry = {"cpu": _cpu_name()} | entry  # ratios move with the CPU: every record says which one it came from
    print(json.dumps(entry), flush=True)
    with LOG.open("a") as f:
        f.write(json.dumps(entry | {"date": time.strftime("%Y-%m-%d")}) + "\n")


def read(name: str, n: int | None = None) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text().splitlines()[1:]
    return [{"text": [line.split("\t")[0]], "label": int(line.split("\t")[1])} for line in lines[:n]]


def feeds(rows: list[dict[str, Any]], tokenizer: Any, size: int) -> list[dict[str, Any]]:
    import torch

    from edgesmith.evaluate import batches

    return [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches(rows, tokenizer, 128, size)]


def accuracy(model: Any, dev: list[dict[str, Any]], dev_feeds: list[dict[str, Any]]) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        preds = torch.cat([model(**b).logits.argmax(-1) for b in dev_feeds])
    return 100 * float((preds == torch.tensor([r["label"] for r in dev])).float().mean())


def plan_for(teacher: Any, calib: list[dict[str, Any]], layers: int, width: float, ffn_width: float | None = None) -> list[dict[str, Any]]:
    """The slice plan the prune stage would make: `width` of the heads and `ffn_width` (default: `width`) of the FFN
    neurons in the `layers` layers chosen greedily."""
    from edgesmith.config import StructuredConfig
    from edgesmith.importance import choose_layers, fisher_scores, select

    heads, ffn = fisher_scores(teacher, calib, "classification")
    kept, _ = choose_layers(teacher, calib, "classification", layers if layers < 6 else 1.0)
    return select(heads, ffn, StructuredConfig(keep_heads=width, keep_ffn=width if ffn_width is None else ffn_width), kept)


def setup() -> tuple[Any, Any, list[dict[str, Any]], list[dict[str, Any]]]:
    from edgesmith.modeling import load_pretrained, load_tokenizer

    tokenizer = load_tokenizer(TEACHER)
    teacher, _ = load_pretrained(TEACHER, "classification", "safetensors", attn="sdpa")
    return tokenizer, teacher, read("dev.tsv"), feeds(read("train.tsv", 512), tokenizer, 8)


def shapes(specs: list[tuple[int, float, float]], setting: str = "smoothquant") -> None:
    from edgesmith.config import Profile
    from edgesmith.exporters.onnx import export_onnx
    from edgesmith.latency import measure
    from edgesmith.modeling import load_pretrained, slice_model
    from edgesmith.runtimes import RUNTIMES, input_names_for
    from edgesmith.runtimes.openvino import nncf_int8

    tokenizer, teacher, _, calib = setup()
    profile = Profile(name="one-thread", description="1 thread, batch 1, seq 128", runtimes={"openvino": ("int8-static",)}, threads=1)
    work = Path(tempfile.mkdtemp())
    quant_feeds = [{k: v.numpy() for k, v in b.items()} for b in feeds(read("train.tsv", 32), tokenizer, 1)]
    paths = {}
    for layers, width, ffn_width in [(6, 1.0, 1.0)] + specs:
        whole = (layers, width, ffn_width) == (6, 1.0, 1.0)
        model = copy.deepcopy(teacher) if whole else slice_model(copy.deepcopy(teacher), plan_for(teacher, calib, layers, width, ffn_width))
        folder = work / f"{layers}-{width}-{ffn_width}"
        folder.mkdir()
        export_onnx(model, "classification", input_names_for(TEACHER), folder / "raw.onnx", opset=17)
        ir, _ = RUNTIMES["openvino"].convert(folder / "raw.onnx", folder)
        (folder / "int8").mkdir()  # the teacher keeps NNCF's default: the one-liner the bar is measured against
        paths[(layers, width, ffn_width)] = nncf_int8(ir, folder / "int8" / "model.xml", quant_feeds, "smoothquant" if whole else setting)
    p50 = {k: [] for k in paths}
    for _ in range(5):
        for k, path in paths.items():
            p50[k].append(measure("openvino", path, profile, 1, tokenizer.vocab_size, 10, 100)["p50_ms"])
    base = statistics.median(p50[(6, 1.0, 1.0)])
    for (layers, width, ffn_width), values in p50.items():
        ms = statistics.median(values)
        shape = {"width": width} if ffn_width == width else {"heads": width, "ffn": ffn_width}
        record({"experiment": "shapes", "layers": layers} | shape | ({"nncf": setting} if setting != "smoothquant" else {})
               | {"ov_int8_p50_ms": ms, "speedup_vs_ov_int8_teacher": base / ms})
    shutil.rmtree(work)


def fit_speedup(layers: int, target: float) -> None:
    """The product's own walk (prune.structured.fit_speedup): the widest keep ratio of `layers` layers whose OpenVINO
    INT8 build is `target` times the OpenVINO INT8 teacher (p50, 1 thread, seq 128, 40 runs each)."""
    from edgesmith.config import Profile, StructuredConfig
    from edgesmith.fit import fit_keep_ratio
    from edgesmith.importance import choose_layers, fisher_scores
    from edgesmith.modeling import save_model
    from edgesmith.stages.bench import _cpu_name

    tokenizer, teacher, _, calib = setup()
    profile = Profile(name="one-thread", description="1 thread, batch 1, seq 128", runtimes={"openvino": ("int8-static",)}, threads=1)
    cfg = StructuredConfig(keep_layers=layers, fit_profile="one-thread", fit_speedup=target)
    scores = fisher_scores(teacher, calib, "classification")
    kept, _ = choose_layers(teacher, calib, "classification", layers)
    quant_feeds = [{k: v.numpy() for k, v in b.items()} for b in feeds(read("train.tsv", 32), tokenizer, 1)]
    with tempfile.TemporaryDirectory() as work:
        # The walk reads the teacher the way the prune stage hands it over: as the teacher stage saved it.
        save_model(teacher, tokenizer, Path(work) / "teacher", "classification")
        fit = fit_keep_ratio(Path(work) / "teacher", scores, cfg, profile, "classification", quant_feeds, Path(work) / "fit", kept)
    record({"experiment": "fit-speedup", "layers": layers, "cpu": _cpu_name()} | fit)


def retrain_free(specs: list[tuple[int, float]]) -> None:
    from edgesmith.modeling import slice_model
    from edgesmith.reconstruct import reconstruct

    tokenizer, teacher, dev, calib = setup()
    dev_feeds = feeds(dev, tokenizer, 64)
    for layers, width in specs:
        plan = plan_for(teacher, calib, layers, width)
        scaled, _ = reconstruct(teacher, plan, calib)
        record({"experiment": "retrain-free", "layers": layers, "width": width, "teacher": accuracy(teacher, dev, dev_feeds),
                "plain": accuracy(slice_model(copy.deepcopy(teacher), plan), dev, dev_feeds),
                "reconstructed": accuracy(slice_model(copy.deepcopy(teacher), scaled), dev, dev_feeds)})


def sts_slices(specs: list[tuple[int, float, float]], recon: set[tuple[int, float, float]]) -> None:
    import torch

    from edgesmith.config import StructuredConfig
    from edgesmith.evaluate import batches
    from edgesmith.importance import choose_layers, fisher_scores, select
    from edgesmith.modeling import check_model_dir, load_pretrained, load_tokenizer, resolve_model_dir, slice_model
    from edgesmith.reconstruct import reconstruct
    from edgesmith.tasks import get
    from edgesmith.tasks.embedding import spearman

    folder = resolve_model_dir("minilm")
    tokenizer, task = load_tokenizer(folder), get("embedding")
    # eager attention, as the prune stage loads the teacher (modeling.load_model) for its scores and depth search
    teacher, _ = load_pretrained(folder, "embedding", check_model_dir(folder, False), attn="eager")
    sentences = [r for r in read("train.tsv") if len(r["text"][0].split()) >= 10][:512]
    calib = feeds(sentences, tokenizer, 8)
    pairs = [line.split("\t") for line in (SHARED / "data" / "stsb" / "dev.tsv").read_text().splitlines()[1:]]
    # every first sentence, then every second one, as the embedding task's spearman reads them
    sts = [{"text": [p[0]]} for p in pairs] + [{"text": [p[1]]} for p in pairs]
    sts_feeds = [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches(sts, tokenizer, 128, 64)]

    def score(model: Any) -> float:
        with torch.no_grad():
            out = torch.cat([task.output(model(**b), b["attention_mask"]) for b in sts_feeds])
        return spearman(out.numpy(), [float(p[2]) for p in pairs])

    heads, ffn = fisher_scores(teacher, calib, "embedding")
    record({"experiment": "sts-slices", "layers": 6, "heads": 1.0, "ffn": 1.0, "spearman": score(teacher)})
    for spec in specs:
        layers, head_share, ffn_share = spec
        kept, search = choose_layers(teacher, calib, "embedding", layers if layers < 6 else 1.0)
        plan = select(heads, ffn, StructuredConfig(keep_heads=head_share, keep_ffn=ffn_share, ffn_multiple_of=16), kept)
        entry = {"experiment": "sts-slices", "layers": layers, "kept_layers": kept, "depth_search": search[:3],
                 "heads": head_share, "ffn": ffn_share, "spearman": score(slice_model(copy.deepcopy(teacher), plan))}
        if spec in recon:
            entry["spearman_reconstructed"] = score(slice_model(copy.deepcopy(teacher), reconstruct(teacher, plan, calib)[0]))
        record(entry)


def distill_variants(layers: int, width: float, rows: int, variants: list[str]) -> None:
    import torch

    from edgesmith.attention_kd import LayerMap
    from edgesmith.augment import augment_rows
    from edgesmith.config import AugmentConfig, DistillConfig
    from edgesmith.modeling import slice_model
    from edgesmith.reconstruct import reconstruct
    from edgesmith.training import distill, tokenize, training_args

    tokenizer, teacher, dev, calib = setup()
    dev_feeds, train = feeds(dev, tokenizer, 64), read("train.tsv", rows)
    plan = plan_for(teacher, calib, layers, width)
    scaled, _ = reconstruct(teacher, plan, calib)
    for variant in variants:
        start = time.time()
        torch.manual_seed(0)
        student = slice_model(copy.deepcopy(teacher), scaled if "recon" in variant else plan)
        cfg = DistillConfig(attention_weight=1.0 if "attn" in variant else 0.0, label_weight=0.5 if "labels" in variant else 0.0)
        texts = [dict(r) for r in train]
        if "aug" in variant:
            embeddings = teacher.get_input_embeddings().weight.detach().float().numpy()
            texts += augment_rows(texts, tokenizer, embeddings, AugmentConfig(copies=2))
            random.Random(0).shuffle(texts)
        before = accuracy(student, dev, dev_feeds)
        with tempfile.TemporaryDirectory() as out:
            args = training_args(Path(out), cfg, cfg.epochs, cfg.learning_rate)
            distill(student, teacher, tokenizer, tokenize(texts, tokenizer, 128, labels="labels" in variant, task="classification"), args,
                    "classification", cfg, LayerMap.from_plan(plan))
        kept = [i for i, p in enumerate(plan) if not p.get("dropped")]
        record({"experiment": "distill", "layers": kept, "width": width, "rows": rows, "variant": variant, "start_acc": before,
                "acc": accuracy(student, dev, dev_feeds), "minutes": (time.time() - start) / 60})


def teacher_precision(layers: int, width: float, steps: int) -> None:
    import torch

    from edgesmith.attention_kd import LayerMap
    from edgesmith.config import DistillConfig
    from edgesmith.modeling import slice_model
    from edgesmith.stages.bench import _cpu_name
    from edgesmith.training import distill, native_bf16, tokenize, training_args

    tokenizer, teacher, _, calib = setup()
    plan = plan_for(teacher, calib, layers, width)
    texts = tokenize(read("train.tsv", 32 * steps), tokenizer, 128, labels=False, task="classification")
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    losses: dict[str, float] = {}
    for _ in range(3):
        for precision in seconds:
            torch.manual_seed(0)
            student = slice_model(copy.deepcopy(teacher), plan)
            cfg = DistillConfig(attention_weight=1.0, max_steps=steps, teacher_precision=precision)
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                stats = distill(student, teacher, tokenizer, texts, training_args(Path(out), cfg, 1, cfg.learning_rate),
                                "classification", cfg, LayerMap.from_plan(plan))
                seconds[precision].append((time.perf_counter() - start) / steps)
            losses[stats["teacher_precision"]] = stats["train_loss"]
    fp32, bf16 = statistics.median(seconds["fp32"]), statistics.median(seconds["bf16"])
    record({"experiment": "teacher-precision", "layers": layers, "width": width, "steps": steps, "threads": torch.get_num_threads(),
            "cpu": _cpu_name(), "native_bf16": native_bf16(torch.device("cpu")),
            "s_per_step_fp32": fp32, "s_per_step_bf16": bf16, "speedup": fp32 / bf16, "train_loss": losses})


def step_profile(layers: int, width: float, steps: int, changes: tuple[str, ...] = ()) -> None:
    import contextlib

    import torch

    from edgesmith.arch import dims
    from edgesmith.attention_kd import Capture, LayerMap, attention_loss
    from edgesmith.config import DistillConfig
    from edgesmith.modeling import slice_model
    from edgesmith.stages.bench import _cpu_name
    from edgesmith.tasks import get as get_task
    from edgesmith.training import as_fp32, kd_loss, teacher_context, tokenize

    sizes = [c.removeprefix("batch=") for c in changes if c.startswith("batch=")]
    if not all(n.isdigit() and int(n) > 0 for n in sizes) or len(sizes) > 1 or not 5 < steps <= 50:
        raise SystemExit("step-profile: give more than 5 and at most 50 steps, and batch=N once, N a positive integer")
    unknown = {c for c in changes if not c.startswith("batch=")} - {"bf16-student", "frozen-embeddings"}
    if unknown:  # refused before the teacher is loaded
        raise SystemExit(f"unknown step-profile changes {sorted(unknown)}; use bf16-student, frozen-embeddings, batch=N")
    batch_size = int(sizes[0]) if sizes else 32
    tokenizer, teacher, _, calib = setup()
    plan, cfg = plan_for(teacher, calib, layers, width), DistillConfig(attention_weight=1.0, teacher_precision="bf16")
    lmap, student = LayerMap.from_plan(plan), slice_model(copy.deepcopy(teacher), plan).train()
    items = tokenize(read("train.tsv", batch_size * 50), tokenizer, 128, labels=False, task="classification")
    items.sort(key=lambda x: len(x["input_ids"]))
    batches = random.Random(0).sample([items[i : i + batch_size] for i in range(0, len(items), batch_size)], steps)
    collate, (context, precision) = get_task("classification").collator(tokenizer), teacher_context("bf16", torch.device("cpu"))
    captures, head_size = (Capture(student), Capture(teacher.eval())), dims(teacher.config)["head_size"]
    if "frozen-embeddings" in changes:
        student.get_input_embeddings().weight.requires_grad_(False)
    student_context = torch.autocast("cpu", dtype=torch.bfloat16) if "bf16-student" in changes else contextlib.nullcontext()
    trained = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4, weight_decay=0.01, fused=True)
    parts: dict[str, list[float]] = {k: [] for k in ("teacher forward", "student forward", "loss terms", "backward", "optimizer")}
    for i, rows in enumerate(batches):
        batch = collate(rows)
        batch.pop("labels", None)
        marks = [time.perf_counter()]
        with torch.no_grad(), context:
            t = as_fp32(teacher(**batch, output_hidden_states=True))
        marks.append(time.perf_counter())
        with student_context:
            s = student(**batch, output_hidden_states=True)
            marks.append(time.perf_counter())
            mask = batch["attention_mask"]
            loss = kd_loss(s, t, mask, "classification", cfg, None, lmap.layers) + attention_loss(*captures, lmap, mask, head_size)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad()
        marks.append(time.perf_counter())
        for k, (a, b) in zip(parts, zip(marks, marks[1:])):
            parts[k].append(b - a) if i >= 5 else None
    ms = {k: 1000 * statistics.mean(v) for k, v in parts.items()}
    record({"experiment": "step-profile", "layers": layers, "width": width, "steps": steps - 5, "teacher_precision": precision,
            "changes": list(changes), "batch_size": batch_size, "threads": torch.get_num_threads(), "cpu": _cpu_name(), "ms_per_step": ms,
            "total_ms": sum(ms.values()), "ms_per_row": sum(ms.values()) / batch_size})


def _layers(text: str) -> int:
    """A kept-layer count of the 6-layer MiniLMs: 1 would read as the share 1.0 (all six kept) in keep_layers."""
    layers = int(text)
    if not 2 <= layers <= 6:
        raise ValueError(text)
    return layers


def _specs(args: list[str]) -> list[tuple[int, float]]:
    return [(_layers(a.split(":")[0]), float(a.split(":")[1])) for a in args]


def _shape_specs(args: list[str]) -> list[tuple[int, float, float]]:
    """LAYERS:WIDTH or LAYERS:HEADS:FFN, as (layers, heads, ffn)."""
    parts = [a.split(":") for a in args]
    if any(len(p) not in (2, 3) for p in parts):
        raise ValueError(args)
    return [(_layers(p[0]), float(p[1]), float(p[-1])) for p in parts]


def parse(argv: list[str]) -> Callable[[], None]:
    """The experiment the command line asks for, its arguments read now: a malformed one (`abc` for a step count,
    `4` for `4:0.33`) is refused in one line before anything loads."""
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "shapes":
            setting = rest.pop()[len("nncf="):] if rest and rest[-1].startswith("nncf=") else "smoothquant"
            if setting not in ("smoothquant", "smoothquant-off"):
                raise ValueError(setting)
            shape_specs = _shape_specs(rest) or [(6, 0.4, 0.4), (4, 0.5, 0.5), (4, 0.4, 0.4), (4, 0.33, 0.33), (3, 0.6, 0.6), (3, 0.5, 0.5), (3, 0.4, 0.4)]
            return lambda: shapes(shape_specs, setting)
        if command == "fit-speedup":
            layers, speedup = int(rest[0]), float(rest[1])
            return lambda: fit_speedup(layers, speedup)
        if command == "sts-slices":
            plain = [a.removesuffix("+recon") for a in rest]
            shape_specs = _shape_specs(plain) or [(3, 1.0, 1.0), (4, 1.0, 1.0)]
            recon = {spec for spec, a in zip(shape_specs, rest) if a.endswith("+recon")}
            return lambda: sts_slices(shape_specs, recon)
        if command == "retrain-free":
            specs = _specs(rest) or [(6, 0.5), (4, 0.5)]
            return lambda: retrain_free(specs)
        (layers, width), = _specs(rest[:1]) or [(None, None)]
        if command == "distill":
            rows, variants = int(rest[1]), rest[2].split(",")
            return lambda: distill_variants(layers, width, rows, variants)
        if command == "teacher-precision":
            steps = int(rest[1])
            return lambda: teacher_precision(layers, width, steps)
        if command == "step-profile":
            steps, changes = int(rest[1]), tuple(rest[2].split(",")) if len(rest) > 2 else ()
            return lambda: step_profile(layers, width, steps, changes)
    except (ValueError, IndexError):
        raise SystemExit(f"recovery.py {command}: missing or malformed arguments {rest}; shapes are LAYERS:WIDTH "
                         "(4:0.33) or LAYERS:HEADS:FFN (4:0.25:0.4) with 2 to 6 layers, counts are integers "
                         "(see the usage at the top of benchmarks/recovery.py)") from None
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    parse(sys.argv[1:])()
