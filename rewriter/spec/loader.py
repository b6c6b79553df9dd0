"""Load hardware spec files (hw_specs/*.yaml) into validated ``HardwareSpec`` objects.

Loading runs in four stages, each collecting every error it finds (with
file:line:column) instead of stopping at the first:

1. read (``rewriter.spec.reader``): one file -> ``RawSpec`` (keys, types and enums checked, named
   configs expanded; config *references* are kept as names);
2. chain: follow ``extends`` (a target name or a path), detecting cycles;
3. merge: from the farthest parent to the file itself, configs replace by
   name and op entries merge key by key (``Op: null`` removes one);
4. build: config names resolved (after merging, so a child that redefines a
   config changes every inherited op using it), variant predicates parsed.

Example:
    >>> spec = load_spec(resolve_target("cpu"))
    >>> [c.mode for c in spec.op("Conv").activations]
    ['symmetric', 'asymmetric']

The format is documented in docs/specs.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable

from rewriter.dsl.ast import Expr
from rewriter.dsl.parser import parse_predicate
from rewriter.errors import SourceLoc, UserError, UserErrors
from rewriter.io_utils import cannot_look_up
from rewriter.spec import builtin
from rewriter.spec.model import HardwareSpec, OpSpec, OpVariant, PotDevice, QuantizerConfig
from rewriter.spec.reader import CONFIG_LISTS, RawConfig, RawOp, RawSpec, RawVariant, Ref, read_pot_names, read_spec
from rewriter.spec.yaml_nodes import Problems, YamlFile, suggest

_SPEC_SUFFIXES = (".yaml", ".yml")

# ---------------------------------------------------------------- public API


def builtin_specs_dir() -> Path:
    """The folder of the built-in targets: ``$REWRITER_SPECS_DIR`` or the shipped ``hw_specs``."""
    override = os.environ.get("REWRITER_SPECS_DIR")
    if override:
        return Path(override)
    return builtin.specs_dir()


def list_targets() -> list[tuple[str, Path, str]]:
    """The built-in targets as (name, path, description), sorted by name.

    Only ``name`` and ``description`` are read, so one broken file does not
    hide the others (``load_spec`` reports its errors).
    """
    folder = builtin_specs_dir()
    if not folder.is_dir():
        return []
    found = [(*_peek(path), path) for path in _spec_files(folder)]
    return sorted(((name, path, desc) for name, desc, path in found), key=lambda t: (t[0], str(t[1])))


def pot_devices() -> dict[str, PotDevice]:
    """The original tool's device names (upper case) that the built-in targets serve: a target's
    own name when its spec has a ``pot`` section, and that section's aliases.

    Only the ``pot`` sections are read, as ``list_targets`` reads only names.

    Raises:
        UserErrors: a ``pot`` section is malformed.
    """
    folder = builtin_specs_dir()
    found: dict[str, PotDevice] = {}
    problems = Problems()
    for path in _spec_files(folder) if folder.is_dir() else []:
        f = YamlFile(path, Problems())  # the rest of the file is load_spec's to report
        root = f.compose()
        entries = {key: value for key, _, value in f.pairs(root, "the spec")} if root is not None else {}
        if "pot" not in entries:
            continue
        name = str(f.value(entries["name"])) if "name" in entries else path.stem
        pot = read_pot_names(YamlFile(path, problems), entries["pot"])
        found.setdefault(name.upper(), PotDevice(name, pot.preset_renames))
        for alias, differs in pot.aliases.items():
            found.setdefault(alias.upper(), PotDevice(name, pot.preset_renames, differs))
    problems.raise_if_any()
    return found


def resolve_target(name_or_path: str) -> Path:
    """The spec file for a built-in target name (any case) or a path to a .yaml file.

    Raises:
        UserError: no such target or file; the message lists the built-in targets.
    """
    text = str(name_or_path)
    if looks_like_path(text):
        path = Path(text).expanduser()
        if path.is_file():
            return path.resolve()
        raise UserError(f"spec file '{text}' not found")
    hit = _named_spec(builtin_specs_dir(), text)
    if hit is None:
        hit = next((p for name, p, _ in list_targets() if name.lower() == text.lower()), None)
    if hit is not None:
        return hit
    if Path(text).is_file():
        return Path(text).resolve()
    names = ", ".join(name for name, _, _ in list_targets())
    raise UserError(f"unknown target '{text}'; available: {names} (or give a path to a spec file)")


def load_spec(path: str | Path) -> HardwareSpec:
    """Load, merge (``extends``) and validate a spec file.

    Raises:
        UserErrors: every problem found in the file and its parents, one per line,
            each with file:line:column.
    """
    problems = Problems()
    start = Path(path).expanduser()
    if not start.is_file():
        raise UserErrors([UserError(f"spec file '{path}' not found")])
    chain, complete = _load_chain(start.resolve(), problems)
    if not complete:
        # A parent that could not be read would make every reference to its
        # configs and ops look wrong: report only what is certain.
        problems.raise_if_any()
    merged = _merge(chain, problems)
    spec = _build(chain, merged, problems)
    problems.raise_if_any()
    return spec


def spec_to_dict(spec: HardwareSpec) -> dict:
    """A plain, JSON-able rendering of a spec, stable across runs (``rewriter specs show``).

    Op config lists are rendered with ``QuantizerConfig.describe()``; the full
    fields of each named config are under ``configs``.
    """
    return {
        "name": spec.name,
        "path": spec.path,
        "description": spec.description,
        "extends": list(spec.extends),
        "rules": list(spec.rules),
        "activation_storage": spec.activation_storage,
        "saturation_fix": spec.saturation_fix,
        "configs": {name: [_config_dict(c) for c in expansions] for name, expansions in spec.configs.items()},
        "ops": {op_type: _op_dict(op) for op_type, op in spec.ops.items()},
    }


# ---------------------------------------------------------------- stage 2: the extends chain


def _load_chain(path: Path, problems: Problems) -> tuple[list[RawSpec], bool]:
    """The file and its ancestors, nearest first; False if any link is missing or broken."""
    chain: list[RawSpec] = []
    current = path
    while True:
        raw = read_spec(current, problems)
        if raw is None:
            return chain, False
        chain.append(raw)
        if raw.extends is None:
            return chain, True
        parent = _find_parent(raw, problems)
        if parent is None:
            return chain, False
        if parent in [r.path for r in chain]:
            names = " -> ".join(_display(r) for r in chain) + f" -> {parent.name}"
            problems.add(raw.extends[1], f"extends cycle: {names}; a spec cannot extend itself, "
                                         "directly or through others")
            return chain, False
        current = parent


def _find_parent(raw: RawSpec, problems: Problems) -> Path | None:
    """Resolve ``extends``: a path (relative to the file), else a name beside it, else a built-in."""
    assert raw.extends is not None
    text, loc = raw.extends
    if looks_like_path(text):
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = raw.path.parent / candidate
        try:
            if candidate.is_file():
                return candidate.resolve()
            problems.add(loc, f"extends: spec file '{text}' not found (looked for {candidate.resolve()}); "
                              "paths are relative to the spec file")
        except (OSError, RuntimeError) as exc:  # a name too long for the file system, a symlink loop
            problems.add(loc, f"extends: spec file {cannot_look_up(text, exc)}")
        return None
    # A user's own cpu.yaml may say `extends: cpu` to mean the built-in one.
    for folder in (raw.path.parent, builtin_specs_dir()):
        hit = _named_spec(folder, text, exclude=raw.path)
        if hit is not None:
            return hit
    names = [name for name, _, _ in list_targets()]
    problems.add(loc, f"extends: no spec named '{text}' beside this file or among the built-in targets "
                      f"({', '.join(names)}){suggest(text, names)}; give a target name or a path to a .yaml file")
    return None


def _display(raw: RawSpec) -> str:
    return f"{raw.path.name} ({raw.name})" if raw.name else raw.path.name


# ---------------------------------------------------------------- stage 3: merge


@dataclass
class _Merged:
    configs: dict[str, RawConfig] = field(default_factory=dict)
    ops: dict[str, RawOp] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    model_types: dict[str, list[str]] = field(default_factory=dict)
    saturation_fix: tuple[str, SourceLoc] | None = None


def _merge(chain: list[RawSpec], problems: Problems) -> _Merged:
    """Apply the chain from the farthest parent to the file itself.

    dict assignment keeps an existing key's position, so order stays
    "parent's first" and an overridden entry keeps its parent's place.
    """
    merged = _Merged()
    parent: RawSpec | None = None
    for raw in reversed(chain):
        merged.configs.update(raw.configs)
        for op in raw.ops.values():
            _merge_op(merged.ops, op, parent, problems)
        if raw.rules is not None:
            merged.rules = raw.rules
        merged.model_types.update(raw.model_types)
        if raw.saturation_fix is not None:
            merged.saturation_fix = raw.saturation_fix
        parent = raw
    return merged


def _merge_op(ops: dict[str, RawOp], op: RawOp, parent: RawSpec | None, problems: Problems) -> None:
    if op.removed:
        if op.op_type in ops:
            del ops[op.op_type]
        elif parent is None:
            problems.add(op.loc, f"ops.{op.op_type}: null removes an inherited entry, but this spec "
                                 "extends nothing; remove the line or add 'extends'")
        else:
            problems.add(op.loc, f"ops.{op.op_type}: null removes an inherited entry, but "
                                 f"{_display(parent)} has no '{op.op_type}'; remove the line")
        return
    base = ops.get(op.op_type)
    ops[op.op_type] = op if base is None else RawOp(op.op_type, op.loc, {**base.fields, **op.fields})


# ---------------------------------------------------------------- stage 4: build


def _build(chain: list[RawSpec], merged: _Merged, problems: Problems) -> HardwareSpec:
    configs = {name: c.expansions for name, c in merged.configs.items() if c.expansions is not None}
    # A config whose definition is broken is already reported; its users are not.
    broken = {name for name, c in merged.configs.items() if c.expansions is None}
    ops = {op_type: _build_op(raw, configs, broken, problems) for op_type, raw in merged.ops.items()}
    root = chain[0]
    storage = next((r.activation_storage for r in chain if r.activation_storage is not None),
                   ("unsigned", root.loc))
    saturation_fix, saturation_fix_loc = merged.saturation_fix or ("no", SourceLoc("<builtin>"))
    return HardwareSpec(
        name=root.name or "",
        path=str(root.path),
        description=root.description,
        extends=tuple(r.name or r.path.stem for r in chain[1:]),
        configs=MappingProxyType(configs),
        ops=MappingProxyType(ops),
        rules=tuple(merged.rules),
        model_types=MappingProxyType({name: tuple(files) for name, files in merged.model_types.items()}),
        pot=root.pot,
        saturation_fix=saturation_fix,  # type: ignore[arg-type]  # the reader accepted only known modes
        saturation_fix_loc=saturation_fix_loc,
        loc=root.loc,
        activation_storage=storage[0],
        activation_storage_loc=storage[1],
    )


def _build_op(raw: RawOp, configs: dict[str, tuple[QuantizerConfig, ...]], broken: set[str],
              problems: Problems) -> OpSpec:
    where = f"ops.{raw.op_type}"

    def get(key: str, default: object) -> object:
        found = raw.fields.get(key)
        return default if found is None or found.value is None else found.value

    lists = {key: _resolve_refs(get(key, []), f"{where}.{key}", configs, broken, problems)  # type: ignore[arg-type]
             for key in CONFIG_LISTS}
    _check_op(raw, get, problems)
    variants = tuple(_build_variant(v, lists, f"{where}.variants.{v.name}", configs, broken, problems)
                     for v in get("variants", []))  # type: ignore[attr-defined]
    return OpSpec(
        op_type=raw.op_type,
        activations=lists["activations"],
        weights=lists["weights"],
        outputs=lists["outputs"],
        ports=get("ports", None),  # type: ignore[arg-type]
        agnostic=bool(get("agnostic", False)),
        pass_through=get("pass_through", "first"),  # type: ignore[arg-type]
        unified_scales=get("unified_scales", None),  # type: ignore[arg-type]
        variants=variants,
        note=str(get("note", "")),
        loc=raw.loc,
    )


def _check_op(raw: RawOp, get: Callable[[str, object], object], problems: Problems) -> None:
    """Checks across keys, run after merging (the keys may come from different files)."""
    where = f"ops.{raw.op_type}"
    if get("pass_through", None) is not None and not get("agnostic", False):
        problems.add(raw.fields["pass_through"].loc, f"{where}.pass_through applies only to agnostic ops; "
                                                     "add 'agnostic: true' or remove it")
    ports, unified = get("ports", None), get("unified_scales", None)
    if isinstance(unified, tuple) and isinstance(ports, tuple):
        outside = sorted({p for group in unified for p in group} - set(ports))
        if outside:
            problems.add(raw.fields["unified_scales"].loc,
                         f"{where}.unified_scales names input {outside[0]}, which ports {list(ports)} "
                         "does not quantize; add it to ports or remove it from the group")


def _resolve_refs(refs: list[Ref], where: str, configs: dict[str, tuple[QuantizerConfig, ...]],
                  broken: set[str], problems: Problems) -> tuple[QuantizerConfig, ...]:
    """Concatenate the expansions of the named configs, in listed order."""
    out: list[QuantizerConfig] = []
    for ref in refs:
        if ref.name in configs:
            out.extend(configs[ref.name])
        elif ref.name not in broken:
            hint = suggest(ref.name, configs) or (f"; defined configs: {', '.join(configs)}" if configs
                                                  else "; this spec defines no configs")
            problems.add(ref.loc, f"{where}: config '{ref.name}' is not defined{hint}")
    return tuple(out)


def _build_variant(raw: RawVariant, op_lists: dict[str, tuple[QuantizerConfig, ...]], where: str,
                   configs: dict[str, tuple[QuantizerConfig, ...]], broken: set[str],
                   problems: Problems) -> OpVariant:
    """A complete variant: the lists it does not name are copied from its op, so that
    a consumer can use the variant's three lists as they are."""
    lists = {key: _resolve_refs(raw.refs[key], f"{where}.{key}", configs, broken, problems)
             if key in raw.refs else op_lists[key] for key in CONFIG_LISTS}
    return OpVariant(name=raw.name, when=raw.when, when_ast=_parse_when(raw.when, raw.when_loc, problems),
                     activations=lists["activations"], weights=lists["weights"], outputs=lists["outputs"],
                     loc=raw.loc)


def _parse_when(text: str, loc: SourceLoc, problems: Problems) -> Expr | None:
    try:
        return parse_predicate(text, loc)
    except UserError as exc:
        # One line per error, like every other spec error: no source excerpt.
        for err in exc.errors if isinstance(exc, UserErrors) else [exc]:
            problems.add(err.loc, err.message)
        return None


# ---------------------------------------------------------------- helpers


def looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.lower().endswith(_SPEC_SUFFIXES)


def _spec_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _SPEC_SUFFIXES)


def _named_spec(folder: Path, name: str, exclude: Path | None = None) -> Path | None:
    """``<name>.yaml`` in ``folder``, compared case-insensitively."""
    if not folder.is_dir():
        return None
    for path in _spec_files(folder):
        if path.stem.lower() == name.lower() and path.resolve() != exclude:
            return path.resolve()
    return None


def _peek(path: Path) -> tuple[str, str]:
    """(name, description) of a spec file, without validating it; the file stem if unreadable."""
    found = YamlFile(path, Problems()).top_level_strings(("name", "description"))
    return found.get("name") or path.stem, found.get("description", "")


def _config_dict(config: QuantizerConfig) -> dict:
    return {
        "bits": config.bits, "mode": config.mode, "granularity": config.granularity,
        "level_low": config.level_low, "level_high": config.level_high,
        "signed": config.signed, "unified_zeropoint": config.unified_zeropoint,
    }


def _op_dict(op: OpSpec) -> dict:
    unified = op.unified_scales
    return {
        "activations": [c.describe() for c in op.activations],
        "weights": [c.describe() for c in op.weights],
        "outputs": [c.describe() for c in op.outputs],
        "ports": None if op.ports is None else list(op.ports),
        "agnostic": op.agnostic,
        "pass_through": op.pass_through,
        "unified_scales": unified if unified is None or unified == "all" else [list(g) for g in unified],
        "variants": [
            {"name": v.name, "when": v.when, "activations": [c.describe() for c in v.activations],
             "weights": [c.describe() for c in v.weights], "outputs": [c.describe() for c in v.outputs]}
            for v in op.variants
        ],
        "note": op.note,
    }
