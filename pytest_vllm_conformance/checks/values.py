"""Typed reading of a server's JSON: every value is checked before a check relies on it.

A server's answer is hostile input. Reading ``body["choices"][0]["text"]`` from a body
whose ``choices`` is a string raises ``TypeError`` deep inside a check, and the report
then says "Test failed" with a traceback. These accessors raise a titled
:class:`CheckFailure` instead, naming the JSON path, what was expected and what came.
Numbers are checked finite: Python's ``json`` reads ``NaN`` and ``Infinity``, and a NaN
compared with a limit is never "too large", so it would pass every threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.failures import CheckFailure, Severity

T = TypeVar("T")
WRONG_SHAPE = "Response body has the wrong shape"
NON_FINITE = "Non-finite number from the server"
SHAPE = Verdict(WRONG_SHAPE, Severity.HIGH)
INFINITE = Verdict(NON_FINITE, Severity.HIGH)
_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def kind_name(kind: type) -> str:
    return _NAMES.get(kind, kind.__name__)


def describe(value: Any) -> str:
    """A short, safe description of a received value: its JSON kind and an excerpt."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{kind_name(type(value))}: {shown}"


def wrong_shape(path: str, expected: str, value: Any, curl: str = "") -> CheckFailure:
    return SHAPE.failure(path=path, expected=expected, received=describe(value), curl=curl)


@dataclass(frozen=True, kw_only=True)
class At(Context):
    """Where in the answer a value sits (a JSON path such as ``$.choices[0].text``)."""

    path: str


@dataclass(frozen=True, kw_only=True)
class Kind(At):
    """The JSON kind a value must have: ``dict``, ``list``, ``str``, ``int``, ``float``..."""

    kind: type


def is_kind(value: Any, kind: type) -> bool:
    """JSON kinds: a boolean is not an integer; an integer is a number."""
    if isinstance(value, bool) and kind is not bool:
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


@check(SHAPE)
def of_kind(value: Any, ctx: Kind) -> Any:
    """Every value read from an answer has the JSON kind the API documents; returns it."""
    if not is_kind(value, ctx.kind):
        raise wrong_shape(ctx.path, kind_name(ctx.kind), value, ctx.curl)
    return value


def as_kind(value: Any, kind: type[T], path: str, curl: str = "") -> T:
    """``value`` itself, when it is of ``kind``; else the wrong-shape failure."""
    return cast(T, of_kind(value, Kind(kind=kind, path=path, curl=curl)))


def field(obj: Any, key: str, kind: type[T], path: str, curl: str = "") -> T:
    """``obj[key]``, required, of ``kind``; ``path`` names ``obj`` (e.g. ``$.choices[0]``)."""
    where = f"{path}.{key}"
    if not isinstance(obj, dict):
        raise wrong_shape(path, "an object", obj, curl)
    if key not in obj:
        raise SHAPE.failure(
            path=where,
            expected=f"{kind_name(kind)} (required)",
            received="no such field",
            curl=curl,
        )
    return as_kind(obj[key], kind, where, curl)


def maybe_field(obj: Any, key: str, kind: type[T], path: str, curl: str = "") -> T | None:
    """``obj[key]`` of ``kind``, or None when absent or null."""
    if not isinstance(obj, dict):
        raise wrong_shape(path, "an object", obj, curl)
    value = obj.get(key)
    return None if value is None else as_kind(value, kind, f"{path}.{key}", curl)


def element(items: list[Any], index: int, kind: type[T], path: str, curl: str = "") -> T:
    """``items[index]`` of ``kind``; a list too short is the wrong shape too."""
    if not 0 <= index < len(items):
        raise SHAPE.failure(
            path=f"{path}[{index}]",
            expected=f"at least {index + 1} items",
            received=f"{len(items)} items",
            curl=curl,
        )
    return as_kind(items[index], kind, f"{path}[{index}]", curl)


@check(INFINITE, SHAPE)
def finite_number(value: Any, ctx: At) -> float:
    """A number from the server is finite: NaN and infinities are findings, never values to
    compare (a NaN compared with a limit is never over it, so it would pass)."""
    number = as_kind(value, float, ctx.path, ctx.curl)
    try:  # an integer beyond a float's range (JSON allows 400 digits) is not finite either
        usable = math.isfinite(number)
    except OverflowError:
        usable = False
    if not usable:
        raise INFINITE.failure(
            path=ctx.path, expected="a finite number", received=repr(number), curl=ctx.curl
        )
    return float(number)


def finite(value: Any, path: str, curl: str = "") -> float:
    """A finite number (NaN and infinities are findings, never values to compare)."""
    return finite_number(value, At(path=path, curl=curl))


def count(value: Any, path: str, curl: str = "") -> int:
    """A non-negative integer (token counts, indices)."""
    number = as_kind(value, int, path, curl)
    if number < 0:
        raise SHAPE.failure(
            path=path, expected="a non-negative integer", received=repr(number), curl=curl
        )
    return number


def choices(body: Any, curl: str = "") -> list[dict[str, Any]]:
    """``$.choices`` of an answer: a list of objects."""
    items = field(body, "choices", list, "$", curl)
    return [element(items, i, dict, "$.choices", curl) for i in range(len(items))]


def choice_text(body: Any, index: int = 0, curl: str = "") -> str:
    """The text of choice ``index``: completions' ``text``, chat's ``message.content``."""
    choice = element(choices(body, curl), index, dict, "$.choices", curl)
    where = f"$.choices[{index}]"
    if "message" in choice:
        message = field(choice, "message", dict, where, curl)
        return maybe_field(message, "content", str, f"{where}.message", curl) or ""
    return field(choice, "text", str, where, curl)


def usage(body: Any, curl: str = "") -> dict[str, Any] | None:
    """``$.usage`` as an object, or None when the answer has none."""
    return maybe_field(body, "usage", dict, "$", curl)


def usage_count(body: Any, name: str, curl: str = "") -> int | None:
    """One count of ``$.usage`` (e.g. ``completion_tokens``); None when there is no usage."""
    found = usage(body, curl)
    if found is None or found.get(name) is None:
        return None
    return count(found[name], f"$.usage.{name}", curl)
