"""The official OpenAI SDK accepts the server's answers (strict response validation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.client import ClientError
from pytest_vllm_conformance.failures import Severity

REJECTED = Verdict("The OpenAI SDK rejects the answer", Severity.HIGH)


@dataclass(frozen=True, kw_only=True)
class Call(Context):
    """The SDK call that was made (``expected``: what should have happened) and how the
    key is kept out of the failure text."""

    expected: str
    redact: Callable[[str], str] = str


@check(REJECTED)
def sdk_accepts(exc: Exception, ctx: Call) -> None:
    """Judges what an SDK call raised: never the SDK's raw exception.

    A transport failure is raised as the harness's own typed :class:`ClientError` (the SDK
    may have wrapped it in ``APIConnectionError``); anything else the SDK raised (its
    ``APIError``\\ s, a ``JSONDecodeError`` from a broken stream, a validation error) is
    the titled failure naming the exception."""
    cause = exc if isinstance(exc, ClientError) else exc.__cause__
    if isinstance(cause, ClientError):
        raise cause from None
    message = ctx.redact(str(exc)).replace("\n", " ")
    raise REJECTED.failure(
        expected=ctx.expected, received=f"{type(exc).__name__}: {message[:300]}", curl=ctx.curl
    ) from None
