"""The configuration file and the command line (or the API's keyword options) -> ``QuantizeOptions``.

A value given on the command line (not None) beats the file; the file beats
the defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any, Mapping

from rewriter.algorithms.minmax import RangeOptions
from rewriter.config.pot import POT_DEFAULT_TARGET, preset_for_target
from rewriter.config.results import LoadedConfig, Notice
from rewriter.errors import SourceLoc, UserError
from rewriter.options import QuantizeOptions
from rewriter.spec.loader import list_targets, load_spec, resolve_target

__all__ = ["merge_cli", "preset_notice"]


def merge_cli(loaded: LoadedConfig | None, overrides: Mapping[str, Any] | None = None) -> QuantizeOptions:
    """QuantizeOptions from the config file and the command line: CLI > file > defaults.

    ``overrides`` holds QuantizeOptions field names; None means "not given on
    the command line" (``bias_correction="none"`` is given: it turns off the
    file's bias correction). ``ignore_scope``/``ignore_ops`` add to the file's
    lists; ``estimator_preset`` (the --range-estimator flag) replaces the
    file's preset and keeps its min/max overrides. When the command line
    changes the target, the file's preset is renamed for that target.

    Raises:
        UserError: the file's model_type has no rules on the target that runs (at the file's position).

    >>> merge_cli(None, {"target": None, "subset_size": 8}).subset_size
    8
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    estimator_preset = given.pop("estimator_preset", None)
    names = {f.name for f in dataclasses.fields(QuantizeOptions)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"merge_cli: not QuantizeOptions fields: {', '.join(unknown)}")
    values: dict[str, Any] = dict(loaded.option_fields()) if loaded else {}
    if loaded and loaded.preset_written and "target" in given and "preset" not in given:
        values["preset"] = preset_for_target(loaded.preset_written, given["target"])
    for key in ("ignore_scope", "ignore_ops"):
        if key in given:
            merged = list(values.get(key, ()))
            merged += [item for item in given[key] if item not in merged]  # equality: attributes hold lists
            given[key] = tuple(merged)
    values.update(given)
    if estimator_preset is not None:
        values["ranges"] = replace(values.get("ranges") or RangeOptions(), estimator_preset=estimator_preset)
    options = QuantizeOptions(**values)
    if loaded and loaded.model_type and "model_type" not in given:
        _check_model_type(loaded, options.target)
    return options


def _check_model_type(loaded: LoadedConfig, target: str) -> None:
    """The file's model_type against the target that runs (which the command line may have changed), so that
    a target without rules for it is reported at the file's position."""
    spec = load_spec(resolve_target(target))
    if loaded.model_type not in spec.model_types:
        givers = ", ".join(name for name, path, _ in list_targets() if loaded.model_type in load_spec(path).model_types)
        raise UserError(f"compression.model_type '{loaded.model_type}': target {spec.name} gives no rules for it "
                        f"(targets that do: {givers or 'none'}); set target_device or --target to one of them, "
                        "or remove model_type", loaded.model_type_loc or SourceLoc(loaded.path))


def preset_notice(loaded: LoadedConfig | None, overrides: Mapping[str, Any] | None,
                  options: QuantizeOptions) -> Notice | None:
    """The warning that the file's preset runs renamed, naming the target it was renamed for.

    ``overrides`` and ``options`` are ``merge_cli``'s arguments and result. None when the preset runs as
    written, or when the command line gave one (never renamed).
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if loaded is None or loaded.preset_written is None or "preset" in given:
        return None
    written, runs = loaded.preset_written, options.preset
    if runs == written:
        return None
    loc = loaded.preset_loc or SourceLoc(loaded.path)
    if "target" in given:
        return Notice(loc, f"preset '{written}' runs as '{runs}' on {given['target']}, as in the original tool")
    if loaded.device:
        return Notice(loc, f"preset '{written}' runs as '{runs}' on {loaded.device}, as in the original tool")
    return Notice(loc, f"preset '{written}' runs as '{runs}' for target {options.target}: the original tool "
                       f"renamed it so for a file without target_device (its default device {POT_DEFAULT_TARGET}); "
                       "set target_device, or --preset, to choose")
