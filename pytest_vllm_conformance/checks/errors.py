"""Error checks: invalid requests get a 4xx with OpenAI's error object, never 5xx or 200."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_vllm_conformance.checks import schema as schema_checks
from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import Severity

ACCEPTED = Verdict("Invalid request accepted", Severity.MEDIUM)
SERVER_ERROR = Verdict("Server error on invalid input", Severity.HIGH)
WRONG_STATUS = Verdict("Wrong status for invalid request", Severity.LOW)
NOT_ERROR_OBJECT = Verdict("Error body is not OpenAI's error object", Severity.MEDIUM)
NO_MESSAGE = Verdict("Error has no message", Severity.LOW)


@dataclass(frozen=True, kw_only=True)
class Invalid(Context):
    """Why the request is invalid (``what``) and the statuses allowed for it (any 4xx when
    none are named)."""

    statuses: tuple[int, ...] = ()
    what: str = ""


@dataclass(frozen=True, kw_only=True)
class Profile(Context):
    """The run's profile (``openai`` or ``vllm``), which chooses the schema's allowances."""

    profile: str


@check(ACCEPTED, SERVER_ERROR, WRONG_STATUS)
def rejected(r: Response, ctx: Invalid) -> None:
    """A 4xx (one of ``statuses`` when given) for a request the server must refuse."""
    statuses, what = ctx.statuses, ctx.what
    allowed = f"HTTP {' or '.join(map(str, statuses))}" if statuses else "HTTP 4xx"
    if 200 <= r.status < 300:
        raise ACCEPTED.failure(
            expected=allowed, received=f"HTTP {r.status}", curl=r.curl, detail=what
        )
    if r.status >= 500:
        raise SERVER_ERROR.failure(
            expected=allowed,
            received=f"HTTP {r.status}: {r.error_message()[:120]}",
            curl=r.curl,
            detail=what,
        )
    if not 400 <= r.status < 500 or (statuses and r.status not in statuses):
        raise WRONG_STATUS.failure(
            expected=allowed, received=f"HTTP {r.status}", curl=r.curl, detail=what
        )


@check(NOT_ERROR_OBJECT, NO_MESSAGE, schema_checks.VIOLATION, schema_checks.EXTRA_FIELD)
def error_body(r: Response, ctx: Profile) -> None:
    """The body is OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    try:
        body = r.json()
    except Exception:  # any unreadable body is this failure
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        raise NOT_ERROR_OBJECT.failure(
            path="$.error",
            expected='{"error": {"message": ..., "type": ...}}',
            received=r.body[:120].decode("utf-8", "replace"),
            curl=r.curl,
        )
    schema_checks.matches(
        body, schema_checks.Schema(root="ErrorResponse", profile=ctx.profile, curl=r.curl)
    )
    if not str(body["error"].get("message") or "").strip():
        raise NO_MESSAGE.failure(
            path="$.error.message",
            expected="a non-empty message",
            received=repr(body["error"]),
            curl=r.curl,
        )
