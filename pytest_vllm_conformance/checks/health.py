"""Liveness and readiness checks: the model is listed, a one-token canary stays one token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.checks.registry import NO_CONTEXT, Context, Verdict, check
from pytest_vllm_conformance.failures import Severity

NOT_LISTED = Verdict("/v1/models does not list the model", Severity.MEDIUM)
CANARY_OVERRUN = Verdict("max_tokens=1 canary produced more than one token", Severity.MEDIUM)


@dataclass(frozen=True, kw_only=True)
class Model(Context):
    """The model under test, by the id the server must list."""

    model: str


@check(NOT_LISTED, values.SHAPE)
def lists_model(body: dict[str, Any], ctx: Model) -> None:
    """GET /v1/models lists the model under test."""
    models = values.field(body, "data", list, "$", ctx.curl)
    ids = [m.get("id") for m in models if isinstance(m, dict)]
    if ctx.model not in ids:
        raise NOT_LISTED.failure(
            path="$.data[*].id", expected=repr(ctx.model), received=repr(ids), curl=ctx.curl
        )


@check(CANARY_OVERRUN, values.SHAPE)
def one_token(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> None:
    """A max_tokens=1 request generates at most one token (and says so in its usage)."""
    used = values.usage_count(body, "completion_tokens", ctx.curl)
    if used is None or used > 1:
        raise CANARY_OVERRUN.failure(
            path="$.usage.completion_tokens", expected="<= 1", received=repr(used), curl=ctx.curl
        )
