"""Cancellation checks: idle means zero, and dropped streams free their slots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.failures import Severity
from pytest_vllm_conformance.report.measurements import measurement

NOT_IDLE = Verdict("The running gauge is not 0 when idle", Severity.HIGH)
KEPT_RUNNING = Verdict("Dropped streams keep running", Severity.HIGH)


@dataclass(frozen=True)
class Settled:
    """Readings of the running-requests gauge over a settling window: whether it got down
    to the level wanted, and the lowest reading."""

    reached: bool
    lowest: float


@dataclass(frozen=True, kw_only=True)
class Gauge(Context):
    """The gauge read, how long it had to settle, and the level it must get back to."""

    gauge: str
    settle_s: float
    level: float = 0.0
    shared: bool = False  # --vllm-shared-server: others' requests may hold the gauge up
    streams: int = 0  # how many streams were dropped


@measurement("idle_gauge")
@dataclass(frozen=True)
class IdleReading:
    """The running-requests gauge with none of this run's requests in flight: the lowest
    reading while it was given time to settle, and whether it reached the level asked."""

    gauge: str
    lowest: float
    settled: bool

    def properties(self) -> list[tuple[str, Any]]:
        return [("cancellation_idle_running", self.lowest)]


def idle_note(reading: Settled, ctx: Gauge) -> str:
    """What a gauge that stayed up while this run was idle says."""
    return (
        f"{ctx.gauge} read {reading.lowest:g} or more for {ctx.settle_s:g} s with none of "
        "this run's requests in flight"
    )


@check(NOT_IDLE)
def idle_at_zero(reading: Settled, ctx: Gauge) -> None:
    """With nothing of this run's in flight the gauge reads 0 (a shared server may be busy
    with others' requests: there the suite notes the level instead)."""
    if reading.reached or ctx.shared:
        return
    raise NOT_IDLE.failure(
        path=ctx.gauge,
        expected="0 with nothing in flight",
        received=f"{reading.lowest:g} for {ctx.settle_s:g} s",
        detail=f"{idle_note(reading, ctx)}: a leaked request slot, or a gauge "
        "that lies. If the server also serves others, pass "
        "--vllm-shared-server",
    )


@check(KEPT_RUNNING)
def streams_freed(reading: Settled, ctx: Gauge) -> None:
    """Streams the client dropped stop running: the gauge gets back to its idle level."""
    if not reading.reached:
        raise KEPT_RUNNING.failure(
            path=ctx.gauge,
            expected=f"back to {ctx.level:g} within {ctx.settle_s:g} s",
            received=f"{reading.lowest:g} or more for {ctx.settle_s:g} s",
            detail=f"{ctx.streams} streams closed after their first event",
        )
