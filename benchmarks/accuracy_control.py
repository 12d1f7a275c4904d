"""NNCF's accuracy-controlled INT8 (nncf.quantize_with_accuracy_control) on a distilled SST-2 student, against the
plain NNCF INT8 the quantize stage builds (docs/recovery.md, "NNCF accuracy control"):

    python benchmarks/accuracy_control.py RUN_FOLDER [MAX_DROP] [HELD_ROWS]

RUN_FOLDER is a finished `edgesmith run` of a classification recipe with a structured branch. Calibration: its
first 200 training rows, as the quantize stage's. Validation: the next HELD_ROWS (1000) training rows, scored as
agreement of the argmax with the student's FP32 IR (never the dev split, which only measures). MAX_DROP (0.001) is
the absolute agreement drop NNCF may leave. Prints, for the FP32 IR, plain INT8 and accuracy-controlled INT8: dev
accuracy, agreement with FP32 on dev and on the held rows, and the FakeQuantize nodes left (NNCF's log names the
operations it put back in floating point). Scores run at 2 threads; it writes nothing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def main(run: Path, max_drop: float, held_rows: int) -> None:
    import nncf
    import openvino as ov

    from edgesmith.evaluate import batches
    from edgesmith.modeling import load_tokenizer
    from edgesmith.runtimes.openvino import OpenVino
    from edgesmith.stages.common import read_rows

    tokenizer = load_tokenizer(run / "04-shrink-structured" / "model")
    names = json.loads((run / "05-export-structured" / "manifest.json").read_text())["facts"]["input_names"]

    def feeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: b[k] for k in names} for b in batches(rows, tokenizer, 128, batch_size=1)]

    train, dev = read_rows(run / "00-data" / "train.jsonl"), read_rows(run / "00-data" / "eval.jsonl")
    calib, held, dev_feeds = feeds(train[:200]), feeds(train[200 : 200 + held_rows]), feeds(dev)
    gold = np.array([int(r["label"]) for r in dev])
    core, config = ov.Core(), OpenVino().settings(threads=2)["config"]

    def predict(model: Any, items: list[dict[str, Any]]) -> np.ndarray:
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        return np.array([int(np.argmax(request.infer(f)[compiled.outputs[0]])) for f in items])

    fp32 = core.read_model(str(run / "05-export-structured" / "openvino" / "model.xml"))
    reference_held, reference_dev = predict(fp32, held), predict(fp32, dev_feeds)
    # each validation item carries the FP32 answer: NNCF validates on subsets of the items when it ranks operations
    held_items = [(f, int(y)) for f, y in zip(held, reference_held)]

    def agreement(compiled: Any, items: list[tuple[dict[str, Any], int]]) -> float:
        request = compiled.create_infer_request()
        return float(np.mean([int(np.argmax(request.infer(f)[compiled.outputs[0]])) == y for f, y in items]))

    plain = nncf.quantize(fp32, nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib))
    start = time.time()
    controlled = nncf.quantize_with_accuracy_control(
        fp32, nncf.Dataset(calib), nncf.Dataset(held_items, lambda item: item[0]), validation_fn=agreement,
        max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib))
    print(f"accuracy control took {time.time() - start:.0f} s")
    for label, model in (("FP32 IR", fp32), ("plain NNCF INT8", plain), ("accuracy-controlled INT8", controlled)):
        dev_pred = predict(model, dev_feeds)
        kept = sorted(op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "FakeQuantize")
        print(f"{label}: dev accuracy {100 * np.mean(dev_pred == gold):.2f}, agreement with FP32 on dev "
              f"{100 * np.mean(dev_pred == reference_dev):.2f}, on held rows {100 * np.mean(predict(model, held) == reference_held):.2f}"
              f", {len(kept)} FakeQuantize nodes")


def parse(argv: list[str]) -> tuple[Path, float, int]:
    """(run folder, max drop, held rows), refused in one line when malformed or when the folder is not a run with
    a structured branch."""
    usage = ("usage: python benchmarks/accuracy_control.py RUN_FOLDER [MAX_DROP] [HELD_ROWS]; RUN_FOLDER is a finished "
             "edgesmith run with a structured branch, MAX_DROP a fraction in [0, 1), HELD_ROWS a positive integer")
    try:
        run, max_drop, held = Path(argv[0]), float(argv[1]) if len(argv) > 1 else 0.001, int(argv[2]) if len(argv) > 2 else 1000
    except (IndexError, ValueError):
        raise SystemExit(usage) from None
    if len(argv) > 3 or not (run / "05-export-structured").is_dir() or not 0 <= max_drop < 1 or held < 1:
        raise SystemExit(usage)
    return run, max_drop, held


if __name__ == "__main__":
    main(*parse(sys.argv[1:]))
