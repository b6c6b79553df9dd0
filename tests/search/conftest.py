"""The searches' shared fixture: the damaged LayerNorm block (tests/tuning/test_guard.py) with its data, a
target that quantizes its LayerNorm, and the float model named for ``metric_functions``."""
from __future__ import annotations

from pathlib import Path

import pytest

import models


@pytest.fixture(scope="session")
def damaged_block(tmp_path_factory) -> dict[str, Path]:
    return models.write_damaged_layer_norm(tmp_path_factory.mktemp("search"))


@pytest.fixture(autouse=True)
def float_model_for_metrics(damaged_block: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWRITER_TEST_FLOAT_MODEL", str(damaged_block["model"]))
