"""Two-instance service checks: each route reaches its backend, /health follows both."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import Severity

MISROUTED = Verdict(
    "POST {endpoint} through the endpoint did not reach the {backend} server", Severity.CRITICAL
)
STAYS_UP = Verdict("/health stays up with the {backend} server stopped", Severity.HIGH)
NO_RECOVERY = Verdict("/health does not recover when the {backend} server is back", Severity.HIGH)


@dataclass(frozen=True, kw_only=True)
class Route(Context):
    """The endpoint a request went to, the backend that must serve it, and its model."""

    endpoint: str
    backend: str
    model: str | None


@dataclass(frozen=True)
class Poll:
    """What polling /health found: the last status (0: no answer) and the seconds it took."""

    status: int
    waited_s: float


@dataclass(frozen=True, kw_only=True)
class Watch(Context):
    """A backend stopped or started (``backend``), and how soon /health must notice."""

    backend: str
    within_s: float


@check(MISROUTED, checks.NOT_AN_OBJECT)
def reached_backend(r: Response, ctx: Route) -> None:
    """The request succeeded and the intended backend's model answered it.

    A 200 alone is not enough: an engine may serve both kinds of request (llama.cpp does),
    so the answer must also come from the model of the intended server."""
    verdict = MISROUTED.titled(endpoint=ctx.endpoint, backend=ctx.backend)
    checks.request_succeeded(r, checks.Status(title=verdict.text, severity=verdict.severity))
    answered = checks.json_object(
        r, checks.Titled(title=f"POST {ctx.endpoint} is not a JSON object")
    ).get("model")
    if answered != ctx.model:
        raise verdict.failure(
            path="$.model",
            expected=f"an answer from {ctx.model!r}",
            received=f"an answer from {answered!r}",
            curl=r.curl,
        )


@check(STAYS_UP)
def health_drops(poll: Poll, ctx: Watch) -> None:
    """/health answers 503 soon after a backend stops."""
    if poll.status != 503:
        raise STAYS_UP.titled(backend=ctx.backend).failure(
            path="/health",
            expected=f"503 within {ctx.within_s:g} s of stopping the {ctx.backend} server",
            received=f"{poll.status or 'no answer'} after {poll.waited_s:.1f} s",
            curl=ctx.curl,
            detail="a load balancer keeps sending traffic to an endpoint whose requests fail",
        )


@check(NO_RECOVERY)
def health_recovers(poll: Poll, ctx: Watch) -> None:
    """/health answers 200 again soon after the backend is healthy."""
    if poll.status != 200:
        raise NO_RECOVERY.titled(backend=ctx.backend).failure(
            path="/health",
            expected=f"200 within {ctx.within_s:g} s of the {ctx.backend} server being healthy",
            received=f"{poll.status or 'no answer'} after {poll.waited_s:.1f} s",
            curl=ctx.curl,
        )
