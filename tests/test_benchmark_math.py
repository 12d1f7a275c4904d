"""The physical-floor arithmetic of the benchmark harness, checked against the published FLOP counts."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gemm import encoder_gflop, gemm_gflops  # noqa: E402


def _plan(layers, heads, ffn, head_size=64):
    return {"head_size": head_size, "layers": [{"heads": heads, "ffn": ffn}] * layers}


def test_encoder_flops_match_the_perf_anchors():
    # ../shared/PERF_ANCHORS.md 6.1: BERT-base 22.35 GFLOP, MiniLM-L6-H384 2.87 GFLOP per sequence at n = 128
    assert encoder_gflop(_plan(12, 12, 3072), 768, 128) == pytest.approx(22.35, abs=0.01)
    assert encoder_gflop(_plan(6, 12, 1536, head_size=32), 384, 128) == pytest.approx(2.87, abs=0.01)


def test_pruning_halves_the_linear_flops():
    full = encoder_gflop(_plan(6, 12, 1536, 32), 384, 128)
    half = encoder_gflop(_plan(6, 6, 768, 32), 384, 128)
    assert half == pytest.approx(full / 2, rel=1e-6)


def test_gemm_microbenchmark_reports_positive_throughput():
    out = gemm_gflops(threads=1, m=16, k=32, n=64, seconds=0.05)
    assert out["fp32"] > 0 and out["int8"] > 0


def test_paired_drop_error_counts_only_the_sentences_the_two_models_disagree_on():
    from measure import paired_drop_se

    teacher = [True] * 800 + [False] * 72
    assert paired_drop_se(teacher, teacher) == 0.0
    student = [True] * 790 + [False] * 10 + [True] * 5 + [False] * 67  # 10 lost, 5 gained
    assert paired_drop_se(teacher, student) == pytest.approx(100 * (15 - 25 / 872) ** 0.5 / 872)
