"""``quick_init``: a frozen dataclass keeps its constructor's contract with the cheaper ``__init__``."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import pytest

from runner.model import RetryPolicy, StepSpec
from runner.model.frozen import quick_init


@dataclasses.dataclass(frozen=True)
class Plain:
    name: str
    count: int = 3
    tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()


@quick_init
@dataclasses.dataclass(frozen=True)
class Quick:
    name: str
    count: int = 3
    tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()


def test_same_signature_as_the_generated_init() -> None:
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))
    assert str(inspect.signature(StepSpec)).startswith("(step_id: 'str', description: 'str | None' = None, ")
    assert [p for p in inspect.signature(StepSpec).parameters] == [f.name for f in dataclasses.fields(StepSpec)]


def test_values_defaults_and_factories() -> None:
    q, p = Quick("a", tags=("x",)), Plain("a", tags=("x",))
    assert dataclasses.asdict(q) == dataclasses.asdict(p)
    assert q.extra == {} and q.extra is not Quick("b").extra  # a fresh dict each time
    assert q.retry is Quick("b").retry  # a plain default is shared, as the dataclass shares it
    assert Quick("a", 4, (), {"k": 1}).count == 4 and Quick("a", extra={"k": 1}).extra == {"k": 1}
    with pytest.raises(TypeError):
        Quick()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick("a", bogus=1)  # type: ignore[call-arg]


def test_still_frozen_and_a_dataclass() -> None:
    q = Quick("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.name = "b"  # type: ignore[misc]
    assert dataclasses.replace(q, count=5) == Quick("a", count=5)
    assert repr(q) == repr(Plain("a")).replace("Plain", "Quick")
    s = StepSpec(step_id="s", tool_to_call="t", depends_on=("r",))
    assert dataclasses.replace(s, step_id="u").depends_on == ("r",) and s == StepSpec("s", tool_to_call="t", depends_on=("r",))


def test_refuses_what_it_would_get_wrong() -> None:
    with pytest.raises(AssertionError):

        @quick_init
        @dataclasses.dataclass(frozen=True)
        class Late:
            x: int

            def __post_init__(self) -> None:
                pass

    with pytest.raises(AssertionError):

        @quick_init
        @dataclasses.dataclass
        class Mutable:
            x: int
