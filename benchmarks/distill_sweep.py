"""Distillation variants at one keep ratio, on SST-2 with the harness's teacher: what recovers accuracy?

    python benchmarks/distill_sweep.py NAME [keep=0.33] [keep_heads=..] [keep_ffn=..] [steps=1] [rows=30000]
                                            [any DistillConfig field=value, e.g. learning_rate=2e-4 label_weight=0.5]

Uses edgesmith's own importance, schedule, slicing and distillation code; prints and appends one JSON line to
docs/distill_sweep.jsonl with the PyTorch FP32 accuracy on all 872 SST-2 dev sentences (before quantization;
the harness measures the INT8 bundles). One variant takes 3-4 minutes on 2 cores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def _load(folder: Path, attn: str) -> Any:
    """The fine-tuned teacher as a stock transformers model (the harness's teacher stage does the same)."""
    from edgesmith.modeling import load_pretrained

    return load_pretrained(folder, "classification", "safetensors", attn=attn)[0].eval()


def main() -> None:
    import torch

    from edgesmith.config import DistillConfig, StructuredConfig
    from edgesmith.data import encode_labels, load_splits, normalize
    from edgesmith.evaluate import batches, outputs, quality
    from edgesmith.importance import fisher_scores, schedule
    from edgesmith.modeling import head_labels, load_tokenizer, save_model
    from edgesmith.runtimes import open_session
    from edgesmith.training import distill_gradual, tokenize

    name, opts = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    keep, rows_n, steps = float(opts.pop("keep", 0.33)), int(opts.pop("rows", 30000)), int(opts.pop("steps", 1))
    structured = StructuredConfig(keep_heads=float(opts.pop("keep_heads", keep)), keep_ffn=float(opts.pop("keep_ffn", keep)), steps=steps)
    cfg = DistillConfig(**{k: float(v) for k, v in opts.items()})
    teacher_dir = SHARED / "models" / "minilm-sst2"
    tokenizer, teacher, student = load_tokenizer(teacher_dir), _load(teacher_dir, "sdpa"), _load(teacher_dir, "sdpa")
    splits = load_splits(str(SHARED / "data" / "sst2"), 0.1)
    train, _ = normalize(splits["train"][:rows_n], None, "label", "train")
    dev, _ = normalize(splits["eval"], None, "label", "dev")
    head = head_labels(teacher.config)  # both splits by the head's labels: numbering each split alone can disagree
    encode_labels(train, head, "train"), encode_labels(dev, head, "dev")
    feeds = [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches(train[:512], tokenizer, 128, 8)]
    plans = schedule(*fisher_scores(_load(teacher_dir, "eager"), feeds, "classification"), structured)
    items = tokenize(train, tokenizer, 128, labels=cfg.label_weight > 0, task="classification")
    torch.manual_seed(cfg.seed)
    start, out = time.time(), ROOT / "runs" / "sweep" / name
    distill_gradual(student, teacher, tokenizer, items, plans, out, "classification", cfg)  # what the distill stage runs
    save_model(student, tokenizer, out / "model", "classification")
    session = open_session("torch", out / "model", threads=torch.get_num_threads())
    dev_accuracy = quality(outputs(session, dev, tokenizer, 128, "classification"), dev, "classification", None)["metric"]
    line = {"name": name, "keep_heads": structured.keep_heads, "keep_ffn": structured.keep_ffn, "steps": steps, "rows": rows_n,
            "distill": {k: v for k, v in cfg.model_dump().items() if v != DistillConfig().model_dump()[k]},
            "dev_accuracy_fp32": round(dev_accuracy, 2), "minutes": round((time.time() - start) / 60, 1),
            "shape": [(len(p["heads"]), len(p["ffn"])) for p in plans[-1]]}
    print(json.dumps(line))
    with (ROOT / "docs" / "distill_sweep.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
