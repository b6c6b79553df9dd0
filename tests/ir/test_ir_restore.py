"""restore_initializers: a layer returned to float gets back the constants it had before the quantized passes."""
from __future__ import annotations

import numpy as np
from onnx import numpy_helper

import models
from rewriter.ir.edit import apply_weight_updates, restore_initializers


def _constants(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _three_layers():
    """conv (with a bias), mm (MatMul without one) and two MatMuls sharing one weight."""
    b = models.GraphBuilder(4)
    h = b.node("Conv", ["x", b.weight("cw", (4, 3, 1, 1)), b.weight("cb", (4,))], "conv")
    h = b.node("Flatten", [h], "flat")
    h = b.node("MatMul", [h, b.weight("mw", (4 * 5 * 5, 8))], "mm")
    shared = b.weight("sw", (8, 8))
    h = b.node("MatMul", [b.node("MatMul", [h, shared], "s1"), shared], "s2")
    return b.model([models._f32("x", (1, 3, 5, 5))], [models._f32(h, (1, 8))], "three_layers")


def test_changed_created_and_shared_constants() -> None:
    before = _three_layers()
    # What a bias correction and a tuning pass do: shift conv's bias, tune mm's weight and give mm a bias
    # (an Add inserted after it), tune the weight s1 and s2 share.
    old = _constants(before)
    after = apply_weight_updates(before, {"cb": old["cb"] + 1.0, "mw": old["mw"] * 1.1, "sw": old["sw"] * 0.9},
                                 {"mm": ("mm.bias", np.full(8, 0.5, np.float32))})
    restored = restore_initializers(after, before, ["conv", "mm", "s1"])
    values = _constants(restored)
    np.testing.assert_array_equal(values["cb"], old["cb"])
    np.testing.assert_array_equal(values["mw"], old["mw"])
    np.testing.assert_array_equal(values["mm.bias"], np.zeros(8, np.float32))  # created: adds nothing now
    np.testing.assert_array_equal(values["sw"], _constants(after)["sw"])  # s2, still quantized, reads it too
    assert _constants(after)["cb"][0] == old["cb"][0] + 1.0, "the input model is not changed"


def test_nothing_to_restore_gives_the_model_itself() -> None:
    before = _three_layers()
    after = apply_weight_updates(before, {"cb": _constants(before)["cb"] + 1.0})
    assert restore_initializers(after, before, ["mm"]) is after
    assert restore_initializers(before, before, ["conv", "mm"]) is before
