"""Measure this bundle's latency on the device it is copied to. Needs numpy, `tokenizers` and the runtime.

    python bench.py [--threads N] [--batch B] [--seq S] [--iterations N]
Defaults come from the profile in manifest.json; the model is opened with its "session" settings, as predict.py
opens it (--threads changes the thread count and nothing else). Prints the settings applied, p50/p90/p99
latency (ms) and throughput (sequences/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__/ in the bundle: `edgesmith verify` refuses files the manifest does not list
from predict import Predictor, read_manifest  # noqa: E402


def main() -> None:
    prof = read_manifest()["profile"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, help="override only the thread count of manifest.json's session settings "
                                                "(default: the count the benchmark measured with)")
    p.add_argument("--batch", type=int, default=prof["batch"])
    p.add_argument("--seq", type=int, default=prof["seq_len"])
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iterations", type=int, default=100)
    a = p.parse_args()
    model = Predictor(threads=a.threads)
    rng = np.random.default_rng(0)
    vocab = model.tokenizer.get_vocab_size()
    ids = rng.integers(min(1000, vocab // 2), vocab, size=(a.batch, a.seq), dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {n: feed[n] for n in model.names}
    for _ in range(a.warmup):
        model.run(feed)
    times = []
    for _ in range(a.iterations):
        t = time.perf_counter()
        model.run(feed)
        times.append((time.perf_counter() - t) * 1000)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    print(json.dumps({"session": model.settings, "batch": a.batch, "seq": a.seq, "p50_ms": round(p50, 3), "p90_ms": round(p90, 3),
                      "p99_ms": round(p99, 3), "throughput": round(a.batch * 1000 / float(np.mean(times)), 2)}))


if __name__ == "__main__":
    main()
