"""Small named checks shared by the suites; each raises :class:`CheckFailure` with evidence.

The basics live here; the submodules hold one family each: ``schema``, ``semantics``,
``streaming``, ``errors``, ``embeddings``, ``metrics``, ``logprobs``.
"""

from __future__ import annotations

from typing import Any

from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import CheckFailure, Severity


def status_is(response: Response, expected: int, title: str,
              severity: Severity = Severity.HIGH) -> None:
    """The response has the expected HTTP status."""
    if response.status != expected:
        raise CheckFailure(
            title, expected=f"HTTP {expected}",
            received=f"HTTP {response.status}: {response.error_message()}",
            curl=response.curl, severity=severity)


def json_object(response: Response, title: str) -> dict[str, Any]:
    """The body is a JSON object; returns it."""
    body = response.json()
    if not isinstance(body, dict):
        raise CheckFailure(title, expected="a JSON object", received=type(body).__name__,
                           curl=response.curl, severity=Severity.HIGH)
    return body
