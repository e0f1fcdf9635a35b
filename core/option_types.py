"""Option values checked against a factory's type hints, before the factory runs.

Options come from the command line as TOML (`--model-arg width=abc` is the string "abc",
`nesterov=yes` the string "yes"): without a check, a wrong type fails deep inside the factory
with a message about something else, or worse, works (a non-empty string is true). Where a
factory annotates a parameter with a simple type, a value of another type is refused here,
naming the option. Annotations this does not understand are not checked.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Callable, Literal, Union

_SIMPLE = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """A factory's parameter annotations, resolved; one that does not resolve (a name imported
    only under ``TYPE_CHECKING``, as ``root: Path | None`` often is) is left out, not all of them."""
    target = factory.__init__ if isinstance(factory, type) else factory  # a class's own are its attributes'
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001  # unresolvable names, a builtin: each hint on its own below
        pass
    annotations = getattr(target, "__annotations__", None)
    globalns = getattr(target, "__globals__", None)
    if not isinstance(annotations, dict):
        return {}
    hints = {}
    for name, annotation in annotations.items():
        def one() -> None: ...
        one.__annotations__ = {name: annotation}
        try:
            hints.update(typing.get_type_hints(one, globalns=globalns))
        except Exception:  # noqa: BLE001  # this one is not checked
            continue
    return hints


def type_problem(factory: Callable[..., Any], options: dict[str, Any]) -> tuple[str, str] | None:
    """The first option whose value its annotation refuses and what it wants (``("width", "a
    whole number")``), or None."""
    hints = type_hints(factory)
    for name, value in options.items():
        wanted = _describe_refusal(hints.get(name), value)
        if wanted is not None:
            return name, wanted
    return None


def _describe_refusal(annotation: Any, value: Any) -> str | None:
    """What ``annotation`` wants, where ``value`` is not that; None where it fits or cannot be told."""
    if annotation is None or annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = typing.get_args(annotation)
        refusals = [_describe_refusal(member, value) for member in members]
        if any(r is None for r in refusals):
            return None
        wanted = [r for member, r in zip(members, refusals) if r and member is not type(None)]
        return " or ".join(dict.fromkeys(wanted))  # every member refused it ('or nothing' goes unsaid)
    if annotation is type(None):
        return None if value is None else "nothing (leave it unset)"
    if origin is Literal:
        choices = typing.get_args(annotation)
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)
    if annotation in _SIMPLE:
        return None if _fits_simple(annotation, value) else _SIMPLE[annotation]
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        return None if isinstance(value, (list, tuple)) else "a list ([...])"
    return None  # a class, a callable, a dict...: not checked


def _fits_simple(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)
