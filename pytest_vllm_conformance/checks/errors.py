"""Error checks: invalid requests get a 4xx with OpenAI's error object, never 5xx or 200."""

from __future__ import annotations

from collections.abc import Collection

from pytest_vllm_conformance.checks import schema as schema_checks
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import CheckFailure, Severity


def rejected(r: Response, statuses: Collection[int] = (), what: str = "") -> None:
    """A 4xx (one of ``statuses`` when given) for a request the server must refuse."""
    allowed = f"HTTP {' or '.join(map(str, statuses))}" if statuses else "HTTP 4xx"
    if 200 <= r.status < 300:
        raise CheckFailure("Invalid request accepted", expected=allowed,
                           received=f"HTTP {r.status}", curl=r.curl, severity=Severity.MEDIUM,
                           detail=what)
    if r.status >= 500:
        raise CheckFailure("Server error on invalid input", expected=allowed,
                           received=f"HTTP {r.status}: {r.error_message()[:120]}", curl=r.curl,
                           severity=Severity.HIGH, detail=what)
    if not 400 <= r.status < 500 or (statuses and r.status not in statuses):
        raise CheckFailure("Wrong status for invalid request", expected=allowed,
                           received=f"HTTP {r.status}", curl=r.curl, severity=Severity.LOW,
                           detail=what)


def error_body(r: Response, profile: str) -> None:
    """The body is OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    try:
        body = r.json()
    except Exception:  # any unreadable body is this failure
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        raise CheckFailure("Error body is not OpenAI's error object", path="$.error",
                           expected='{"error": {"message": ..., "type": ...}}',
                           received=r.body[:120].decode("utf-8", "replace"), curl=r.curl,
                           severity=Severity.MEDIUM)
    schema_checks.matches(body, "ErrorResponse", profile, curl=r.curl)
    if not str(body["error"].get("message") or "").strip():
        raise CheckFailure("Error has no message", path="$.error.message",
                           expected="a non-empty message", received=repr(body["error"]),
                           curl=r.curl, severity=Severity.LOW)
