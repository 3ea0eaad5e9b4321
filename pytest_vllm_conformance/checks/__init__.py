"""Every check that can fail a test: registered functions that raise :class:`CheckFailure`.

The basics live here; the submodules hold one family each: ``schema``, ``semantics``,
``answers``, ``streaming``, ``errors``, ``embeddings``, ``metrics``, ``logprobs``, ``health``,
``determinism``, ``memory``, ``cancellation``, ``topology``, ``slo``, ``sdk``, ``structured``,
``tools``; ``harness`` turns an answer no check foresaw into a titled finding instead of a
traceback. Each check is
``check(subject, context)``, registered with its verdicts in :mod:`.registry`, which also
renders ``docs/checks.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import Severity

#: The suite names the request ("POST /v1/completions failed") and how much its failure matters.
REQUEST_FAILED = Verdict(
    "{title}",
    Severity.HIGH,
    about="the suite names the request "
    '("POST /v1/completions failed") and may give another severity',
)
NOT_AN_OBJECT = Verdict(
    "{title}", Severity.HIGH, about='"<the request> is not a JSON object", named by the suite'
)


@dataclass(frozen=True, kw_only=True)
class Status(Context):
    """The status a request must get, and the title its failure carries."""

    title: str
    expected: int = 200
    severity: Severity = Severity.HIGH


@dataclass(frozen=True, kw_only=True)
class Titled(Context):
    """The title a failure carries, named by the suite after the request."""

    title: str


@check(REQUEST_FAILED)
def request_succeeded(response: Response, ctx: Status) -> None:
    """The response has the expected HTTP status."""
    if response.status != ctx.expected:
        raise REQUEST_FAILED.titled(title=ctx.title).failure(
            expected=f"HTTP {ctx.expected}",
            received=f"HTTP {response.status}: {response.error_message()}",
            curl=response.curl,
            severity=ctx.severity,
        )


@check(NOT_AN_OBJECT)
def json_object(response: Response, ctx: Titled) -> dict[str, Any]:
    """The body is a JSON object; returns it."""
    body = response.json()
    if not isinstance(body, dict):
        raise NOT_AN_OBJECT.titled(title=ctx.title).failure(
            expected="a JSON object", received=type(body).__name__, curl=response.curl
        )
    return body
