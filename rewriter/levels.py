"""Quantization roles and the integer level range of a quantizer.

Pure Python and the vocabulary of a quantizer config: the planner (7-bit
weights against integer saturation), the statistics (estimator defaults per
role) and the quantization math (level grids) all read it, so it sits below
them all.
"""
from __future__ import annotations

__all__ = ["level_bounds", "normalize_role"]

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


def _check_mode(mode: str) -> str:
    if mode not in ("symmetric", "asymmetric"):
        raise ValueError(f"unknown mode {mode!r}; expected 'symmetric' or 'asymmetric'")
    return mode


def level_bounds(
    bits: int,
    mode: str,
    role: str,
    signed: bool | None = None,
    *,
    level_low: int | None = None,
    level_high: int | None = None,
) -> tuple[int, int, int]:
    """The integer level range of a quantizer: ``(level_low, level_high, levels)``.

    ==========  ==========  ======================================  ============================
    role        mode        signed                                  levels
    ==========  ==========  ======================================  ============================
    weight      symmetric   (always)                                [-(2^(b-1)-1), 2^(b-1)-1],
                                                                    2^b-1 levels (narrow)
    weight      asymmetric  True/None -> signed, False -> unsigned  2^b levels
    activation  symmetric   True/None -> signed, False -> unsigned  2^b levels
    activation  asymmetric  True -> signed, None/False -> unsigned  2^b levels
    ==========  ==========  ======================================  ============================

    signed = [-2^(b-1), 2^(b-1)-1]; unsigned = [0, 2^b-1]. ``signed=None`` means
    "not decided yet" (activations decide from the data in ``symmetric_range``);
    the number of levels does not depend on it, so ranges can be computed first
    and the bounds asked for again with the decided sign. Asymmetric activations
    default to unsigned because onnxruntime's integer kernels prefer uint8
    activations; asymmetric weights default to signed (int8 weights).

    An explicit ``level_low``/``level_high`` from the spec overrides everything
    (``levels = level_high - level_low + 1``).

    Example:
        >>> level_bounds(8, "symmetric", "weight")
        (-127, 127, 255)
        >>> level_bounds(8, "symmetric", "activation", signed=False)
        (0, 255, 256)
        >>> level_bounds(16, "symmetric", "activation", level_low=-32767, level_high=32767)
        (-32767, 32767, 65535)
    """
    if level_low is not None or level_high is not None:
        if level_low is None or level_high is None:
            raise ValueError("give both level_low and level_high, or neither")
        if int(level_low) >= int(level_high):
            raise ValueError(f"level_low ({level_low}) must be below level_high ({level_high})")
        return int(level_low), int(level_high), int(level_high) - int(level_low) + 1
    if isinstance(bits, bool) or int(bits) != bits or bits < 2:
        raise ValueError(f"bits must be an integer >= 2, got {bits!r}")
    _check_mode(mode)
    role = normalize_role(role)
    half = 1 << (int(bits) - 1)
    if role == "weight" and mode == "symmetric":
        return -(half - 1), half - 1, 2 * half - 1
    if mode == "asymmetric" and role == "activation":
        unsigned = signed is not True
    else:
        unsigned = signed is False
    if unsigned:
        return 0, 2 * half - 1, 2 * half
    return -half, half - 1, 2 * half
