"""Determinism checks: one output however a request is sent, and logprobs that agree.

The outcomes and the divergence evidence come from
:mod:`pytest_vllm_conformance.workload.determinism`; these checks judge them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.failures import Severity
from pytest_vllm_conformance.workload import determinism as det

BURST = Verdict("{n} identical requests ({c} in flight) gave different outputs", Severity.HIGH)
BATCHED = Verdict("Prompt {prompt} answers differently {how} than alone", Severity.HIGH)
REPLICAS = Verdict("Replicas answer prompt {prompt} differently", Severity.HIGH)
CACHED = Verdict("The answer changes once the prefix is cached", Severity.HIGH)
SEEDED = Verdict("The same seed gives different samples", Severity.HIGH)
STREAMED = Verdict("Prompt {prompt} streams a different output than it returns", Severity.HIGH)
LOGPROBS = Verdict("Logprobs differ {what}", Severity.MEDIUM)
# issue 17: tools
TOOL_BURST = Verdict(
    "{n} identical tool-call requests ({c} in flight) gave different calls", Severity.HIGH
)
#: How the same request was sent: the verdict :func:`one_output` gives when answers differ.
MODES = (BURST, BATCHED, REPLICAS, CACHED, SEEDED, TOOL_BURST)


class LogprobDrift(UserWarning):
    """Same tokens, different logprobs: fine by default, a failure when batch-invariant."""


@dataclass(frozen=True, kw_only=True)
class Mode(Context):
    """How the request was sent (one of :data:`MODES`, titled by the suite), and the
    statistical power of the comparison, stated with a failure."""

    verdict: Verdict
    power: str = ""


@dataclass(frozen=True, kw_only=True)
class Prompt(Context):
    """Which prompt (its name, quoted as the suite titles it)."""

    prompt: str


@dataclass(frozen=True, kw_only=True)
class Drift(Context):
    """Between what the logprobs were compared (``what``), and whether they must be equal
    bit for bit (--vllm-profile=batch-invariant) or may drift with a warning."""

    what: str
    bitwise: bool


@check(*MODES)
def one_output(outcomes: list[det.Outcome], ctx: Mode) -> None:
    """Every answer has the same text, token ids and logprob tokens."""
    if not any(ctx.verdict.same_kind(mode) for mode in MODES):
        raise ValueError(f"{ctx.verdict.title!r} is not a verdict of one_output")
    found = det.compare(outcomes)
    if found is None:
        return
    raise ctx.verdict.failure(
        expected="1 distinct output",
        received=f"{len(found.counts)} distinct outputs",
        curl=found.odd.curl,
        detail=found.describe() + (f"\n{ctx.power}" if ctx.power else ""),
    )


@check(STREAMED)
def streams_as_returned(outcomes: list[det.Outcome], ctx: Prompt) -> None:
    """The streamed answer (second) equals the non-streamed one (first)."""
    found = det.compare(outcomes)
    if found is not None:
        raise STREAMED.titled(prompt=ctx.prompt).failure(
            expected=f"the non-streamed {' and '.join(found.parts)}",
            received=f"a different {' and '.join(found.parts)}",
            curl=ctx.curl,
            detail=found.describe(),
        )


@check(LOGPROBS)
def logprobs_agree(outcomes: list[det.Outcome], ctx: Drift) -> None:
    """The others' logprobs equal the first's: one verdict, on the largest drift. Under
    --vllm-profile=batch-invariant a drift fails; otherwise it is a :class:`LogprobDrift`
    warning that states its size."""
    if len(outcomes) < 2:
        return
    a = outcomes[0]
    drift, b = max(((det.logprob_drift(a, o), o) for o in outcomes[1:]), key=lambda x: x[0])
    if drift == 0.0:
        return
    if ctx.bitwise:
        raise LOGPROBS.titled(what=ctx.what).failure(
            expected="bitwise-equal logprobs",
            received=f"largest difference {drift:.3g}",
            curl=b.curl,
            detail="--vllm-profile=batch-invariant requires equal logprobs",
        )
    # stacklevel 3: the suite's line (this function, then Check.__call__, then the suite)
    warnings.warn(
        LogprobDrift(f"logprobs drift {ctx.what}: up to {drift:.3g} (tokens equal)"), stacklevel=3
    )
