"""Typed measurements: what a test measured, as objects from the test to every report.

A test records frozen dataclasses (a latency level, a memory fit, a determinism verdict)
with :func:`record`. Each is kept in the test item's stash and, at once, written out as the
test's JUnit/JSON properties by its own :meth:`Measurement.properties` (so those stay as
they were, in order). :func:`pytest_runtest_makereport` attaches the list as plain JSON to
every report of the test, under :data:`REPORT_ATTR`, the way Hypothesis attaches its
statistics: pytest's ``_report_to_json`` keeps a report's JSON-able extra attributes, so
they cross from pytest-xdist workers to the controller. There :func:`measurements_of`
rebuilds the objects, and the results document carries them under each test's
``measurements``; the HTML report and the OpenMetrics export read them back with
:func:`load` and use their fields, never a property name.

Each measurement class is registered under a ``kind`` with :func:`measurement`; the
registry is what lets the controller rebuild it. The JSON form is the dataclass's fields,
recursively (nested dataclasses, tuples, maps), with NaN and infinities as null; reading
it back turns a null float into NaN again. Hand-written (50 lines) rather than pydantic:
no validator library turns JSON null back into a float NaN, and this file is imported on
the test's path, where start-up time counts.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, Union, runtime_checkable

import pytest

#: The report attribute carrying a test's measurements as JSON (a list of objects).
REPORT_ATTR = "vllm_measurements"
#: Where :func:`record` keeps a test's measurement objects until its reports are made.
STASH_KEY = pytest.StashKey[list["Measurement"]]()
#: The modules that declare the bundled kinds: imported before a kind is looked up, so the
#: controller (which under xdist never imports the suites) knows every kind.
DOMAIN_MODULES = (
    "pytest_vllm_conformance.perf.latency",
    "pytest_vllm_conformance.perf.memory",
    "pytest_vllm_conformance.workload.determinism",
    "pytest_vllm_conformance.checks.logprobs",
    "pytest_vllm_conformance.checks.cancellation",
)

_KINDS: dict[str, type[Any]] = {}


@runtime_checkable
class Measurement(Protocol):
    """A frozen dataclass registered with :func:`measurement` (which gives its class a
    ``kind``: read it with :func:`kind_of`)."""

    def properties(self) -> list[tuple[str, Any]]:
        """The flat (name, value) pairs it adds to the JUnit XML and the JSON ``properties``."""
        ...


M = TypeVar("M", bound=type[Any])


def measurement(kind: str) -> Callable[[M], M]:
    """Class decorator: register a frozen dataclass as the measurement ``kind``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        raise ValueError(f"measurement kind {kind!r}: lower-case letters, digits and _")

    def register(cls: M) -> M:
        params = getattr(cls, "__dataclass_params__", None)
        if not (dataclasses.is_dataclass(cls) and params is not None and params.frozen):
            raise TypeError(f"{cls.__name__}: a measurement is a frozen dataclass")
        if any(f.name == "kind" for f in dataclasses.fields(cls)):
            raise TypeError(
                f"{cls.__name__}: a measurement has no field named 'kind', which names its "
                "class in JSON and in the decorator's class attribute"
            )
        taken = _KINDS.get(kind)
        if taken is not None and _name(taken) != _name(cls):  # a re-import replaces itself
            raise ValueError(f"measurement kind {kind!r} is taken by {_name(taken)}")
        setattr(cls, "kind", kind)  # noqa: B010 - a class attribute its dataclass never sees
        _KINDS[kind] = cls
        return cls

    return register


def kind_of(value: Measurement | type[Measurement]) -> str:
    """The kind a measurement (or its class) was registered as."""
    kind: str = getattr(value, "kind")  # noqa: B009 - set by the decorator, unseen by mypy
    return kind


def _name(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def kinds() -> dict[str, type[Any]]:
    """Every registered kind (the bundled ones always among them)."""
    for module in DOMAIN_MODULES:
        importlib.import_module(module)
    return dict(_KINDS)


# -- recording, on the process that runs the test ------------------------------------------------
def record(node: pytest.FixtureRequest | pytest.Item, value: Measurement) -> None:
    """Record ``value`` on the running test: kept for the reports, its properties written now."""
    item = node.node if isinstance(node, pytest.FixtureRequest) else node
    if _KINDS.get(getattr(type(value), "kind", "")) is None:
        raise TypeError(f"{type(value).__name__} is not a registered measurement")
    item.stash.setdefault(STASH_KEY, []).append(value)
    item.user_properties.extend(value.properties())


def recorded(item: pytest.Item) -> list[Measurement]:
    """What the test recorded so far, in order."""
    found: list[Measurement] = item.stash.get(STASH_KEY, [])
    return found.copy()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> typing.Generator[None, Any, Any]:
    """Attach the test's measurements so far, as safe JSON, to each of its reports."""
    from pytest_vllm_conformance import untrusted

    report = yield
    if STASH_KEY in item.stash:
        setattr(report, REPORT_ATTR, [untrusted.clean(to_json(m)) for m in recorded(item)])
    return report


def measurements_of(report: pytest.TestReport) -> list[Measurement]:
    """The measurements a report carries, rebuilt (a worker's report on the controller too)."""
    return load(getattr(report, REPORT_ATTR, None) or [])


# -- the JSON form ---------------------------------------------------------------------------------
def to_json(value: Measurement) -> dict[str, Any]:
    """``{"kind": ..., field: value...}``: plain JSON, NaN and infinities as null."""
    return {"kind": kind_of(value), **_plain(value)}


def from_json(data: dict[str, Any]) -> Measurement:
    """The object :func:`to_json` wrote; KeyError for a kind no module registered."""
    cls = kinds()[data["kind"]]
    built: Measurement = _build(cls, data)
    return built


def load(items: Iterable[dict[str, Any]]) -> list[Measurement]:
    """Rebuild a list of JSON measurements, leaving out kinds this version does not know
    (a results file from a newer harness, a user's kind whose module is not imported) and
    items that do not rebuild (a field retyped, a hand-edited file): every reader of the
    results (the terminal summary, HTML, OpenMetrics, a comparison) then still works."""
    known = kinds()
    rebuilt: list[Measurement] = []
    for item in items:
        if isinstance(item, dict) and item.get("kind") in known:
            try:
                rebuilt.append(from_json(item))
            except (TypeError, ValueError, KeyError, AttributeError):
                continue
    return rebuilt


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    given = {
        f.name: _typed(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)
        if f.init and f.name in data
    }
    return cls(**given)


def _typed(hint: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as the annotated type: dataclasses, tuples, maps, NaN floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        return _typed(hint, value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)  # type: ignore[arg-type]
    if hint is float:
        return math.nan if value is None else float(value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v) for v in value)
        return tuple(_typed(a, v) for a, v in zip(args, value, strict=True))
    if origin is list:
        return [_typed(args[0], v) for v in value]
    if origin is dict:
        return {k: _typed(args[1], v) for k, v in value.items()}
    if hint in (int, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise TypeError(f"expected {hint.__name__}, got {type(value).__name__}")
    return value
