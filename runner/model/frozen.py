"""A cheaper ``__init__`` for frozen dataclasses that are built in bulk.

A frozen dataclass's generated ``__init__`` sets each field with ``object.__setattr__``
(its own ``__setattr__`` refuses): under callgrind about 1,400 instructions a field, some
33,000 for a ``StepSpec`` — built once per step of every workflow read or generated (a
10,000-step file builds 10,000). :func:`quick_init` swaps in an ``__init__`` with the same
signature, defaults and default factories that writes the fields into the instance's
``__dict__`` (12,000 for a ``StepSpec``): the instance is as frozen as before (assignment
still raises), and ``replace``, ``==``, ``repr`` and ``fields`` are the dataclass's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


class _Factory:
    """The default of a field with a default factory (shown as dataclasses show it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def quick_init(cls: type[T]) -> type[T]:
    """Replace the generated ``__init__`` of the frozen dataclass ``cls`` (apply above ``@dataclass``)."""
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    assert vars(cls)["__dataclass_params__"].frozen, f"{cls.__name__} is not a frozen dataclass"
    assert not hasattr(cls, "__post_init__"), f"{cls.__name__} has a __post_init__ this __init__ would skip"
    assert all(f.init and not f.kw_only for f in params), f"{cls.__name__} has fields this __init__ does not handle"
    namespace: dict[str, Any] = {"_MISSING": _FACTORY}
    args: list[str] = []
    defaults: list[str] = []
    for f in params:
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_MISSING")
            defaults.append(f"    if {f.name} is _MISSING:\n        {f.name} = _factory_{f.name}()\n")
        else:
            args.append(f.name)
    sets = "".join(f"    d[{f.name!r}] = {f.name}\n" for f in params)
    source = f"def __init__(self, {', '.join(args)}):\n{''.join(defaults)}    d = self.__dict__\n{sets}"
    exec(source, namespace)  # as dataclasses itself builds __init__
    init = namespace["__init__"]
    init.__annotations__ = dict(vars(cls)["__init__"].__annotations__)  # the signature, annotations included
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    setattr(cls, "__init__", init)  # noqa: B010 - assigning a method: mypy refuses the attribute form
    return cls
