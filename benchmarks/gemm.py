"""This machine's matrix-multiply throughput on ONNX Runtime, FP32 (MatMul) and INT8 (MatMulInteger, u8 x s8),
at BERT-encoder shapes, and the FLOPs of an encoder from its shape plan: together, a physical latency floor."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def _model(int8: bool, m: int, k: int, n: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])
        b = numpy_helper.from_array(rng.integers(-127, 127, (k, n), dtype=np.int8), "b")
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])
    else:
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])
        b = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "b")
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])
    graph = helper.make_graph([node], "gemm", [a], [y], [b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def gemm_gflops(threads: int, m: int = 128, k: int = 384, n: int = 1536, seconds: float = 2.0) -> dict[str, float]:
    """Sustained GFLOP/s (2 FLOP per multiply-add) of one FFN-sized GEMM, FP32 and INT8."""
    import onnxruntime as ort

    out = {}
    for name, int8 in (("fp32", False), ("int8", True)):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(_model(int8, m, k, n), opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(1).integers(0, 255, (m, k)).astype(np.uint8 if int8 else np.float32)
        for _ in range(20):
            sess.run(None, {"a": x})
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            sess.run(None, {"a": x})
            runs += 1
        out[name] = 2 * m * k * n * runs / (time.perf_counter() - start) / 1e9
    return out


def encoder_gflop(plan: dict[str, Any], hidden: int, seq: int) -> float:
    """FLOPs of one sequence through the encoder: linear layers (2 x weights x tokens) plus attention scores/mix."""
    total = 0.0
    for layer in plan["layers"]:
        width = layer["heads"] * plan["head_size"]
        linear = 4 * hidden * width + 2 * hidden * layer["ffn"]
        total += 2 * seq * linear + 4 * seq * seq * width
    return total / 1e9
