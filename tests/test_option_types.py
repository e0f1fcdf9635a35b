"""Option values against a factory's type hints: refused where the hint says otherwise, never
where the hint cannot be read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Optional

import pytest

from blitz.option_types import type_problem


def factory(
    *, width: int = 4, rate: float = 0.1, on: bool = False, name: str | None = None, old: Optional[int] = None,
    widths: Sequence[int] = (1,), pair: tuple[int, int] = (1, 2), mode: Literal["a", "b"] = "a",
    loose=None, anything: object = None, either: int | str = 1,
) -> None:
    """Every kind of hint the check knows, and some it does not."""


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"width": "abc"}, ("width", "a whole number")),
        ({"width": 2.5}, ("width", "a whole number")),
        ({"width": True}, ("width", "a whole number")),  # TOML's true is not 1
        ({"rate": "fast"}, ("rate", "a number")),
        ({"on": "yes"}, ("on", "true or false")),  # a non-empty string would be true
        ({"on": 1}, ("on", "true or false")),
        ({"name": 3}, ("name", "a string")),
        ({"old": "x"}, ("old", "a whole number")),
        ({"widths": 3}, ("widths", "a list ([...])")),
        ({"pair": "1,2"}, ("pair", "a list ([...])")),
        ({"mode": "c"}, ("mode", "one of 'a', 'b'")),
        ({"either": 2.5}, ("either", "a whole number or a string")),
        ({"width": 3, "rate": 1, "on": False, "name": None, "old": None, "widths": [1, 2], "pair": [1, 2],
          "mode": "b", "loose": "x", "anything": 2.5, "either": "s", "unknown": 1}, None),
    ],
)
def test_values_are_checked_against_the_hints(options, problem):
    assert type_problem(factory, options) == problem


def test_hints_that_cannot_be_resolved_check_nothing():
    def unresolvable(*, width=1) -> None:
        pass

    unresolvable.__annotations__["width"] = "NoSuchType"  # a name its module does not define

    assert type_problem(unresolvable, {"width": "abc"}) is None
    assert type_problem(len, {"x": 1}) is None  # a builtin: no hints at all


def test_one_unresolvable_hint_leaves_the_others_checked():
    """`root: Path | None` with Path imported only under TYPE_CHECKING must not turn off the check
    of `length: int` (get_type_hints fails for the whole function)."""
    from blitz.build import factory_options

    def source(*, root=None, length: int = 8, noise: float = 0.1) -> None:
        pass

    source.__annotations__["root"] = "Path | None"  # Path: not defined in this module at run time

    assert type_problem(source, {"length": "abc"}) == ("length", "a whole number")
    assert type_problem(source, {"root": 3, "noise": 0.5}) is None
    options = factory_options(source, "Dataset")
    assert options["length"] == {"type": "int", "default": 8}
    assert options["noise"] == {"type": "float", "default": 0.1}


def test_a_class_factory_is_checked_by_its_init_not_its_attributes():
    """nn.Module annotates `training: bool`: a Net taking training="partial" must not be refused."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self, *, training: str = "full", width: int = 4) -> None:
            super().__init__()

    assert type_problem(Net, {"training": "partial", "width": 8}) is None
    assert type_problem(Net, {"width": "abc"}) == ("width", "a whole number")
