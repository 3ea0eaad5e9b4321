"""Small named checks shared by the suites; each raises :class:`CheckFailure` with evidence."""

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


def stream_ends_with_done(response: Response) -> None:
    """An OpenAI stream is SSE that ends with ``data: [DONE]`` and no framing faults."""
    if not response.content_type.startswith("text/event-stream"):
        raise CheckFailure("Stream is not text/event-stream", path="headers.content-type",
                           expected="text/event-stream", received=response.content_type or "none",
                           curl=response.curl, severity=Severity.HIGH)
    if response.sse_problems:
        raise CheckFailure("Malformed SSE framing", expected="well-formed SSE events",
                           received="; ".join(response.sse_problems[:3]), curl=response.curl,
                           severity=Severity.HIGH)
    if not response.done_seen:
        last = response.events[-1].data[:80] if response.events else b"(no event)"
        raise CheckFailure("Stream does not end with [DONE]", expected="data: [DONE]",
                           received=f"last event {last!r}", curl=response.curl,
                           severity=Severity.MEDIUM)
