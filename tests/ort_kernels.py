"""What this machine's onnxruntime integer kernels do, probed once per test run.

x86 CPUs without VNNI (AVX2, AVX-512F) run onnxruntime's uint8 x int8 matrix
kernels with an instruction that adds two neighbouring products into a
saturating int16; VNNI CPUs (and other architectures) accumulate in int32.
Tests of full-range 8-bit weights expect exact fused results only where the
kernel is exact, and a difference where it saturates, so they hold on both.
"""
from __future__ import annotations

from functools import cache

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


@cache
def u8s8_saturates() -> bool:
    """True when a QDQ MatMul of uint8 255s by int8 127s fuses into a kernel that saturates.

    Each output is 255 * 127 * 32 = 1036320 exactly; a pairwise int16 sum caps every pair at 32767.
    """
    inits = [numpy_helper.from_array(np.full((32, 4), 127, np.int8), "w_q"),
             numpy_helper.from_array(np.array(1.0, np.float32), "scale"),
             numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
             numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
             numpy_helper.from_array(np.array(2.0 ** 20, np.float32), "y_scale")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "x_zero"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "scale", "x_zero"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "scale", "w_zero"], ["w_dq"]),
             helper.make_node("MatMul", ["x_dq", "w_dq"], ["y"])]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.full((1, 32), 255, np.float32)})[0]
    return not np.array_equal(y, np.full((1, 4), 255 * 127 * 32, np.float32))
