"""edgesmith's command line: `run`, `profiles`, `verify`, `keygen` (the same verbs from Python: api.py). Bad input: one
line on stderr, exit status 2; a stage that crashed: one line naming its log file, exit status 1."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .api import QUICKSTART
from .distributed import is_main
from .errors import EdgesmithError, StageFailed
from .tasks import TASKS

__all__ = ["QUICKSTART", "main"]


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
    r.add_argument("--dry-run", action="store_true", help="print the stage graph: which stages would be skipped (unchanged) "
                   "or run and why, with estimated times; runs and writes nothing")
    r.add_argument("-v", "--verbose", action="store_true", help="stream what the libraries print to the terminal "
                   "(default: one line per stage, library output in each stage's stage.log)")
    sub.add_parser("profiles", help="list the hardware profiles")
    v = sub.add_parser("verify", help="re-check bundles (folders or .tar.gz) without running their code")
    v.add_argument("bundles", nargs="+", type=Path)
    v.add_argument("--key", type=Path, metavar="PUB", help="ed25519 public key (.pub from keygen): require the bundle's signature")
    v.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS", help="longest the checks that run the bundle's "
                   "tokenizer and model (in a child process) may take (default 120; a genuine bundle takes seconds)")
    k = sub.add_parser("keygen", help="write an ed25519 key pair for signing bundles: OUT_PREFIX.key (mode 0600) and OUT_PREFIX.pub")
    k.add_argument("prefix", type=Path, metavar="OUT_PREFIX")
    return p


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    pairs = {"teacher.model": a.model, "data.source": a.data, "task": a.task, "data.max_train_samples": a.max_train_samples,
             "data.max_eval_samples": a.max_eval_samples, "distill.epochs": a.epochs, "distill.max_steps": a.max_steps,
             "teacher.allow_pickle": True if a.allow_pickle else None, "profiles": a.profile}
    return {k: v for k, v in pairs.items() if v is not None}


def cmd_run(a: argparse.Namespace) -> int:
    from . import api

    if a.dry_run:
        print(api.plan(a.recipe, out=a.out, overrides=_overrides(a), force=a.force, sign_key=a.sign).table())
        return 0
    summary = api.run(a.recipe, out=a.out, overrides=_overrides(a), force=a.force, sign_key=a.sign, verbose=a.verbose)
    if is_main():  # under torchrun or accelerate launch every process gets here; rank 0 prints the one table
        print(summary.table())  # an error keeps every finished stage (runner.run)
    return 0


def cmd_profiles(a: argparse.Namespace) -> int:
    from edgesmith import profiles as profile_store

    for name in sorted(profile_store.available()):
        p = profile_store.load(name)
        tries = ", ".join(f"{r} {'/'.join(ps)}" for r, ps in p.runtimes.items())
        print(f"{name:12s} {tries:55s} threads={p.threads} batch={p.batch} seq={p.seq_len}  {p.description}")
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 1 to 86400")
    return value


def cmd_verify(a: argparse.Namespace) -> int:
    from .verify import TIMEOUT_S, verify

    for bundle in a.bundles:
        for line in verify(bundle, a.key, a.timeout or TIMEOUT_S):
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
    except StageFailed as err:
        print(f"edgesmith: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgesmith: interrupted; finished stages are kept, the same command continues the run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
