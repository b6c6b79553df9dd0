"""The quantization params' own sections: ``ignored``, ``weights``/``activations`` and ``range_estimator``.

Each function reads one checked section into the value the pipeline takes
(node names and ``IgnoredOperation``, ``QuantizerOverrides``,
``RangeOptions``), reporting through the ``SchemaChecker`` that walked the
file, so every message keeps the file's line and column.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping

from rewriter.algorithms.minmax import RangeOptions
from rewriter.config.pot_keys import PLACEHOLDER
from rewriter.config.results import Notice, QuantizerOverride, QuantizerOverrides
from rewriter.config.schema import SchemaChecker
from rewriter.errors import SourceLoc
from rewriter.ir.ops import attribute_kinds, known_op_types
from rewriter.match.planner import IgnoredOperation
from rewriter.spec.reader import OPENVINO_OP_NAMES
from rewriter.spec.yaml_nodes import suggest

__all__ = ["read_ignored", "read_quantizer_overrides", "read_ranges"]

#: Attribute kinds usable as a filter, with the Python type of one value; the plural kinds hold lists.
_SCALARS: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str,
                                             "INTS": int, "FLOATS": float, "STRINGS": str}


def read_quantizer_overrides(checker: SchemaChecker, params: Mapping[str, Any], where: str) -> QuantizerOverrides:
    """The ``weights`` and ``activations`` sections of ``params`` (at ``where``) as overrides."""
    return QuantizerOverrides(_quantizer(checker, params.get("weights", {}), f"{where}.weights"),
                              _quantizer(checker, params.get("activations", {}), f"{where}.activations"))


def read_ignored(checker: SchemaChecker, ignored: Mapping[str, Any],
                 where: str) -> tuple[tuple[tuple[str, SourceLoc], ...], tuple[IgnoredOperation, ...]]:
    """``ignored``: its node names (each with where it is written) and operations, the documentation's
    placeholders skipped with a warning."""
    scope = []
    for i, name in enumerate(ignored.get("scope", ())):
        loc = checker.loc(f"{where}.scope[{i}]")
        if PLACEHOLDER.match(name):
            checker.warnings.append(Notice(loc, f"'{name}' is the documentation's placeholder, not a node name; "
                                                "ignored"))
        else:
            scope.append((name, loc))
    ops = []
    for i, entry in enumerate(ignored.get("operations", ())):
        op = _ignored_op(checker, entry, f"{where}.operations[{i}]")
        if op is not None:
            ops.append(op)
    return tuple(scope), tuple(ops)

def _ignored_op(checker: SchemaChecker, entry: Mapping[str, Any], where: str) -> IgnoredOperation | None:
    """OpenVINO type names mapped to ONNX ones; attributes checked against the ONNX op's schema."""
    written = entry.get("type")
    if written is None:
        return None
    if PLACEHOLDER.match(written):
        checker.warnings.append(Notice(checker.loc(f"{where}.type"), f"'{written}' is the documentation's "
                                    "placeholder, not an operation type; this entry is ignored"))
        return None
    op_type = _onnx_op_type(written)
    if op_type is None:
        hint = suggest(written, [*OPENVINO_OP_NAMES, *known_op_types()])
        checker.error(f"{where}.type", f"unknown operation type '{written}' in {where}.type (OpenVINO or "
                                    f"ONNX names){hint}")
        return None
    attributes = []
    given = entry.get("attributes", {})
    if not isinstance(given, Mapping):
        checker.error(f"{where}.attributes", f"{where}.attributes must map attribute names to values, not be a "
                                          f"{type(given).__name__}")
        return None
    for name, value in given.items():
        if PLACEHOLDER.match(name):
            checker.warnings.append(Notice(checker.loc(f"{where}.attributes.{name}", key=True),
                                        f"'{name}' is the documentation's placeholder; attribute ignored"))
            continue
        checked = _attribute(checker, op_type, written, name, value, f"{where}.attributes.{name}")
        if checked is not None:
            attributes.append((name, checked))
    return IgnoredOperation(op_type, tuple(attributes), checker.loc(f"{where}.type"))


def _attribute(checker: SchemaChecker, op_type: str, written: str, name: str, value: Any, where: str) -> Any:
    """An attribute filter's value, checked against the ONNX op's schema; None if reported."""
    known = attribute_kinds(op_type)
    if known is None:
        return value  # a contrib op: nothing to check against
    shown = op_type if op_type == written else f"{op_type} ({written} in OpenVINO)"
    if name not in known:
        hint = suggest(name, known) or f"; {op_type} has: {', '.join(sorted(known)) or 'no attributes'}"
        checker.error(where, f"unknown attribute '{name}' in {where}: ONNX operation {shown} has no such "
                             f"attribute{hint}", key=True)
        return None
    kind = known[name]
    scalar = _SCALARS.get(kind)
    if scalar is None:
        checker.error(where, f"{where}: attribute '{name}' of {op_type} cannot be used as a filter "
                             f"(it is a {kind})")
        return None
    many = kind in ("INTS", "FLOATS", "STRINGS")
    is_list = isinstance(value, (list, tuple))
    items = list(value) if many and is_list else [value]
    converted = [_coerce(item, scalar) for item in items]
    if (is_list and not many) or any(c is None for c in converted):
        wanted = f"a list of {scalar.__name__}s" if many else f"an {scalar.__name__}" if scalar is int \
            else f"a {scalar.__name__}"
        checker.error(where, f"{where} must be {wanted} (attribute '{name}' of {op_type}), got {value!r}")
        return None
    return converted if many else converted[0]


def _quantizer(checker: SchemaChecker, section: Mapping[str, Any], where: str) -> QuantizerOverride:
    fields = {k: section.get(k) for k in ("bits", "mode", "granularity", "level_low", "level_high")}
    try:
        return QuantizerOverride(**fields, loc=checker.loc(where, key=True))
    except ValueError as exc:
        at = next((f"{where}.{k}" for k in ("level_low", "level_high") if fields[k] is not None), where)
        checker.error(at, f"{where}: {exc}")
        return QuantizerOverride()


def read_ranges(checker: SchemaChecker, params: Mapping[str, Any], where: str) -> RangeOptions | None:
    """Global and per-role range_estimator sections -> RangeOptions (per role: the role's keys win)."""
    glob = params.get("range_estimator", {})
    presets: dict[str, str] = {}
    overrides: dict[str, Mapping[str, Mapping[str, object]] | None] = {}
    for role in ("weights", "activations"):
        own = params.get(role, {}).get("range_estimator", {})
        presets[role] = own.get("preset", glob.get("preset", "default"))
        sides = {side: MappingProxyType({**glob.get(side, {}), **own.get(side, {})})
                 for side in ("min", "max") if side in glob or side in own}
        overrides[role] = MappingProxyType(sides) if sides else None
    if not glob and not params.get("weights", {}).get("range_estimator") \
            and not params.get("activations", {}).get("range_estimator"):
        return None
    if presets["weights"] != presets["activations"]:
        # RangeOptions has one preset for both roles: activations' is used. It does not matter
        # for weights when their min and max both name their estimator type.
        weight_sides: Mapping[str, Mapping[str, object]] = overrides["weights"] or {}
        if not all("type" in weight_sides.get(s, {}) for s in ("min", "max")):
            at = next(p for p in (f"{where}.{r}range_estimator.preset" for r in ("activations.", "", "weights."))
                      if p in checker.locs)
            checker.unsupported.append(Notice(checker.loc(at), f"the range_estimator presets of activations "
                                           f"('{presets['activations']}') and weights ('{presets['weights']}') "
                                           "differ; one preset serves both here, so the activations' is used "
                                           "for the weights too"))
    return RangeOptions(estimator_preset=presets["activations"], weights=overrides["weights"],
                        activations=overrides["activations"])


def _onnx_op_type(name: str) -> str | None:
    """ONNX op type for an ONNX or OpenVINO name (exact, then the OpenVINO table, then case-insensitive)."""
    known = known_op_types()
    if name in known:
        return name
    if name in OPENVINO_OP_NAMES:
        return OPENVINO_OP_NAMES[name]
    folded = [op for op in known if op.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def _coerce(value: Any, scalar: Callable[[Any], Any]) -> Any:
    """A config value as an ONNX attribute value: numbers may be written as strings ("1"), as POT allowed."""
    if isinstance(value, bool):
        return None
    if scalar is str:
        return value if isinstance(value, str) else None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    if scalar is int:
        return int(value) if float(value).is_integer() else None
    return float(value)
