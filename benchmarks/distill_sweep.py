"""Distillation variants at one keep ratio, on SST-2 with the harness's teacher: what recovers accuracy?

    python benchmarks/distill_sweep.py NAME [keep=0.33] [keep_heads=..] [keep_ffn=..] [steps=1] [rows=30000]
                                            [any DistillConfig field=value, e.g. learning_rate=2e-4 label_weight=0.5]

Uses edgesmith's own importance, schedule, slicing and distillation code; prints and appends one JSON line to
docs/distill_sweep.jsonl with the PyTorch FP32 accuracy on all 872 SST-2 dev sentences (the INT8 bundles of
these students lost 0 to 0.5 points more in the harness). One variant takes 3-4 minutes on 2 cores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def accuracy(model, tokenizer, rows) -> float:
    import torch

    from pipeline.evaluate import batches

    right, seen = 0, 0
    with torch.no_grad():
        for b in batches(rows, tokenizer, 128, 64):
            pred = model(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.argmax(-1).tolist()
            right += sum(p == r["label"] for p, r in zip(pred, rows[seen:]))
            seen += len(pred)
    return 100 * right / len(rows)


def main() -> None:
    import torch

    from pipeline.config import DistillConfig, StructuredConfig
    from pipeline.data import encode_labels, load_splits, normalize
    from pipeline.evaluate import batches
    from pipeline.importance import fisher_scores, relative, schedule
    from pipeline.modeling import load_pretrained, load_tokenizer, slice_model
    from pipeline.training import distill, tokenize, training_args

    name, opts = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    keep, rows_n, steps = float(opts.pop("keep", 0.33)), int(opts.pop("rows", 30000)), int(opts.pop("steps", 1))
    structured = StructuredConfig(keep_heads=float(opts.pop("keep_heads", keep)), keep_ffn=float(opts.pop("keep_ffn", keep)), steps=steps)
    cfg = DistillConfig(**{k: float(v) for k, v in opts.items()})
    teacher_dir = SHARED / "models" / "minilm-sst2"
    def load_model(folder: Path, attn: str = "eager"):
        return load_pretrained(folder, "classification", "safetensors", attn=attn)[0].eval()

    tokenizer, teacher, student = load_tokenizer(teacher_dir), load_model(teacher_dir, attn="sdpa"), load_model(teacher_dir, attn="sdpa")
    splits = load_splits(str(SHARED / "data" / "sst2"), 0.1)
    train, _ = normalize(splits["train"][:rows_n], None, "label", "train")
    dev, _ = normalize(splits["eval"], None, "label", "dev")
    encode_labels(train, None, "train"), encode_labels(dev, None, "dev")
    feeds = [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches(train[:512], tokenizer, 128, 8)]
    plans = schedule(*fisher_scores(load_model(teacher_dir), feeds, "classification"), structured)
    items = tokenize(train, tokenizer, 128, labels=cfg.label_weight > 0)
    torch.manual_seed(cfg.seed)
    start, current = time.time(), None
    out = ROOT / "runs" / "sweep" / name
    for i, plan in enumerate(plans):  # the distill stage's gradual loop, inlined to skip the stage cache
        slice_model(student, plan if current is None else relative(current, plan))
        current = plan
        share = items[i * len(items) // len(plans): (i + 1) * len(items) // len(plans)]
        distill(student, teacher, tokenizer, share, training_args(out, cfg, cfg.epochs, cfg.learning_rate), "classification", cfg)
    line = {"name": name, "keep_heads": structured.keep_heads, "keep_ffn": structured.keep_ffn, "steps": steps, "rows": rows_n,
            "distill": {k: v for k, v in cfg.model_dump().items() if v != DistillConfig().model_dump()[k]},
            "dev_accuracy_fp32": round(accuracy(student, tokenizer, dev), 2), "minutes": round((time.time() - start) / 60, 1),
            "shape": [(len(p["heads"]), len(p["ffn"])) for p in plans[-1]]}
    print(json.dumps(line))
    with (ROOT / "docs" / "distill_sweep.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
