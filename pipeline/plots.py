"""Report figures with matplotlib (Agg backend, no display), returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Any


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _fig(w: float = 7, h: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def latency_bars(rows_by_profile: dict[str, list[dict[str, Any]]]) -> bytes:
    """p50 latency per artifact, one group of bars per profile (ms, log scale)."""
    fig, ax = _fig(8, 3.8)
    labels: list[str] = []
    for i, (profile, rows) in enumerate(rows_by_profile.items()):
        timed = [r for r in rows if "p50_ms" in r["latency"]]
        names = [f"{profile}\n{r['branch']}:{r['artifact']}" for r in timed]
        ax.barh(range(len(labels), len(labels) + len(timed)), [r["latency"]["p50_ms"] for r in timed], color=f"C{i}", label=profile)
        labels += names
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (log)")
    ax.legend(fontsize=7)
    return _png(fig)


def quality_vs_latency(rows_by_profile: dict[str, list[dict[str, Any]]], metric: str) -> bytes:
    fig, ax = _fig()
    for i, (profile, rows) in enumerate(rows_by_profile.items()):
        pts = [r for r in rows if "p50_ms" in r["latency"] and "metric" in r["quality"]]
        ax.scatter([r["latency"]["p50_ms"] for r in pts], [r["quality"]["metric"] for r in pts], color=f"C{i}", label=profile)
        for r in pts:
            ax.annotate(f"{r['branch'][:6]}:{r['artifact'].split('-', 1)[-1]}", (r["latency"]["p50_ms"], r["quality"]["metric"]), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (log)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return _png(fig)


def size_waterfall(steps: list[tuple[str, float]]) -> bytes:
    """Size after each step, MB (teacher FP32 -> shrunk -> quantized -> bundle .tar.gz)."""
    fig, ax = _fig()
    ax.bar([s for s, _ in steps], [v for _, v in steps], color=["C7"] + ["C0"] * (len(steps) - 1))
    for i, (_, v) in enumerate(steps):
        ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("MB")
    ax.tick_params(axis="x", labelsize=7)
    return _png(fig)


def kept_per_layer(heads: list[int], heads_total: int, ffn: list[int], ffn_total: int) -> bytes:
    fig, ax = _fig()
    x = range(len(heads))
    ax.bar([i - 0.2 for i in x], [h / heads_total * 100 for h in heads], width=0.4, label="heads kept %")
    ax.bar([i + 0.2 for i in x], [f / ffn_total * 100 for f in ffn], width=0.4, label="FFN neurons kept %")
    ax.set_xlabel("layer")
    ax.set_ylabel("% kept")
    ax.set_xticks(list(x))
    ax.legend(fontsize=7)
    return _png(fig)
