"""The advice docs/structural-vs-sparse.md gives follows the run's figures: no bullet the figures do not support, and
the structured bullet stays when sparse pruning also paid."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from sparse_doc import choose_part  # noqa: E402

PEER = {"p50_ms": 6.0}
REAL_BEST = {"real_p50_ms": 2.0}


def _advice(structured_ms: float, sparse_ms: float) -> str:
    ov = {"p50_ms": structured_ms, "real_p50_ms": 2.5, "real_mean_len": 25.5}
    return "\n".join(choose_part(ov, {"p50_ms": sparse_ms}, PEER, REAL_BEST, depth_cheaper=False))


def test_only_structured_paid():
    text = _advice(structured_ms=4.0, sparse_ms=6.2)
    assert "**structured** pruning plus INT8" in text and "only one of the two" in text
    assert "None paid here" in text


def test_both_paid_structured_more():
    text = _advice(structured_ms=4.0, sparse_ms=5.0)  # 1.50x and 1.20x over the peer
    assert "Both paid here, structured more (1.50x against 1.20x over the same peer)" in text
    assert "only one of the two" not in text and "ran 1.20x the peer here" in text


def test_sparse_paid_more_gets_no_structured_bullet():
    text = _advice(structured_ms=5.0, sparse_ms=4.0)
    assert "**structured** pruning plus INT8" not in text
