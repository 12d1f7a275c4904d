"""Activation quantizers in front of weight matmuls whose interval reaches further below zero than above it are
widened to [low, -low] (OpenVINO's CPU plugin ran such graphs 8-12% slower, docs/recovery.md); nothing else moves."""

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
ops = pytest.importorskip("openvino.opset13")

from edgesmith.runtimes.openvino import balance_activation_ranges  # noqa: E402


def _fq(x, low: float, high: float):
    c = lambda v: ops.constant(np.array(v, dtype=np.float32))  # noqa: E731
    return ops.fake_quantize(x, c(low), c(high), c(low), c(high), 256)


def _model(ranges: dict[str, tuple[float, float]]):
    """x -> quantizer per name -> MatMul with constant weights; 'act' feeds a matmul of two activations instead."""
    x = ops.parameter([1, 4, 8], np.float32, name="x")
    y = ops.parameter([1, 8, 4], np.float32, name="y")
    weights = ops.constant(np.ones((8, 8), dtype=np.float32))
    fqs, outs = {}, []
    for name, (low, high) in ranges.items():
        fqs[name] = _fq(x, low, high)
        outs.append(ops.matmul(fqs[name], y if name == "act" else weights, False, False))
    return ov.Model([ops.result(o) for o in outs], [x, y]), fqs


def _range(fq) -> tuple[float, float, float, float]:
    return tuple(float(np.asarray(fq.input_value(i).get_node().get_data()).ravel()[0]) for i in range(1, 5))


def test_a_negative_heavy_interval_before_weights_is_widened():
    model, fqs = _model({"heavy": (-1.0, 0.96), "balanced": (-0.5, 1.0), "act": (-1.0, 0.96), "far": (-2.0, 1.0)})
    assert balance_activation_ranges(model) == 1
    assert _range(fqs["heavy"]) == (-1.0, 1.0, -1.0, 1.0)
    assert _range(fqs["balanced"]) == (-0.5, 1.0, -0.5, 1.0)  # already reaches as far up as down
    assert _range(fqs["act"]) == pytest.approx((-1.0, 0.96, -1.0, 0.96))  # Q.K^T-like: both inputs are activations
    assert _range(fqs["far"]) == (-2.0, 1.0, -2.0, 1.0)  # widening would cost half the resolution: left alone


def test_the_widened_model_still_compiles_and_agrees():
    model, _ = _model({"heavy": (-1.0, 0.96)})
    x = np.linspace(-1, 0.9, 32, dtype=np.float32).reshape(1, 4, 8)
    y = np.zeros((1, 8, 4), dtype=np.float32)
    before = ov.Core().compile_model(model, "CPU")({"x": x, "y": y})[0]
    assert balance_activation_ranges(model) == 1  # widened: else "agrees" would hold of an untouched model
    after = ov.Core().compile_model(model, "CPU")({"x": x, "y": y})[0]
    assert np.abs(after - before).max() < 8 * 2.0 / 255  # within a few quantization steps of the 8-wide dot product
