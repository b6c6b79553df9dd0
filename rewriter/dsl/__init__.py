"""The rule DSL: patterns that name small subgraphs, and rules that place FakeQuantize.

The syntax is documented in docs/rules.md; ``ast`` holds the tree,
``parser`` reads files, ``check`` validates a whole rule set.
"""
from __future__ import annotations

from rewriter.dsl.check import check_ruleset
from rewriter.dsl.parser import load_rule_files, load_rules, parse_predicate, parse_rules

__all__ = ["check_ruleset", "load_rule_files", "load_rules", "parse_predicate", "parse_rules"]
