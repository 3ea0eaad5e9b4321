"""The registry of checks: every function that can fail a test, with the verdicts it gives.

A check has one signature, ``check(subject, context) -> result``: ``subject`` is what it
judges (a :class:`~pytest_vllm_conformance.client.Response`, which carries its curl line,
a body read from one, or a measurement), and ``context`` is one typed :class:`Context`
(a subclass names the check's own expectations: a count, a limit, a profile). It is
registered with the :class:`Verdict`\\ s (title and severity) it may raise, as
schemathesis registers its ``@schemathesis.check`` functions::

    USAGE_MISSING = Verdict("Response has no usage", Severity.MEDIUM)

    @check(USAGE_MISSING)
    def usage_adds_up(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> None:
        ...
        raise USAGE_MISSING.failure(path="$.usage", expected=..., received=..., curl=ctx.curl)

A verdict's title may hold ``{placeholders}`` that the suite fills (``Verdict.titled``):
"{n} identical requests ({c} in flight) gave different outputs". ``docs/checks.md`` is
rendered from this registry (:func:`render_markdown`).
"""

from __future__ import annotations

import importlib
import pkgutil
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from pytest_vllm_conformance.failures import CheckFailure, Severity

S = TypeVar("S")
C = TypeVar("C", bound="Context")
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class Context:
    """What a check needs besides what it judges; subclasses add the check's expectations.

    ``curl`` reproduces the request when the subject does not carry it (a parsed body, a
    list of chunks); a check judging a :class:`Response` reads the response's own."""

    curl: str = ""


NO_CONTEXT = Context()


@dataclass(frozen=True)
class Verdict:
    """One way a check can fail: its title (a template) and how much it matters."""

    title: str
    severity: Severity
    args: tuple[tuple[str, str], ...] = ()
    about: str = field(default="", compare=False)  # for the docs: who fills the title

    @property
    def text(self) -> str:
        """The title with its placeholders filled."""
        return self.title.format(**dict(self.args)) if self.args else self.title

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.title) if name)

    def titled(self, **args: object) -> Verdict:
        """This verdict with its placeholders filled (by the suite: which prompt, which mode)."""
        return replace(self, args=tuple((k, str(v)) for k, v in args.items()))

    def failure(
        self,
        *,
        expected: str,
        received: str,
        path: str = "",
        curl: str = "",
        detail: str = "",
        severity: Severity | None = None,
        kind: type[CheckFailure] = CheckFailure,
    ) -> CheckFailure:
        """The :class:`CheckFailure` this verdict raises (a suite may lower or raise the
        severity of a request-level verdict it names itself; ``kind`` a subclass)."""
        return kind(
            self.text,
            expected=expected,
            received=received,
            path=path,
            curl=curl,
            severity=severity or self.severity,
            detail=detail,
        )

    def same_kind(self, other: Verdict) -> bool:
        return (self.title, self.severity) == (other.title, other.severity)


@dataclass(frozen=True)
class Check(Generic[S, C, R]):
    """A registered check: call it as the function it wraps."""

    fn: Callable[..., R]
    verdicts: tuple[Verdict, ...]
    name: str = field(default="")

    def __call__(self, subject: S, ctx: C | None = None) -> R:
        """``ctx`` may be left out where the function has a default (most take a plain
        :class:`Context`, which only names the curl line)."""
        return self.fn(subject) if ctx is None else self.fn(subject, ctx)

    @property
    def qualname(self) -> str:
        """``module.function``: how suites and the docs name it."""
        return f"{self.fn.__module__}.{self.fn.__name__}"

    @property
    def doc(self) -> str:
        return " ".join((self.fn.__doc__ or "").strip().split("\n\n")[0].split())


#: Every registered check by :attr:`Check.qualname`.
REGISTRY: dict[str, Check[Any, Any, Any]] = {}


def check(*verdicts: Verdict) -> Callable[[Callable[[S, C], R]], Check[S, C, R]]:
    """Register a check function with the verdicts it may raise."""
    if not verdicts:
        raise ValueError("a check names at least one verdict")

    def register(fn: Callable[[S, C], R]) -> Check[S, C, R]:
        registered: Check[S, C, R] = Check(fn, verdicts, fn.__name__)
        REGISTRY[registered.qualname] = registered
        return registered

    return register


def all_checks() -> list[Check[Any, Any, Any]]:
    """Every check of the package (importing each module of ``checks`` registers them)."""
    import pytest_vllm_conformance.checks as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    return sorted(REGISTRY.values(), key=lambda c: c.qualname)


def render_markdown(
    proofs: Mapping[str, Sequence[str]] | None = None, unproven: Mapping[str, str] | None = None
) -> str:
    """Each check with its verdicts and the suite tests that call it, as Markdown.

    With ``proofs`` (check qualname -> the fault switches under which it fails; a check no
    fault can reach has its reason in ``unproven``), the table gains the column of faults
    that prove each check bites: that is the project's ``docs/checks.md``, rendered by
    ``python -m tests.test_checks_bite``. Without them (``vllm-conformance checks``, where
    the project's tests are not installed) the column is left out."""
    from pytest_vllm_conformance.checks._callers import callers

    proven = proofs is not None
    proofs, unproven = proofs or {}, unproven or {}
    found = callers()
    judged = (
        "Every check takes what it judges and one typed context, and raises a titled",
        "`CheckFailure` with one of its registered verdicts. `{name}` in a title is filled by",
    )
    if proven:
        lines = [
            "# Checks",
            "",
            "Generated from the check registry (`pytest_vllm_conformance/checks/registry.py`) by",
            "`python -m tests.test_checks_bite > docs/checks.md`; a test keeps it current.",
            "",
            *judged,
            "the suite. A fault is a switch of the project's fault server (`tests/faults.py`)"
            " under",
            "which the check fails its suite test (`tests/test_checks_bite.py`).",
            "",
            "| Check | Verdicts (severity) | Called from | Fails on the fault |",
            "|---|---|---|---|",
        ]
    else:
        lines = [
            "# Checks",
            "",
            "Generated from the check registry (`pytest_vllm_conformance/checks/registry.py`);",
            "the project's docs/checks.md adds the fault that proves each check.",
            "",
            *judged,
            "the suite.",
            "",
            "| Check | Verdicts (severity) | Called from |",
            "|---|---|---|",
        ]
    for c in all_checks():
        verdicts = "<br>".join(
            f"{_cell(v.title)} ({v.severity.name})" + (f": {_cell(v.about)}" if v.about else "")
            for v in c.verdicts
        )
        where = "<br>".join(f"`{_cell(w)}`" for w in found.get(c.qualname, [])) or "-"
        name = c.qualname.removeprefix("pytest_vllm_conformance.checks.")
        row = f"| `{name}`: {_cell(c.doc)} | {verdicts} | {where} |"
        if proven:
            bites = ", ".join(f"`{f}`" for f in sorted(set(proofs.get(c.qualname, [])))) or _cell(
                unproven.get(c.qualname, "-")
            )
            row += f" {bites} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
