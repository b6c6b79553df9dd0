"""Fuzz the rule, spec and config loaders with mutated shipped files (see fuzz_targets).

A bounded run in CI: REWRITER_FUZZ_EXAMPLES inputs per loader (default 150, about 20 s each).
For a longer run: REWRITER_FUZZ_EXAMPLES=20000 pytest tests/fuzz, or tools/fuzz_loaders.py
with a time budget.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS, check_loader, mutated, seeds

EXAMPLES = int(os.environ.get("REWRITER_FUZZ_EXAMPLES", "150"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_loader_survives_mutated_files(name: str) -> None:
    load, patterns, suffixes = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=mutated(seeds(*patterns)))
    def fuzz(data: bytes) -> None:
        for suffix in suffixes:
            check_loader(load, data, suffix)

    fuzz()
