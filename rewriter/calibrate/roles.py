"""Quantization roles: the names a FakeQuantize's role may be given, and what each means.

Pure Python, imported by the statistics (range estimator defaults per role)
and by the quantization math (level grids per role).
"""
from __future__ import annotations

__all__ = ["normalize_role"]

_ROLES = {
    "weight": "weight",
    "weights": "weight",
    "activation": "activation",
    "activations": "activation",
    # Output FakeQuantizes (GNA) are computed from data exactly like activations.
    "output": "activation",
    "outputs": "activation",
}


def normalize_role(role: str) -> str:
    """Map a role name to ``"weight"`` or ``"activation"`` (plural and "output" accepted).

    >>> normalize_role("weights"), normalize_role("outputs")
    ('weight', 'activation')
    """
    try:
        return _ROLES[role]
    except (KeyError, TypeError):
        raise ValueError(f"unknown role {role!r}; expected one of {sorted(set(_ROLES))}") from None
