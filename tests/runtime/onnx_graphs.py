"""Small ONNX graphs built with the `onnx` package, for tests of the ONNX helper.

Built in code rather than committed, so a test shows the whole graph it runs.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

WIDTH = 256


def weights() -> np.ndarray:
    """The graph's fixed weight matrix, (WIDTH, WIDTH) float32."""
    return (np.random.default_rng(0).standard_normal((WIDTH, WIDTH)) / 16).astype(np.float32)


def two_branch_matmul() -> bytes:
    """`Y = relu(X @ W) + (X @ W.T)`, X float32 [batch, WIDTH]; plus `N = X.shape[0]` as int64.

    Two independent MatMuls give ONNX Runtime's inter-op pool (ORT_PARALLEL) something to
    run in parallel, and matrices this size use its intra-op pool.
    """
    w = weights()
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["A"]),
            helper.make_node("Relu", ["A"], ["R"]),
            helper.make_node("MatMul", ["X", "WT"], ["B"]),
            helper.make_node("Add", ["R", "B"], ["Y"]),
            helper.make_node("Shape", ["X"], ["S"]),
            helper.make_node("Gather", ["S", "zero"], ["N"], axis=0),
        ],
        "two_branch_matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", WIDTH])],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", WIDTH]),
            helper.make_tensor_value_info("N", TensorProto.INT64, []),
        ],
        [
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.ascontiguousarray(w.T), "WT"),
            numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 9
    return bytes(model.SerializeToString())


def expected_y(x: np.ndarray) -> np.ndarray:
    """What `two_branch_matmul` computes for `x`, in numpy (float32; compare with a tolerance)."""
    w = weights()
    return np.maximum(x @ w, 0) + x @ w.T
