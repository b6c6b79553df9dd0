"""Which op types exist: the ONNX operator registry, for validating specs and rules."""
from __future__ import annotations

import difflib
from functools import lru_cache

from rewriter.ir.layers import DEFAULT_DOMAINS

# Ops of other domains that exported models commonly carry and that targets may name.
_EXTRA_OP_TYPES = frozenset({
    "FakeQuantize",  # org.openvinotoolkit
    "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "SkipLayerNormalization", "Attention",  # com.microsoft
})


@lru_cache(maxsize=1)
def known_op_types() -> frozenset[str]:
    """Every op type of the default ONNX domain (all opsets), plus a few common contrib ops."""
    # Imported here, not at the top: the spec loader imports this module, and `rewriter specs list` (which
    # reads only names) must not pay for loading onnx (over a second).
    import onnx.defs

    names = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in DEFAULT_DOMAINS}
    return frozenset(names) | _EXTRA_OP_TYPES


def closest_op_type(name: str) -> str | None:
    """The known op type closest to a misspelt one, compared case-insensitively."""
    ops = sorted(known_op_types())
    lowered = {o.lower(): o for o in ops}
    if name.lower() in lowered:
        return lowered[name.lower()]
    hit = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hit[0]] if hit else None


def attribute_kinds(op_type: str) -> dict[str, str] | None:
    """The attributes of ONNX op ``op_type`` (newest opset) and their kinds, by the schema's names
    ("INT", "FLOATS", "STRING", "TENSOR", ...); None when the default domain has no such op."""
    import onnx.defs  # as in known_op_types

    try:
        schema = onnx.defs.get_schema(op_type)
    except onnx.defs.SchemaError:
        return None
    # onnx's stubs type AttrType as an int enum without the protobuf enum members' .name.
    return {name: attribute.type.name for name, attribute in schema.attributes.items()}  # type: ignore[attr-defined]
