"""TPE's settings: its trial budget and search space (the search itself: ``rewriter.search.tpe``)."""
from __future__ import annotations

from dataclasses import dataclass

from rewriter.errors import UserError
from rewriter.tuning.accuracy_aware import AccuracyAwareSettings, DropType

__all__ = ["TPE_SOURCE", "TpeSettings"]

#: The decision source of the nodes a TPE trial keeps float, in plans, reports and ``audit``.
TPE_SOURCE = "tpe-search"


@dataclass(frozen=True)
class TpeSettings:
    """The search's budget and space (docs/accuracy-aware.md, TPE). The seed is the run's ``--seed``."""

    max_trials: int = 20
    max_minutes: float | None = None
    maximal_drop: float = 0.01
    drop_type: DropType = "absolute"
    groups: int = 8
    presets: tuple[str, ...] = ("performance", "mixed")
    estimators: tuple[str, ...] = ("default", "quantile")
    aggregators: tuple[str, ...] = ("default", "max")
    storage: str | None = None
    batch: int = 4
    workers: int = 1
    ray: bool = False  # evaluate trials as Ray tasks (on ``ray_address``, or a new local Ray instance)
    ray_address: str | None = None

    def __post_init__(self) -> None:
        for name, value in (("max_trials", self.max_trials), ("batch", self.batch), ("workers", self.workers)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        if self.groups < 0:
            raise UserError(f"groups must be 0 or more, got {self.groups}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UserError(f"max_minutes must be above 0, got {self.max_minutes}")

    @property
    def limit(self) -> AccuracyAwareSettings:
        return AccuracyAwareSettings(maximal_drop=self.maximal_drop, drop_type=self.drop_type)
