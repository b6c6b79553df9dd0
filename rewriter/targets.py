"""A target's planning inputs: its hardware spec and its rules, loaded and validated.

Both front ends (``rewriter.api`` and ``rewriter.pipeline``) start here, so it
sits below them and imports neither.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rewriter.choices import MODEL_TYPES
from rewriter.dsl import ast
from rewriter.dsl.parser import load_rule_files
from rewriter.errors import UserError
from rewriter.spec.loader import load_spec, resolve_target
from rewriter.spec.model import HardwareSpec


@dataclass(frozen=True)
class PlanInputs:
    """Everything the planner reads, loaded and validated."""

    spec: HardwareSpec
    rules: ast.RuleSet

_log = logging.getLogger(__name__)


def load_plan_inputs(target: str = "CPU", rules: Sequence[str | Path] = (),
                     model_type: str | None = None) -> PlanInputs:
    """Load the target's spec and its rules, plus model-type (the spec's ``model_types``) and user rule files.

    Args:
        target: a built-in target name (any case) or a spec file path.
        rules: extra rule files, applied after the target's own.
        model_type: a key of the spec's ``model_types`` (e.g. "transformer"), whose rule files are added.

    Raises:
        UserError: an unknown model type, or one the target gives no rules for.
    """
    spec = load_spec(resolve_target(target))
    files: list[str | Path] = list(spec.rules)
    if model_type:
        key = model_type.lower()
        if key not in MODEL_TYPES:
            raise UserError(f"unknown model type {model_type!r}; known: {', '.join(MODEL_TYPES)}")
        if key not in spec.model_types:
            raise UserError(f"target {spec.name} gives no rules for model type {key!r}; add "
                            f"'model_types: {{{key}: [...]}}' to {spec.path}, or extend a built-in target")
        files.extend(spec.model_types[key])
    files.extend(rules)
    _log.debug("target %s: spec %s, rule files %s", spec.name, spec.path, ", ".join(str(f) for f in files))
    return PlanInputs(spec, load_rule_files(files))
