"""Memory checks: the server's memory could be sampled, the load was served, it stays flat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.checks.slo import LOAD_FAILED
from pytest_vllm_conformance.failures import Severity

if TYPE_CHECKING:
    from pytest_vllm_conformance.perf.latency import Level
    from pytest_vllm_conformance.perf.memory import MemoryRun

UNSAMPLED = Verdict("Server memory could not be sampled", Severity.MEDIUM)
GROWS = Verdict("Server memory grows under load", Severity.HIGH)


@dataclass(frozen=True, kw_only=True)
class Budget(Context):
    """The growth allowed (MB/hour, and the MB below which growth is no evidence), the
    seconds measured after the warm-up, and the run's summary for the failure text."""

    max_growth: float
    min_growth: float
    measured_s: float
    summary: str = ""


@check(UNSAMPLED)
def sampled(run: MemoryRun, ctx: Budget) -> None:
    """Enough samples, enough after the warm-up, and a finite slope through them."""
    from pytest_vllm_conformance.perf import memory

    if problem := memory.sampling_problem(run, run.server_fit()):
        raise UNSAMPLED.failure(
            expected=f">= {memory.MIN_SAMPLES} samples, "
            f"{memory.MIN_KEPT_SAMPLES} after the warm-up, "
            "and a finite slope through them",
            received=problem,
            detail=ctx.summary,
        )


@check(LOAD_FAILED)
def load_served(level: Level, ctx: Context) -> None:
    """Every request of the load succeeded."""
    if not level.ok:
        raise LOAD_FAILED.failure(
            path=level.name, expected="requests succeed", received=str(level.errors())[:300]
        )


@check(GROWS)
def memory_flat(run: MemoryRun, ctx: Budget) -> None:
    """The Theil-Sen slope's 95% interval does not lie wholly above the growth allowed,
    unless the fitted growth over the window is below the floor (allocators grow in steps)."""
    fit, own = run.server_fit(), run.harness_fit()
    grown = fit.slope * ctx.measured_s / 3600
    if fit.low > ctx.max_growth and grown >= ctx.min_growth:
        blame = (
            "\nthe harness itself grew too: look at the client before the server"
            if own.low > ctx.max_growth
            else ""
        )
        raise GROWS.failure(
            path=run.source,
            expected=f"growth <= {ctx.max_growth:g} MB/h",
            received=f"{fit.slope:+.1f} MB/h (95% interval {fit.low:+.1f} to {fit.high:+.1f}), "
            f"{grown:+.0f} MB over the measured {ctx.measured_s:g} s",
            detail=ctx.summary + blame,
        )
