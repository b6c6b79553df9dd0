"""How the planner freezes its FakeQuantizes: the order of the plan's points and the config a unified group
shares, each checked against a plain reference (the definition, computed the slow way)."""
from __future__ import annotations

import random

import pytest

import models
from plan_helpers import plan_model

from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.match.config_choice import share_group_configs
from rewriter.plan import Consumer, Decision, FakeQuantizePoint
from rewriter.spec.model import QuantizerConfig

BUILDERS = ["concat_two_branches", "tiny_cnn", "attention_block", "residual_block", "squeeze_excitation"]


@pytest.mark.parametrize("target", ["CPU", "GPU", "VPU", "GNA", "ANY", "ORT"])
@pytest.mark.parametrize("builder", BUILDERS)
def test_points_are_in_graph_order(builder: str, target: str) -> None:
    # The definition: by the index of the first node that reads the point (the node that writes it, for a
    # point read by none), then by tensor name.
    plan = plan_model(getattr(models, builder)(), target)
    graph = graph_view(normalize(getattr(models, builder)()).model)

    def position(point: FakeQuantizePoint) -> int:
        if point.consumers:
            return min(graph.by_name[c.node] for c in point.consumers)
        producer = graph.producer.get(point.tensor)
        return producer[0] if producer else -1

    assert list(plan.points) == sorted(plan.points, key=lambda p: (position(p), p.tensor))


def _config(k: int) -> QuantizerConfig:
    return QuantizerConfig(f"c{k}", 8, "symmetric" if k % 2 else "asymmetric", "perchannel" if k % 3 else "pertensor")


def _reference(points: list[FakeQuantizePoint]) -> dict[str, QuantizerConfig]:
    """Each point's config after sharing: a group's first member by tensor name gives its config, per-tensor."""
    shared = {}
    for group in {p.unify_group for p in points if p.unify_group is not None}:
        first = min((p for p in points if p.unify_group == group), key=lambda p: p.tensor)
        shared[group] = QuantizerConfig(first.config.name, first.config.bits, first.config.mode, "pertensor")
    return {p.tensor: p.config if p.unify_group is None else shared[p.unify_group] for p in points}


@pytest.mark.parametrize("seed", range(20))
def test_a_group_shares_its_first_members_config(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"t{k:03d}" for k in range(rng.randint(1, 40))]
    rng.shuffle(names)
    points = [FakeQuantizePoint(tensor=name, role="activation", config=_config(rng.randrange(6)),
                                candidates=(), consumers=(Consumer("n", 0),), at_output=False,
                                channel_axis=1, unify_group=rng.choice([None, 0, 1, 2]),
                                trail=(Decision("insert", "r"),))
              for name in names]
    shared = share_group_configs(points)
    assert [p.tensor for p in shared] == names  # in the order given
    expected = _reference(points)
    assert {p.tensor: p.config for p in shared} == expected
    for before, after in zip(points, shared):
        assert after.channel_axis == (before.channel_axis if before.unify_group is None else None)
        assert (after is before) == (before.unify_group is None)


def test_the_matches_are_let_go_before_the_points_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    # A million-node graph's matches and their decision texts are a few hundred MB: the planner drops them once
    # every rule has acted (the integer chain's requests included), before freezing allocates the plan.
    from rewriter.match import planner  # noqa: PLC0415 - only this test needs it

    held = []
    freeze_point = planner._Planner._freeze_point

    def spy(self: planner._Planner, point: object, groups: dict[str, int]) -> FakeQuantizePoint:
        held.append((len(self.matches), len(self._match_text)))
        return freeze_point(self, point, groups)  # type: ignore[arg-type]

    monkeypatch.setattr(planner._Planner, "_freeze_point", spy)
    plan = plan_model(models.tiny_cnn(), "ORT")
    assert held and set(held) == {(0, 0)}
    assert plan.int32_biases  # the integer chain's requests came from the matches, taken before
