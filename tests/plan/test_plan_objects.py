"""The plan's fast constructors (rewriter.plan.make_decision, make_node_decision, make_point, make_consumer) skip
the dataclass __init__; what they build must not differ from the dataclass's own objects."""
from __future__ import annotations

from dataclasses import FrozenInstanceError, fields

import pytest

from rewriter.errors import SourceLoc
from rewriter.plan import (Consumer, Decision, FakeQuantizePoint, NodeDecision, make_consumer, make_decision,
                           make_node_decision, make_point)
from rewriter.spec.model import QuantizerConfig


def test_fast_constructors_build_the_same_objects() -> None:
    loc = SourceLoc("rules/cpu.rules", 3, 5)
    decision = make_decision("insert", "quantize_inputs", loc, "conv input 0")
    assert decision == Decision("insert", "quantize_inputs", loc, "conv input 0")
    assert hash(decision) == hash(Decision("insert", "quantize_inputs", loc, "conv input 0"))
    assert repr(decision) == repr(Decision("insert", "quantize_inputs", loc, "conv input 0"))
    assert set(vars(decision)) == {f.name for f in fields(Decision)}
    record = make_node_decision("conv", "Conv", "quantized", "FakeQuantize on inputs 0", (decision,))
    assert record == NodeDecision("conv", "Conv", "quantized", "FakeQuantize on inputs 0", (decision,), 0)
    assert set(vars(record)) == {f.name for f in fields(NodeDecision)}
    with pytest.raises(FrozenInstanceError):
        record.status = "float"  # type: ignore[misc]
    config = QuantizerConfig("q8", 8, "symmetric", "perchannel")
    consumer = make_consumer("conv", 1)
    assert consumer == Consumer("conv", 1) and hash(consumer) == hash(Consumer("conv", 1))
    point = make_point("w", "weight", config, (config,), (consumer,), False, 0, None, (decision,))
    assert point == FakeQuantizePoint("w", "weight", config, (config,), (Consumer("conv", 1),), False, 0, None,
                                      (decision,))
    assert set(vars(point)) == {f.name for f in fields(FakeQuantizePoint)}
