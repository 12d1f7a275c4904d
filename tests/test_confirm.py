"""A pruned bundle ships in place of the teacher quantized alone only if it was faster in every paired round: one
noisy bench reading must not crown a model that is not faster (edgesmith.confirm)."""

import pytest
from edgesmith.confirm import alternative, confirm, needed, sentence
from edgesmith.stages.verdict import against_quantized_teacher


def row(branch, artifact, metric, p50):
    return {"branch": branch, "artifact": artifact, "bytes": 1, "path": f"{branch}/{artifact}", "quality": {"metric": metric},
            "latency": {"p50_ms": p50}}


PROFILE = {"runtimes": {"onnxruntime": ["int8-dynamic"], "openvino": ["int8-static"]}}
TEACHER = row("teacher", "pytorch-fp32", 90.0, 30.0)
BASE_ORT, BASE_OV = row("unpruned", "onnxruntime-int8-dynamic", 89.5, 14.0), row("unpruned", "openvino-int8-static", 87.0, 12.0)
SPARSE = row("sparse", "onnxruntime-int8-dynamic", 89.0, 9.9)  # one lucky reading: 1.42x "faster"


def timings(table):
    """A measure function that answers each row's next reading from `table` and logs the order of the calls."""
    calls = []

    def measure(r):
        calls.append(r["branch"])
        p50 = table[r["branch"]].pop(0)  # a number, or (at the profile's length, at 64 tokens)
        return {"p50_ms": p50} if not isinstance(p50, tuple) else {"p50_ms": p50[0], "longest_len": 64, "longest_p50_ms": p50[1]}

    return measure, calls


def test_the_alternative_is_the_fastest_quantized_teacher_within_the_budget():
    rows = [TEACHER, BASE_ORT, BASE_OV, SPARSE]
    assert alternative(rows, 90.0, 1.0) is BASE_ORT  # the faster OpenVINO build lost 3 points: outside the budget
    assert alternative(rows, 90.0, 5.0) is BASE_OV
    assert alternative(rows, 90.0, 0.1) is None
    assert needed(SPARSE, BASE_ORT) and not needed(BASE_ORT, BASE_ORT) and not needed(SPARSE, None)
    assert not needed(row("structured", "openvino-int8-static", 89, 1) | {"latency": {"not_measured": "no GPU"}}, BASE_ORT)


def test_a_speedup_that_one_round_contradicts_is_not_measurable_and_the_quantized_teacher_ships():
    measure, calls = timings({"sparse": [10.0, 16.0, 11.0], "unpruned": [14.0, 13.5, 15.0]})
    c = confirm(SPARSE, BASE_ORT, measure)
    assert not c["measurable"] and c["faster_rounds"] == 2 and c["speedups"] == pytest.approx([1.4, 13.5 / 16, 15 / 11])
    assert calls == ["sparse", "unpruned", "unpruned", "sparse", "sparse", "unpruned"]  # the order swaps every round
    s = against_quantized_teacher([TEACHER, BASE_ORT, BASE_OV, SPARSE], BASE_ORT, PROFILE, c)
    assert not s["pruning_paid"] and s["verdict"].startswith("Pruning did not pay measurably")
    assert "2 of 3 paired rounds" in s["verdict"] and "(unpruned:onnxruntime-int8-dynamic) ships" in s["verdict"]


def test_a_speedup_seen_in_every_round_is_reported_as_the_median_of_the_rounds():
    structured = row("structured", "openvino-int8-static", 89.2, 5.0)
    measure, _ = timings({"structured": [5.0, 6.0, 4.0], "unpruned": [12.0, 12.0, 12.5]})
    c = confirm(structured, BASE_OV, measure)
    assert c["measurable"] and c["speedup"] == pytest.approx(2.4) and c["against"] == "unpruned:openvino-int8-static"
    s = against_quantized_teacher([TEACHER, BASE_OV, structured], structured, PROFILE, c)
    assert s["pruning_paid"] and s["speedup_p50_vs_quantized_teacher"] == pytest.approx(2.4)
    assert "2.40x faster" in s["verdict"] and "faster in all 3 paired rounds" in s["verdict"]


def test_the_report_quotes_the_build_the_rounds_ran_against_and_names_what_ships():
    """Seen on a tiny run: an unpruned FP32 export was faster than every quantized teacher build. The paired rounds
    ran against it (it is what would ship), while the report quoted a single reading against the INT8 build; and
    when it shipped, the verdict named the INT8 build as shipping."""
    base_fp32 = row("unpruned", "onnxruntime-fp32", 90.0, 8.0)
    structured = row("structured", "openvino-int8-static", 89.5, 4.0)
    rows = [TEACHER, BASE_ORT, BASE_OV, base_fp32, structured]
    assert alternative(rows, 90.0, 1.0) is base_fp32
    measure, _ = timings({"structured": [4.0, 4.2, 4.1], "unpruned": [8.0, 8.4, 8.0]})
    c = confirm(structured, base_fp32, measure)
    s = against_quantized_teacher(rows, structured, PROFILE, c, budget=1.0)
    assert s["quantized_teacher"]["artifact"] == c["against"] == "unpruned:onnxruntime-fp32"
    assert s["speedup_p50_vs_quantized_teacher"] == pytest.approx(c["speedup"])
    assert "than the teacher unpruned, unquantized (unpruned:onnxruntime-fp32)" in s["verdict"]
    s = against_quantized_teacher(rows, base_fp32, PROFILE, budget=1.0)
    assert s["verdict"].startswith("Pruning did not pay: the teacher unpruned, unquantized (unpruned:onnxruntime-fp32)")


def test_a_bundle_slower_than_the_quantized_teacher_at_its_longest_input_in_one_round_does_not_ship():
    """The profile measures 32 tokens, the bundle takes 64: faster at 32 in every round is not enough when one
    round at 64 says otherwise (the bundle must not be slower than plain INT8 at any length it accepts)."""
    structured = row("structured", "openvino-int8-static", 89.2, 5.0)
    measure, _ = timings({"structured": [(5.0, 9.0), (5.1, 13.0), (5.0, 9.5)], "unpruned": [(12.0, 20.0), (12.0, 12.5), (12.1, 20.0)]})
    c = confirm(structured, BASE_OV, measure)
    assert not c["measurable"] and c["faster_rounds"] == 2 and c["longest_len"] == 64
    assert c["speedups"] == pytest.approx([12 / 5, 12 / 5.1, 12.1 / 5]) and min(c["longest_speedups"]) == pytest.approx(12.5 / 13)
    assert c["rounds"][1] == {"p50_ms": 5.1, "against_p50_ms": 12.0, "longest_p50_ms": 13.0, "against_longest_p50_ms": 12.5}
    s = against_quantized_teacher([TEACHER, BASE_OV, structured], BASE_OV, PROFILE, c)
    assert not s["pruning_paid"] and "at 64 tokens 0.96x to" in s["verdict"]
    measure, _ = timings({"structured": [(5.0, 9.0)] * 3, "unpruned": [(12.0, 20.0)] * 3})
    c = confirm(structured, BASE_OV, measure)
    assert c["measurable"] and "at 64 tokens 2.22x to 2.22x" in against_quantized_teacher(
        [TEACHER, BASE_OV, structured], structured, PROFILE, c)["verdict"]


def test_the_report_holds_the_bundle_to_the_build_the_bundle_stage_could_have_shipped_not_one_its_budgets_excluded():
    """Seen by a red-team probe: with a size budget only the pruned INT8 build kept, the report still compared it with
    an unpruned FP32 build the budget had excluded, from one unpaired reading, and said "Pruning paid"."""
    base_fp32 = row("unpruned", "onnxruntime-fp32", 90.0, 8.0)
    structured = row("structured", "onnxruntime-int8-dynamic", 89.5, 6.5)
    rows = [TEACHER, BASE_ORT, base_fp32, structured]
    s = against_quantized_teacher(rows, structured, PROFILE, None, True, 1.0, None)  # the bundle stage had no alternative
    assert s["verdict"].startswith("A pruned build ships because no unpruned build was measured within the accuracy budget and the profile's budgets")
    assert "could not ship, one reading (no paired rounds) gave 2.15x" in s["verdict"] and "Pruning paid" not in s["verdict"]
    assert s["quantized_teacher"]["artifact"] == "unpruned:onnxruntime-int8-dynamic"  # the profile's own quantized build
    s = against_quantized_teacher(rows, structured, PROFILE, None, True, 1.0, "unpruned:onnxruntime-int8-dynamic")
    assert s["quantized_teacher"]["artifact"] == "unpruned:onnxruntime-int8-dynamic" and s["verdict"].startswith("Pruning paid")
    assert against_quantized_teacher(rows, structured, PROFILE, budget=1.0)["quantized_teacher"]["artifact"] == "unpruned:onnxruntime-fp32"


def test_without_the_profiles_hardware_the_verdict_says_nothing_was_judged():
    """A GPU profile on a CPU machine: no row has a latency, the bundle stage took the smallest file, and the report
    had called the shipped build "the fastest artifact within the accuracy budget and the profile's budgets"."""
    gpu = {"runtimes": {"onnxruntime": ["fp16"]}}
    unmeasured = {"latency": {"not_measured": "no CUDA device"}}
    fp16 = row("unpruned", "onnxruntime-fp16", 89.9, 0) | unmeasured
    sparse = row("sparse", "onnxruntime-fp16", 89.5, 0) | unmeasured
    for chosen in (fp16, sparse):
        s = against_quantized_teacher([TEACHER | unmeasured, fp16, sparse], chosen, gpu, None, False, 1.0, None)
        assert s["verdict"].startswith("Not judged: this machine lacks the profile's hardware (no CUDA device)"), s["verdict"]
        assert "fastest" not in s["verdict"] and s["speedup_p50_vs_quantized_teacher"] is None
        assert s["pruning_paid"] is None  # not judged either way
    s = against_quantized_teacher([TEACHER | unmeasured, fp16, sparse], sparse, gpu, None, False, 1.0, None, within_budget=False)
    assert "the smallest of the most accurate artifacts ships (sparse:onnxruntime-fp16)" in s["verdict"]


def test_the_verdict_says_what_the_choice_kept_to_and_when_nothing_was_within_the_accuracy_budget():
    """Seen in review: with only the size budget kept, an unpruned build the size budget excluded was called "not
    within the accuracy budget"; with nothing within the accuracy budget the sentence implied the pruned build was."""
    structured = row("structured", "onnxruntime-int8-dynamic", 89.5, 6.5)
    rows = [TEACHER, BASE_ORT, structured]
    s = against_quantized_teacher(rows, structured, PROFILE, None, False, 1.0, None, kept=["size"])
    assert s["verdict"].startswith("A pruned build ships because no unpruned build was measured within the accuracy "
                                   "budget and the profile's size budget;"), s["verdict"]
    s = against_quantized_teacher(rows, structured, PROFILE, None, False, 0.1, None, within_budget=False, kept=[])
    assert s["verdict"] == ("No artifact is within the accuracy budget, so the most accurate ships "
                            "(structured:onnxruntime-int8-dynamic): see the budget verdicts.")
    # a recorded alternative that is not among the rows (an edited bench manifest) falls back to the profile's build
    s = against_quantized_teacher(rows, structured, PROFILE, None, True, 1.0, "unpruned:openvino-int8-static")
    assert s["quantized_teacher"]["artifact"] == "unpruned:onnxruntime-int8-dynamic"


def test_rounds_without_a_longest_reading_are_judged_at_the_profiles_length_alone():
    structured = row("structured", "openvino-int8-static", 89.2, 5.0)
    measure, _ = timings({"structured": [(5.0, 9.0), 5.0, (5.0, 9.0)], "unpruned": [(12.0, 20.0), 12.0, (12.0, 20.0)]})
    c = confirm(structured, BASE_OV, measure)
    assert c["measurable"] and c["faster_rounds"] == 3 and len(c["longest_speedups"]) == 2
    assert sentence(c) == ("faster in all 3 paired rounds against unpruned:openvino-int8-static (2.40x to 2.40x, median 2.40x; "
                           "at 64 tokens 2.22x to 2.22x)")


def test_a_gain_within_the_noise_of_the_rounds_does_not_ship_a_pruned_build():
    # the rounds one run measured (docs/reliability.md): 1.001x, 1.05x, 1.07x for a student 1.6 points below
    structured = row("structured", "openvino-int8-static", 88.4, 11.3)
    table = {"structured": [11.768, 11.149, 11.115], "unpruned": [11.777, 11.663, 11.851]}
    measure, _ = timings({k: list(v) for k, v in table.items()})
    strict = confirm(structured, BASE_ORT, measure, min_speedup=1.05)
    assert not strict["measurable"] and strict["faster_rounds"] == 1 and strict["min_speedup"] == 1.05
    assert sentence(strict) == ("structured:openvino-int8-static was 1.001x to 1.066x as fast as unpruned:onnxruntime-int8-dynamic "
                                "in 3 paired rounds: below bench.min_speedup (1.05x) in 2 of them")  # 1.046 is not "1.05x"
    s = against_quantized_teacher([TEACHER, BASE_ORT, structured], BASE_ORT, PROFILE, strict)
    assert not s["pruning_paid"] and "in 2 of them, so the teacher quantized alone" in s["verdict"]
    measure, _ = timings({k: list(v) for k, v in table.items()})
    assert confirm(structured, BASE_ORT, measure, min_speedup=1.0)["measurable"]  # 1.0: faster at all, as before
    measure, _ = timings({"structured": [(5.0, 9.0)] * 3, "unpruned": [(6.0, 9.2)] * 3})  # 1.2x, but 1.02x at 64 tokens
    never = confirm(structured, BASE_ORT, measure, min_speedup=1.05)
    assert not never["measurable"] and sentence(never).endswith("in 3 paired rounds; at 64 tokens 1.022x to 1.022x: below "
                                                                 "bench.min_speedup (1.05x) in 3 of them")
    measure, _ = timings({"structured": [(5.0, 9.0)] * 3, "unpruned": [(6.0, 9.5)] * 3})  # 1.06x there: enough
    assert sentence(confirm(structured, BASE_ORT, measure, min_speedup=1.05)).startswith("at least 1.05x faster in all 3")


def test_the_least_speedup_is_the_bundles_rule_and_leaves_the_bench_stages_key_alone():
    from edgesmith.config import BenchConfig, BenchMeasurement, DistillConfig  # noqa: F401

    default, strict = BenchConfig(), BenchConfig(min_speedup=1.2)
    assert default.min_speedup == 1.05
    assert default.measurement() == strict.measurement() == BenchMeasurement()
    # the bench stage's key before the field existed: its cache survives, and changing the rule re-runs no benchmark
    assert default.measurement().canonical_json() == '{"eval_samples":null,"iterations":100,"warmup":10}'
    for bad in (0.9, float("nan"), "fast"):
        with pytest.raises(ValueError):
            BenchConfig(min_speedup=bad)
    # an old bundle's confirmation (no min_speedup) still reads as it did
    old = {"speedups": [1.5, 1.6, 1.7], "speedup": 1.6, "measurable": True, "against": "unpruned:x", "faster_rounds": 3}
    assert sentence(old).startswith("faster in all 3 paired rounds")
