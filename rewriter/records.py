"""A faster ``__init__`` for the frozen, slotted dataclasses a large graph builds by the million.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__`` (its own
``__setattr__`` refuses), which costs about as much again as the rest of building the object. A
million-node plan builds millions of decisions, matches and node records; ``direct_init`` gives such a
class an ``__init__`` that fills each slot through the slot's own descriptor instead. The objects are the
same: the same fields and defaults, still frozen, equal, hashed and printed alike (tests/plan/test_records.py
holds each decorated class to the dataclass's own ``__init__``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["direct_init"]


def direct_init(cls: type[T]) -> type[T]:
    """Replace the ``__init__`` of ``cls``, a ``@dataclass(frozen=True, slots=True)``, by one that sets its
    slots directly. Put it above the ``@dataclass`` line.

    Only the plain case is taken: every field in ``__init__``, none keyword-only, no ``__post_init__`` and no
    ``InitVar`` (which that ``__init__`` would have to call or skip); anything else is refused here, at import.
    """
    params = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
    if not params or "__slots__" not in cls.__dict__ or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"direct_init: {cls.__name__} is not a frozen, slotted dataclass with fields")
    if hasattr(cls, "__post_init__") or any(not f.init or f.kw_only for f in params):
        raise TypeError(f"direct_init: {cls.__name__} has a __post_init__, an init=False or a keyword-only field")
    slots = cls.__dict__["__slots__"]
    if any(name not in slots for name in cls.__dict__.get("__annotations__", {})
           if name not in {f.name for f in params}):
        raise TypeError(f"direct_init: {cls.__name__} has an InitVar or a field that is not a slot")
    names: dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    signature, body = [], []
    for f in params:
        names[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is not dataclasses.MISSING:
            names[f"_default_{f.name}"] = f.default
            signature.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            names[f"_factory_{f.name}"] = f.default_factory
            signature.append(f"{f.name}=_MISSING")
            body.append(f"    if {f.name} is _MISSING:\n        {f.name} = _factory_{f.name}()\n")
        else:
            signature.append(f.name)
        body.append(f"    _set_{f.name}(self, {f.name})\n")
    # Generated as dataclasses generates its own: one line per field, no loop over them at every call.
    source = f"def __init__(self, {', '.join(signature)}):\n{''.join(body)}"
    exec(source, names)  # noqa: S102 - the text is built above from the class's own field names
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__dataclass_init__ = cls.__init__  # the replaced one, which the tests hold this one to
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
