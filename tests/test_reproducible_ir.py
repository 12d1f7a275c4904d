"""Same inputs, same bytes: an OpenVINO IR saved after other work in the same process is byte-identical to one
saved first (OpenVINO numbers unnamed nodes from a process-wide counter; exporters.openvino.save_ir renames them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import make_model_dir
from edgesmith.artifacts import sha256_file
from edgesmith.exporters.onnx import export_onnx
from edgesmith.exporters.openvino import export_ir
from edgesmith.modeling import load_pretrained
from edgesmith.runtimes.openvino import copy_ir, nncf_int8


def test_openvino_ir_bytes_do_not_depend_on_earlier_work_in_the_process(tmp_path: Path) -> None:
    model, _ = load_pretrained(make_model_dir(tmp_path / "m"), "classification", "safetensors")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    export_onnx(model, "classification", names, tmp_path / "raw.onnx", opset=17)
    rng = np.random.default_rng(0)
    feeds = [{n: rng.integers(5, 100, size=(1, 12)) if n == "input_ids" else np.ones((1, 12), np.int64) for n in names}
             for _ in range(8)]
    runs = []
    for attempt in range(2):  # the second attempt runs after the first one created thousands of nodes
        folder = tmp_path / f"attempt{attempt}"
        folder.mkdir()
        ir = export_ir(tmp_path / "raw.onnx", folder / "model.xml")
        nncf_int8(ir, folder / "int8.xml", feeds)
        copy_ir(ir, folder / "fp16.xml", fp16=True)
        runs.append({f.name: sha256_file(f) for f in sorted(folder.iterdir())})
    assert runs[0] == runs[1] and len(runs[0]) == 6
