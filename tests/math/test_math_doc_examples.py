"""The docstring examples of the math modules are tests too: keep them true."""
from __future__ import annotations

import doctest

import pytest

from rewriter import levels
from rewriter.algorithms import fq_math
from rewriter.algorithms.fq_math import grid as fq_grid
from rewriter.algorithms.fq_math import qdq as fq_qdq
from rewriter.algorithms.fq_math import ranges as fq_ranges
from rewriter.calibrate import aggregators, estimators


@pytest.mark.parametrize("module", [fq_math, fq_grid, fq_ranges, fq_qdq, estimators, aggregators, levels],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
