"""Write the two tiny test models of this folder (needs the ``onnx`` package of the train extra; run once).

Each ignores its input's values and outputs the same 101 logits for every crop: the position logits peak at
class 30 (drum position 3.0) and the last, the reject class ("not a digit"), is +25 (``always.onnx``: every crop
refused) or -25 (``never.onnx``). The graph keeps the real models' interface: input ``x`` (N x 1 x 32 x 20, float),
output ``logits`` (N x 101), dynamic batch. ``<name>.json`` is the metadata the reader checks (with the sha256).

    .venv/bin/python tests/resources/reject_class/make_models.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def build(reject_logit: float) -> bytes:
    bias = np.zeros((1, 101), np.float32)
    bias[0, 30] = 20.0
    bias[0, 100] = reject_logit
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1),  # N x 1 x 1 x 1
        helper.make_node("Reshape", ["m", "shape"], ["m2"]),  # N x 1
        helper.make_node("MatMul", ["m2", "zero"], ["z"]),  # N x 101, all zero
        helper.make_node("Add", ["z", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "constant_digit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 32, 20])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 101])],
        [numpy_helper.from_array(np.array([-1, 1], np.int64), "shape"),
         numpy_helper.from_array(np.zeros((1, 101), np.float32), "zero"),
         numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main() -> None:
    for name, logit in (("always", 25.0), ("never", -25.0)):
        blob = build(logit)
        (HERE / f"{name}.onnx").write_bytes(blob)
        meta = {"version": f"test-reject-{name}", "input": {"name": "x", "height": 32, "width": 20, "channels": 1},
                "output": {"name": "logits", "classes": 100, "reject_class": True},
                "sha256": hashlib.sha256(blob).hexdigest()}
        (HERE / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
