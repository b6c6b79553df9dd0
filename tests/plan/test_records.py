"""``direct_init`` builds the same objects as the dataclass's own ``__init__`` it replaces."""
from __future__ import annotations

import dataclasses
import inspect
import pickle
import typing
from typing import Any

import pytest

from rewriter.errors import SourceLoc
from rewriter.ir.graph import NodeInfo, TensorInfo
from rewriter.ir.layers import BiasAdd, LinearLayer
from rewriter.match.matcher import Match
from rewriter.match.node_records import NodeQuantizers
from rewriter.plan import Consumer, Decision, FakeQuantizePoint, IntegerBias, NodeDecision, Requantization
from rewriter.records import direct_init

DECORATED = [Decision, Consumer, FakeQuantizePoint, Requantization, IntegerBias, NodeDecision, Match, NodeQuantizers,
             TensorInfo, NodeInfo, BiasAdd, LinearLayer]


def _by_dataclass(cls: type, *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)`` built by the dataclass's own generated ``__init__``."""
    made = object.__new__(cls)
    cls.__init__.__dataclass_init__(made, *args, **kwargs)  # type: ignore[misc]
    return made


def _hashed(obj: object) -> object:
    """``hash(obj)``, or the error hashing it raises (a NodeInfo's attrs is a dict: neither builds a hashable one)."""
    try:
        return hash(obj)
    except TypeError as error:
        return str(error)


def _values(cls: type) -> list[Any]:
    """A distinct value for every field, none of them its default."""
    return [(f"{f.name} of {cls.__name__}", k) for k, f in enumerate(dataclasses.fields(cls))]


@pytest.mark.parametrize("cls", DECORATED, ids=lambda c: c.__name__)
def test_the_objects_are_the_dataclasses(cls: type) -> None:
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    # The same parameters, defaults and annotations (which still resolve in the class's module).
    replaced = cls.__init__.__dataclass_init__
    assert list(inspect.signature(cls.__init__).parameters.values())[1:] == \
        list(inspect.signature(replaced).parameters.values())[1:]
    assert typing.get_type_hints(cls.__init__) == typing.get_type_hints(replaced)
    values = _values(cls)
    fields = dataclasses.fields(cls)
    calls: list[tuple[tuple, dict]] = [(tuple(values), {}),
                                        ((), {f.name: v for f, v in zip(fields, values)})]
    required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if len(required) < len(fields):  # the defaults, given by neither
        calls.append((tuple(values[:len(required)]), {}))
    for args, kwargs in calls:
        made, reference = cls(*args, **kwargs), _by_dataclass(cls, *args, **kwargs)
        assert made == reference and _hashed(made) == _hashed(reference) and repr(made) == repr(reference)
        assert [getattr(made, f.name) for f in fields] == [getattr(reference, f.name) for f in fields]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, fields[0].name, "changed")
        assert pickle.loads(pickle.dumps(made)) == made
        changed = {**{f.name: getattr(made, f.name) for f in fields}, fields[0].name: "other"}
        assert dataclasses.replace(made, **{fields[0].name: "other"}) == _by_dataclass(cls, **changed)
    # A missing field is the same error.
    with pytest.raises(TypeError, match="missing"):
        cls()


def test_defaults_and_factories() -> None:
    @direct_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Record:
        name: str
        items: list = dataclasses.field(default_factory=list)
        loc: SourceLoc = SourceLoc("<builtin>")

    first, second = Record("a"), Record("b")
    assert first.items == [] and first.items is not second.items  # a new list each, as the dataclass makes
    assert first.loc == SourceLoc("<builtin>") and Record("a", [1]).items == [1]
    assert Record("a", loc=SourceLoc("f", 1, 2)) == _by_dataclass(Record, "a", loc=SourceLoc("f", 1, 2))


def test_what_it_does_not_take_is_refused() -> None:
    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        x: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("negative")

    @dataclasses.dataclass(frozen=True, slots=True)
    class KeywordOnly:
        x: int = dataclasses.field(kw_only=True)

    @dataclasses.dataclass(frozen=True, slots=True)
    class NotInInit:
        x: int
        y: int = dataclasses.field(default=0, init=False)

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithInitVar:
        x: int
        scale: dataclasses.InitVar[int] = 1

    @dataclasses.dataclass(frozen=True, slots=True)
    class OwnInit:  # the dataclass keeps an __init__ written in the class: it must not be replaced
        x: int

        def __init__(self, x: int) -> None:
            object.__setattr__(self, "x", abs(x))

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithClassVar:
        limit: typing.ClassVar[int] = 3
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Inherits(Base):  # x is a slot of Base, not of this class
        y: int = 0

    clashing = dataclasses.make_dataclass("Clashing", [("x", int), ("__direct_set_x", int)], frozen=True,
                                          slots=True)
    for cls in (NotFrozen, NoSlots, Checked, KeywordOnly, NotInInit, WithInitVar, OwnInit, WithClassVar,
                Inherits, clashing, int):
        with pytest.raises(TypeError, match="direct_init"):
            direct_init(cls)
    assert OwnInit(-3).x == 3  # left as it was


def test_a_field_named_self() -> None:
    """The dataclass's own __init__ takes a field named ``self`` (its instance has another name); so does this."""
    named = direct_init(dataclasses.make_dataclass("Named", [("x", int), ("self", int)], frozen=True, slots=True))
    assert named(1, 2) == _by_dataclass(named, 1, 2) and named(x=1, self=2).self == 2
