"""Write docs/structural-vs-sparse.md from docs/benchmarks.json: the structured and sparse branches of the sst2-sparse
level's seed 0 (distilled on the same rows), the depth-and-width sst2-fast level, and the peers, all measured side
by side in one run of benchmarks/compare.py. Every figure and every "pays / does not pay" comes from that file.

    python benchmarks/report.py      (re-renders this page and docs/benchmarks.md)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LEVEL = "sst2-sparse"  # benchmarks/levels.py: seed 0 distils a width-only structured and an 80% sparse student on the same rows

MB = 2**20


def _find(entries: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((e for e in entries if all(e.get(k) == v for k, v in match.items())), None)


def _fc_share(e: dict[str, Any]) -> float | None:
    """Share of OpenVINO's in-graph time spent in the linear layers (FullyConnected*)."""
    if not e.get("ops"):
        return None
    return sum(v for k, v in e["ops"].items() if k.startswith("FullyConnected")) / e["ops"]["total"]


def _pays(ratio: float) -> str:
    return "pays" if ratio >= 1.1 else "does not pay" if ratio > 0.9 else "costs"


def structured_part(ov: dict[str, Any], ort: dict[str, Any] | None, peer_ov: dict[str, Any], peer_ort: dict[str, Any]) -> list[str]:
    r = peer_ov["p50_ms"] / ov["p50_ms"]
    text = (f"**Structured pruning {_pays(r)} on dense runtimes.** Removing heads and FFN neurons and slicing the weights out "
            f"changes the shapes every kernel sees: the {LEVEL} level keeps {ov['gflop'] / peer_ov['gflop']:.0%} of the encoder's FLOPs "
            f"({peer_ov['gflop']:.2f} → {ov['gflop']:.2f} GFLOP at seq 128), and its OpenVINO INT8 build runs {r:.2f}x the "
            f"optimum-intel NNCF INT8 peer ({ov['p50_ms']:.2f} vs {peer_ov['p50_ms']:.2f} ms p50)")
    if ort:
        text += (f"; its ONNX Runtime INT8 build {peer_ort['p50_ms'] / ort['p50_ms']:.2f}x Optimum's INT8 "
                 f"({ort['p50_ms']:.2f} vs {peer_ort['p50_ms']:.2f} ms)")
    text += ". "
    shares = (_fc_share(peer_ov), _fc_share(ov))
    if None not in shares:
        text += (f"OpenVINO's own counters show why: the linear layers (`FullyConnected`) take {shares[0]:.0%} of the in-graph time "
                 f"of the peer and {shares[1]:.0%} of the pruned model's, so cutting their rows and columns cuts the time. ")
    floors = (peer_ov["p50_ms"] / peer_ov["floor_ms"], ov["p50_ms"] / ov["floor_ms"])
    if floors[1] > floors[0] * 1.05:
        text += (f"The gain is smaller than the FLOPs removed: layer norms, softmax over seq², the embedding lookup and the "
                 f"per-call overhead do not shrink with heads and neurons (p50/floor rises from {floors[0]:.1f}x to {floors[1]:.1f}x). ")
    else:
        text += f"Latency follows the FLOPs (p50/floor {floors[0]:.1f}x for the peer, {floors[1]:.1f}x pruned). "
    text += f"Files: {ov['bytes'] / MB:.1f} MB against {peer_ov['bytes'] / MB:.1f} MB for the peer."
    return [text, ""]


def depth_part(fast: dict[str, Any], wide: dict[str, Any], peer_ov: dict[str, Any]) -> list[str]:
    r = peer_ov["p50_ms"] / fast["p50_ms"]
    floors = (wide["p50_ms"] / wide["floor_ms"], fast["p50_ms"] / fast["floor_ms"])
    cheaper = floors[1] < floors[0] * 0.95
    return [f"**Cutting whole layers as well (`recipes/sst2-fast.yaml`)** leaves {fast['gflop']:.2f} GFLOP and runs its OpenVINO "
            f"INT8 build at {fast['p50_ms']:.2f} ms, {r:.2f}x the NNCF INT8 peer. Its p50/floor is {floors[1]:.1f}x against "
            f"{floors[0]:.1f}x for the width-only {LEVEL} level: "
            + ("removing layers also removes their fixed per-layer costs, so it buys more speed per FLOP removed than thinning them."
               if cheaper else "in this run, removing layers did not buy more speed per FLOP removed than thinning them."), ""]


def sparse_part(sp_ov: dict[str, Any], sp_ort: dict[str, Any] | None, dense_ov: dict[str, Any], peer_ov: dict[str, Any],
                peer_ort: dict[str, Any]) -> list[str]:
    """`dense_ov`: the same teacher unpruned, quantized by the same edgesmith run: the control for the sparse model."""
    r = dense_ov["p50_ms"] / sp_ov["p50_ms"]
    ratios = {"OpenVINO": r} | ({"ONNX Runtime": peer_ort["p50_ms"] / sp_ort["p50_ms"]} if sp_ort else {})
    verdicts = {name: _pays(x) for name, x in ratios.items()}
    verdict = (f"{verdicts['OpenVINO']} in speed on these runtimes" if len(set(verdicts.values())) == 1
               else "; ".join(f"{v} on {name}" for name, v in verdicts.items()))  # one runtime's gain is not the method's
    text = (f"**Unstructured (sparse) pruning: {verdict}.** 80% of the encoder weights were zeroed and "
            f"the model distilled; its OpenVINO INT8 build runs at {sp_ov['p50_ms']:.2f} ms against {dense_ov['p50_ms']:.2f} ms for the "
            f"dense teacher quantized by the same run ({r:.2f}x) and {peer_ov['p50_ms']:.2f} ms for the optimum-intel peer")
    if sp_ort:
        text += f", and its ONNX Runtime INT8 build at {sp_ort['p50_ms']:.2f} ms against {peer_ort['p50_ms']:.2f} ms for Optimum's INT8"
    text += ". "
    shares = (_fc_share(dense_ov), _fc_share(sp_ov))
    rest = [e["ops"]["total"] * (1 - x) for x, e in zip(shares, (dense_ov, sp_ov))] if None not in shares else None
    if rest and r >= 1.1 and rest[0] / rest[1] >= 1.1:  # zeros cannot speed up LayerNorm or softmax: not a sparse kernel
        text += (f"OpenVINO's counters show every op faster, not only the linear layers: the ops other than `FullyConnected` "
                 f"took {rest[1]:.2f} ms against {rest[0]:.2f} ms in the dense model, though zeroed weights do not touch them. "
                 "So the gain cannot be put down to sparse kernels; measure on the target device before counting on it. ")
    if None not in shares and r < 1.1:
        fc = [s * e["ops"]["total"] for s, e in zip(shares, (dense_ov, sp_ov))]  # type: ignore[operator]
        text += (f"The performance counters show about the same `FullyConnected` time as the dense model ({fc[1]:.2f} vs {fc[0]:.2f} ms): "
                 "dense GEMM kernels multiply the zeros. edgesmith says so in the shrink manifest and the report. ")
    lines = [text, ""]
    if sp_ort and sp_ort["gzip_bytes"] < 0.9 * peer_ort["gzip_bytes"]:
        lines += [f"**Sparse pruning pays in bytes that are compressed for transport or storage.** On disk the sparse INT8 ONNX "
                  f"file is the dense one's size ({sp_ort['bytes'] / MB:.1f} vs {peer_ort['bytes'] / MB:.1f} MB) but gzips to "
                  f"{sp_ort['gzip_bytes'] / MB:.1f} MB against {peer_ort['gzip_bytes'] / MB:.1f} MB for Optimum's INT8 model. That "
                  "matters for over-the-air downloads and storage-bound boards, not for latency or resident memory.", ""]
    return lines


def accuracy_part(ov: dict[str, Any], sp_ov: dict[str, Any], teacher: dict[str, Any], rows: Any) -> list[str]:
    d_st, d_sp = teacher["quality"] - ov["quality"], teacher["quality"] - sp_ov["quality"]
    better = "structured" if d_st < d_sp else "sparse"
    return [f"**Accuracy at the same training budget** ({rows} distillation rows, seed 0, after OpenVINO INT8): the structured "
            f"student lost {d_st:.2f} points (±{ov.get('drop_se', 0):.2f} paired SE) and the 80% sparse one {d_sp:.2f} "
            f"(±{sp_ov.get('drop_se', 0):.2f}) against the teacher's {teacher['quality']:.2f}%: {better} pruning kept more. "
            "One seed: the harness runs this comparison at seed 0 only.", ""]


def runtime_part(peer_ov: dict[str, Any], peer_ort: dict[str, Any], teacher: dict[str, Any], real_best: dict[str, Any]) -> list[str]:
    faster = peer_ov if peer_ov["p50_ms"] < peer_ort["p50_ms"] else peer_ort
    return [f"**Quantization is the other half, and the runtime matters as much as the method.** NNCF's INT8 for OpenVINO lost "
            f"{teacher['quality'] - peer_ov['quality']:.2f} points on the teacher and ran at {peer_ov['p50_ms']:.2f} ms; Optimum's "
            f"dynamic INT8 for ONNX Runtime lost {teacher['quality'] - peer_ort['quality']:.2f} and ran at {peer_ort['p50_ms']:.2f} ms. "
            f"At seq 128 the faster is {faster['name']}; at the dev sentences' own lengths the fastest quantized teacher is "
            f"{real_best['name']} ({real_best['real_p50_ms']:.2f} ms p50). That is why profiles list runtime/precision pairs and "
            "the bundle ships the fastest one measured within the accuracy budget.", ""]


def choose_part(ov: dict[str, Any], sp_ov: dict[str, Any], peer_ov: dict[str, Any], real_best: dict[str, Any],
                depth_cheaper: bool) -> list[str]:
    """Advice that follows from this run's figures; a bullet the figures do not support is not written."""
    gain, sparse_gain = peer_ov["p50_ms"] / ov["p50_ms"], peer_ov["p50_ms"] / sp_ov["p50_ms"]  # both against the same peer
    real_gain = real_best["real_p50_ms"] / ov["real_p50_ms"]
    lines = ["## When to choose which", ""]
    if gain >= 1.1 > sparse_gain:
        lines.append("- Latency or throughput on a CPU, GPU or NPU with dense kernels (ONNX Runtime, OpenVINO, TensorRT without 2:4 "
                     f"sparsity): **structured** pruning plus INT8{', in depth as well as width' if depth_cheaper else ''}. It is the "
                     "only one of the two that made these runtimes faster.")
    elif gain >= 1.1 and gain > sparse_gain:  # both paid: say which paid more, not only that sparse did
        lines.append("- Latency or throughput on a CPU, GPU or NPU with dense kernels: **structured** pruning plus INT8"
                     f"{', in depth as well as width' if depth_cheaper else ''}. Both paid here, structured more "
                     f"({gain:.2f}x against {sparse_gain:.2f}x over the same peer).")
    kernels = ("- Sparse speed-ups need sparse kernels (DeepSparse, now end-of-life; 2:4 sparse tensor cores; OpenVINO's sparse weight "
               "decompression on 4th-gen Xeon). ")
    kernels += (f"The sparse OpenVINO INT8 build ran {sparse_gain:.2f}x the peer here: measure on the target device before relying on it."
                if sparse_gain >= 1.1 else "None paid here, and edgesmith makes no claim for them.")
    lines += ["- Download size or flash storage, with latency already acceptable: **sparse** pruning plus compression of the file "
              "(gzip/zstd of the INT8 model), accepting its accuracy cost at high sparsity.", kernels,
              f"- Short inputs: at the real lengths of SST-2 dev sentences ({ov['real_mean_len']:.1f} tokens on average) the structured "
              f"{LEVEL} build runs at {ov['real_p50_ms']:.2f} ms p50, {real_gain:.2f}x the fastest quantized teacher there, against "
              f"{gain:.2f}x over the OpenVINO INT8 peer at seq 128"
              + (": fixed per-call costs dominate short inputs, and pruning moves latency less." if real_gain < gain else ".")]
    return lines + [""]


def render(src: Path, docs: Path) -> bool:
    """Writes docs/structural-vs-sparse.md; False (and nothing written) when the run lacks the rows it needs."""
    from seeds import reference, teacher

    data = json.loads(src.read_text())
    meta, entries = data["meta"], data["entries"]
    ov = _find(entries, level=LEVEL, seed=0, artifact="structured:openvino-int8-static")
    sp_ov = _find(entries, level=LEVEL, seed=0, artifact="sparse:openvino-int8-static")
    if not (ov and sp_ov):
        print(f"structural-vs-sparse.md not written: this run has no {LEVEL} seed-0 structured and sparse OpenVINO INT8 rows")
        return False
    ort = _find(entries, level=LEVEL, seed=0, artifact="structured:onnxruntime-int8-dynamic")
    sp_ort = _find(entries, level=LEVEL, seed=0, artifact="sparse:onnxruntime-int8-dynamic")
    fast = _find(entries, level="sst2-fast", seed=0, artifact="structured:openvino-int8-static")
    peer_ov = reference(entries, "sst2", "ov-int8")
    peer_ort = next(e for e in entries if e["name"] == "Optimum ONNX + ORTQuantizer INT8")
    t, real_best = teacher(entries, "sst2"), reference(entries, "sst2", "best-peer", "real_p50_ms")
    level = next(lv for lv in meta["levels"] if lv["key"] == LEVEL)
    rows = level["overrides"].get("data.max_train_samples", "the recipe's")
    lines = ["# Structural or sparse pruning: which pays on these runtimes?", "",
             f"The question that started edgesmith, answered from one run of `python benchmarks/compare.py` on {meta['date']} "
             f"(`docs/benchmarks.md`: MiniLM-L6 fine-tuned on SST-2, CPU {meta['cpu']}, {meta['threads']} thread, batch 1, sequence "
             f"128; seed 0 of `{level['recipe']}` with its structured and sparse branches distilled on the same rows, and seed 0 of "
             "`recipes/sst2-fast.yaml`). This page is written by `benchmarks/sparse_doc.py` from `docs/benchmarks.json`. Read "
             f"ratios, not absolute milliseconds: every p50 is the median of {meta['plan']['rounds']} interleaved rounds on a shared "
             "machine.", "", "## What the numbers say", ""]
    lines += structured_part(ov, ort, peer_ov, peer_ort)
    lines += depth_part(fast, ov, peer_ov) if fast else []
    depth_cheaper = bool(fast) and fast["p50_ms"] / fast["floor_ms"] < 0.95 * ov["p50_ms"] / ov["floor_ms"]  # type: ignore[index]
    dense_ov = _find(entries, level=LEVEL, seed=0, artifact="unpruned:openvino-int8-static") or peer_ov
    lines += sparse_part(sp_ov, sp_ort, dense_ov, peer_ov, peer_ort) + accuracy_part(ov, sp_ov, t, rows)
    lines += runtime_part(peer_ov, peer_ort, t, real_best) + choose_part(ov, sp_ov, peer_ov, real_best, depth_cheaper)
    (docs / "structural-vs-sparse.md").write_text("\n".join(lines))
    return True
