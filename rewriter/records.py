"""A faster ``__init__`` for the frozen, slotted dataclasses a large graph builds by the million.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__`` (its own
``__setattr__`` refuses), which costs about as much again as the rest of building the object. A
million-node plan builds millions of decisions, matches and node records; ``direct_init`` gives such a
class an ``__init__`` that fills each slot through the slot's own descriptor instead. The objects are the
same: the same fields and defaults, still frozen, equal, hashed and printed alike, and the new ``__init__``
has the old one's signature and annotations (tests/plan/test_records.py holds each decorated class to the
dataclass's own ``__init__``).
"""
from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["direct_init"]

# The generated code's own names start so; a field named so is refused (none of ours is).
_PREFIX = "__direct_"


def direct_init(cls: type[T]) -> type[T]:
    """Replace the ``__init__`` of ``cls``, a ``@dataclass(frozen=True, slots=True)``, by one that sets its
    slots directly. Put it above the ``@dataclass`` line.

    Only the plain case is taken, and anything else is refused here, at import: the ``__init__`` must be the
    one the dataclass generated (not one written in the class), every field a slot of the class itself (not
    inherited) and in ``__init__``, none keyword-only, no ``__post_init__`` and no ``InitVar`` or ``ClassVar``.
    """
    _check(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    # As dataclasses builds its own: an outer function takes the helpers as parameters, so the __init__ it
    # returns finds them in its closure and the module's names in its globals (which annotations resolve in).
    # Each default is the replaced __init__'s own (for a default_factory field, the dataclass's marker that
    # the factory is to be called), so the two signatures are the same.
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}
    helpers: dict[str, Any] = {}
    signature, body = [], []
    for f in fields:
        helpers[f"{_PREFIX}set_{f.name}"] = cls.__dict__[f.name].__set__
        if defaults[f.name] is inspect.Parameter.empty:
            signature.append(f.name)
        else:
            helpers[f"{_PREFIX}default_{f.name}"] = defaults[f.name]
            signature.append(f"{f.name}={_PREFIX}default_{f.name}")
            if f.default_factory is not dataclasses.MISSING:
                helpers[f"{_PREFIX}factory_{f.name}"] = f.default_factory
                body.append(f"        if {f.name} is {_PREFIX}default_{f.name}:\n"
                            f"            {f.name} = {_PREFIX}factory_{f.name}()\n")
        body.append(f"        {_PREFIX}set_{f.name}({_PREFIX}self, {f.name})\n")
    source = (f"def {_PREFIX}make({', '.join(helpers)}):\n"
              f"    def __init__({_PREFIX}self, {', '.join(signature)}):\n{''.join(body)}"
              f"    return __init__\n")
    local: dict[str, Any] = {}
    module = sys.modules.get(cls.__module__)
    exec(source, module.__dict__ if module else {}, local)  # noqa: S102 - built above from the class's fields
    init = local[f"{_PREFIX}make"](**helpers)
    replaced = cls.__init__
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = replaced.__doc__
    init.__annotations__ = dict(replaced.__annotations__)
    init.__dataclass_init__ = replaced  # the replaced one, which the tests hold this one to
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def _check(cls: type) -> None:
    """Refuse (TypeError) a class whose ``__init__`` ``direct_init`` would not replace by an equal one."""
    what = getattr(cls, "__name__", repr(cls))
    if not dataclasses.is_dataclass(cls) or not dataclasses.fields(cls) or "__slots__" not in cls.__dict__ \
            or not cls.__dict__["__dataclass_params__"].frozen:
        raise TypeError(f"direct_init: {what} is not a frozen, slotted dataclass with fields")
    init = cls.__dict__.get("__init__")
    params = cls.__dict__["__dataclass_params__"]
    # The dataclass's own is compiled from text; one written in the class body comes from a file.
    if not params.init or init is None or getattr(getattr(init, "__code__", None), "co_filename", "") != "<string>":
        raise TypeError(f"direct_init: {what} has an __init__ of its own (or none from the dataclass)")
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init or f.kw_only for f in fields):
        raise TypeError(f"direct_init: {what} has a __post_init__, an init=False or a keyword-only field")
    names = {f.name for f in fields}
    slots = cls.__dict__["__slots__"]
    if any(name not in slots for name in names) or any(name not in names for name in
                                                        cls.__dict__.get("__annotations__", {})):
        raise TypeError(f"direct_init: {what} has an inherited field, an InitVar or a ClassVar")
    if any(name.startswith(_PREFIX) for name in names):
        raise TypeError(f"direct_init: {what} has a field named {_PREFIX}..., which the generated code uses")
