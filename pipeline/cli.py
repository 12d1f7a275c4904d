"""edgesmith's command line: `run`, `profiles`, `verify`, `keygen`. Bad input: one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import EdgesmithError
from .tasks import TASKS

QUICKSTART = Path(__file__).with_name("quickstart.yaml")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgesmith", description="Compress a fine-tuned BERT-family model into verified edge bundles.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a recipe (no recipe: the offline MiniLM quickstart)")
    r.add_argument("recipe", nargs="?", type=Path, help="recipe YAML (default: the built-in quickstart)")
    r.add_argument("--model", help="local model directory (or 'minilm')")
    r.add_argument("--data", help="folder with train/dev files, a CSV/TSV/JSONL file, a datasets name, or 'pydoc'")
    r.add_argument("--task", choices=list(TASKS))
    r.add_argument("--profile", action="append", help="profile name or YAML path (repeatable)")
    r.add_argument("--out", type=Path, help="run folder (default: runs/RECIPE-NAME)")
    r.add_argument("--force", action="append", default=[], help="redo this stage even if unchanged (repeatable)")
    r.add_argument("--allow-pickle", action="store_true", help="accept a pickle checkpoint (loaded with weights_only=True)")
    r.add_argument("--max-train-samples", type=int)
    r.add_argument("--max-eval-samples", type=int)
    r.add_argument("--epochs", type=float, help="distillation epochs")
    r.add_argument("--max-steps", type=int, help="distillation steps (overrides epochs)")
    r.add_argument("--sign", type=Path, metavar="KEY", help="sign each bundle with this ed25519 private key (from `edgesmith keygen`)")
    sub.add_parser("profiles", help="list the hardware profiles")
    v = sub.add_parser("verify", help="re-check bundles (folders or .tar.gz) without running their code")
    v.add_argument("bundles", nargs="+", type=Path)
    v.add_argument("--key", type=Path, metavar="PUB", help="ed25519 public key (.pub from keygen): require the bundle's signature")
    k = sub.add_parser("keygen", help="write an ed25519 key pair for signing bundles: OUT_PREFIX.key (mode 0600) and OUT_PREFIX.pub")
    k.add_argument("prefix", type=Path, metavar="OUT_PREFIX")
    return p


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    pairs = {"teacher.model": a.model, "data.source": a.data, "task": a.task, "data.max_train_samples": a.max_train_samples,
             "data.max_eval_samples": a.max_eval_samples, "distill.epochs": a.epochs, "distill.max_steps": a.max_steps,
             "teacher.allow_pickle": True if a.allow_pickle else None, "profiles": a.profile}
    return {k: v for k, v in pairs.items() if v is not None}


def _preflight(recipe: Any, profiles: list[Any]) -> None:
    """Refuse bad inputs (model, checkpoint, data, labels, keep ratios) and budgets no compression in this pipeline
    can meet, before any work is done: a refusal leaves no run folder and no log."""
    from .arch import dims
    from .runtimes import RUNTIMES
    from .stages.teacher import check_inputs

    config = check_inputs(recipe)
    d = dims(config)
    structured = recipe.prune.structured
    if "structured" in recipe.prune.branches and structured.fit_profile is None:  # a fit profile picks the ratio itself
        structured.check_keep(d["layers"], d["heads"], d["ffn"])
    embed_mb = config.vocab_size * d["hidden"] / 2**20  # INT8 word embedding: a floor on file size
    for p in profiles:
        size = p.budgets.size_mb
        if size is not None and size < embed_mb:
            raise EdgesmithError(f"profile {p.name}: budgets.size_mb={size} is impossible: the word embedding alone is "
                                 f"{embed_mb:.1f} MB at INT8; raise the budget or pick a smaller-vocabulary model")
        lacking = [r for r in p.runtimes if RUNTIMES[r].export_format not in recipe.export.formats]  # what it is built from
        if lacking:
            raise EdgesmithError(f"profile {p.name} runs {lacking} but the recipe's export.formats is {list(recipe.export.formats)}; "
                                 f"add {[RUNTIMES[r].export_format for r in lacking]} to export.formats or drop the runtime from the profile")
        if p.seq_len > config.max_position_embeddings:
            raise EdgesmithError(f"profile {p.name}: seq_len {p.seq_len} exceeds the model's {config.max_position_embeddings} positions; lower seq_len")


def cmd_run(a: argparse.Namespace) -> int:
    from edgesmith import profiles as profile_store

    from .config import load_recipe
    from .registry import STAGES
    from . import runner, stages  # noqa: F401

    recipe = load_recipe(a.recipe or QUICKSTART, _overrides(a))
    unknown = set(a.force) - set(STAGES)
    if unknown:
        raise EdgesmithError(f"--force {sorted(unknown)}: unknown stage; use one of {sorted(STAGES)}")
    chosen = [profile_store.load(n) for n in recipe.profiles]
    _preflight(recipe, chosen)
    out = a.out or Path("runs") / recipe.name
    start = time.time()
    log = lambda msg: print(f"[{time.time() - start:7.1f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    runner.run(recipe, chosen, out, set(a.force), log, sign_key=a.sign)  # an error keeps every finished stage (runner.run)
    summary = json.loads((out / "summary.json").read_text())
    print(json.dumps(summary["profiles"], indent=1))
    print(f"report: {out / 'report.html'}  summary: {out / 'summary.json'}")
    return 0


def cmd_profiles(a: argparse.Namespace) -> int:
    from edgesmith import profiles as profile_store

    for name in sorted(profile_store.available()):
        p = profile_store.load(name)
        tries = ", ".join(f"{r} {'/'.join(ps)}" for r, ps in p.runtimes.items())
        print(f"{name:12s} {tries:55s} threads={p.threads} batch={p.batch} seq={p.seq_len}  {p.description}")
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    from .verify import verify

    for bundle in a.bundles:
        for line in verify(bundle, a.key):
            print(f"{bundle}: ok: {line}")
    return 0


def cmd_keygen(a: argparse.Namespace) -> int:
    from .signing import keygen

    private, public = keygen(a.prefix)
    print(f"private key: {private} (keep it secret; pass it to `edgesmith run --sign`)")
    print(f"public key:  {public} (give it to whoever runs `edgesmith verify --key`)")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # edgesmith never downloads models
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return {"run": cmd_run, "profiles": cmd_profiles, "verify": cmd_verify, "keygen": cmd_keygen}[a.command](a)
    except EdgesmithError as err:
        print(f"edgesmith: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
