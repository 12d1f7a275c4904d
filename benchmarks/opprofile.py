"""Where an OpenVINO model spends its time: OpenVINO's own per-node performance counters, summed by node type.

Answers "why is the pruned model faster?" with the runtime's numbers rather than a FLOP estimate: if the
matrix multiplies (FullyConnected) dominate before and after pruning, latency follows the FLOPs pruning removes.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def op_breakdown(xml: Path, threads: int, seq: int = 128, warmup: int = 10, iterations: int = 50) -> dict[str, float]:
    """Mean in-graph milliseconds per node type (batch 1, `seq` tokens), plus 'total'."""
    import openvino as ov

    from edgesmith.benchrun import feed

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
    request = compiled.create_infer_request()
    inputs = feed([i.get_any_name() for i in compiled.inputs], 1, seq, 30522)
    per_type: collections.Counter[str] = collections.Counter()
    for i in range(warmup + iterations):
        request.infer(inputs)
        if i >= warmup:
            for node in request.get_profiling_info():
                per_type[node.node_type] += node.real_time.total_seconds() * 1000 / iterations
    return dict(per_type.most_common()) | {"total": sum(per_type.values())}


if __name__ == "__main__":
    for path in sys.argv[1:]:
        ops = op_breakdown(Path(path), threads=2)
        print(path, f"{ops.pop('total'):.2f} ms in graph:", ", ".join(f"{k} {v:.2f}" for k, v in list(ops.items())[:5]))
