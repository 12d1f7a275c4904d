"""Measure this bundle's latency on the device it is copied to. Needs numpy, `tokenizers` and the runtime.

    python bench.py [--threads N] [--batch B] [--seq S] [--iterations N]
Defaults come from the profile in manifest.json; the model is opened with its "session" settings, as predict.py
opens it (--threads changes the thread count and nothing else). Prints the settings applied, p50/p90/p99
latency (ms) and throughput (sequences/s), as one JSON line. Without --seq, where the bundle accepts longer inputs
than the profile's sequence length (manifest.json's inputs.max_length), "longest" holds p50/p90 at that length too:
the figures the profile's p90 budget was held to. The bundle's files are checked against manifest.json's sha256
first, as predict.py checks them. --batch B times calls of B texts (refused where one call's activations, estimated
from config.json, would take more than half the device's memory); a bundle whose manifest says texts_per_call 1
(ONNX Runtime dynamic INT8) is run by predict.py one text a call, so for it batch 1 is the figure that applies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

try:
    import numpy as np
except ImportError as err:
    sys.exit(f"bench.py: error: this bundle needs the Python package 'numpy' ({err}): pip install numpy")

sys.dont_write_bytecode = True  # no __pycache__/ in the bundle: `edgesmith verify` refuses files the manifest does not list
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # predict.py beside it, also under `python -I` or -P
from predict import THREADS, Predictor, count, read_manifest, reporting  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    manifest = reporting(p, read_manifest)
    prof, longest = reporting(p, lambda: (manifest["profile"], manifest["inputs"]["max_length"]))
    p.add_argument("--threads", type=THREADS, help="override only the thread count of manifest.json's session settings "
                                                   "(default: the count the benchmark measured with)")
    p.add_argument("--batch", type=count(1, 4096, "a batch of sentences"), default=prof["batch"])
    p.add_argument("--seq", type=count(1, longest, "the longest input the bundle accepts"),
                   help=f"default: the profile's {prof['seq_len']}, and {longest} (the longest input the bundle accepts) "
                        "as well where that is longer")
    p.add_argument("--warmup", type=count(0, 10**6, "warm-up runs"), default=10)
    p.add_argument("--iterations", type=count(1, 10**7, "timed runs"), default=100)
    a = p.parse_args()
    model = reporting(p, lambda: Predictor(threads=a.threads))
    seq = prof["seq_len"] if a.seq is None else a.seq
    too_big = reporting(p, lambda: sizing_error(json.loads((HERE / "config.json").read_text(encoding="utf-8")),
                                                a.batch, max(seq, longest) if a.seq is None else seq, device_memory()))
    if too_big:
        p.exit(2, f"{p.prog}: error: {too_big}\n")
    times = reporting(p, lambda: _times(model, a.batch, seq, a.warmup, a.iterations))
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    out = {"session": model.settings, "batch": a.batch, "seq": seq, "p50_ms": round(p50, 3), "p90_ms": round(p90, 3),
           "p99_ms": round(p99, 3), "throughput": round(a.batch * 1000 / float(np.mean(times)), 2)}
    if a.seq is None and longest > seq:  # as the benchmark measured it: half the iterations, after 3 warm-up calls
        p50, p90 = np.percentile(reporting(p, lambda: _times(model, a.batch, longest, 3, max(10, a.iterations // 2))), [50, 90])
        out["longest"] = {"seq": longest, "p50_ms": round(p50, 3), "p90_ms": round(p90, 3)}
    print(json.dumps(out))


def sizing_error(config: dict, batch: int, seq: int, memory: int | None) -> str | None:
    """Why one call of `batch` texts of `seq` tokens would not fit in `memory` bytes (half of it: the runtime, the
    model and the rest of the device need the other half), or None. The call's float32 activations are estimated
    from config.json: a layer's attention scores and FFN intermediate, two copies each, and six hidden-size
    buffers; runtimes fuse and reuse buffers, so this errs high. A device that cannot say its memory is not
    checked; inside a container whose memory limit is below the machine's, the check is lenient."""
    try:  # BERT, RoBERTa and ELECTRA name them so; DistilBERT as n_heads, hidden_dim and dim
        heads, ffn, hidden = (int(config[k] if k in config else config[alt]) for k, alt in
                              (("num_attention_heads", "n_heads"), ("intermediate_size", "hidden_dim"), ("hidden_size", "dim")))
        per_text = 4 * seq * (2 * heads * seq + 2 * ffn + 6 * hidden)
        if memory is None or min(heads, ffn, hidden) < 1 or batch * per_text <= memory / 2:
            return None  # no memory figure, or numbers that say nothing about size: the call itself will tell
        need, fits = f"{batch * per_text / 2**30:.1f}", int(memory / 2 // per_text)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    fix = f"use --batch {fits} or less" if fits else "even one text of this length does not fit; use a shorter --seq"
    return (f"--batch {batch} at {seq} tokens needs about {need} GiB for one call's activations (estimated from "
            f"config.json), more than half of this device's {memory / 2**30:.1f} GiB; {fix}")


def device_memory() -> int | None:
    """This device's physical memory in bytes, where the OS says it (Linux, Android, macOS)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        return None


def _times(model: Predictor, batch: int, seq: int, warmup: int, iterations: int) -> list[float]:
    rng = np.random.default_rng(0)
    vocab = model.tokenizer.get_vocab_size()
    ids = rng.integers(min(1000, vocab // 2), vocab, size=(batch, seq), dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {n: feed[n] for n in model.names}
    for _ in range(warmup):
        model.run(feed)
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        model.run(feed)
        times.append((time.perf_counter() - t) * 1000)
    return times


if __name__ == "__main__":
    main()
