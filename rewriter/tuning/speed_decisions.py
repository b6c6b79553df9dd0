"""How the speed guard's reverts are named in plans, reports and ``audit`` (kept apart from the guard, which
loads onnxruntime: ``audit --report`` reads them without it)."""
from __future__ import annotations

__all__ = ["SPEED_SOURCE", "speed_revert_companion"]

#: The decision source of the speed guard's reverts.
SPEED_SOURCE = "speed-guard"


def speed_revert_companion(unit: str) -> str:
    """The reason of a node reverted together with ``unit``: it would have lost its integer kernel."""
    return f"reverted with {unit}: no quantized node would read its result, so it would have no integer kernel"
