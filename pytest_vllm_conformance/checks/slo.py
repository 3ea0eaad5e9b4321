"""Load-level checks: the harness's figures are sound, and the level meets its SLO."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.failures import Severity
from pytest_vllm_conformance.perf.selfcheck import HARNESS_IMPOSSIBLE, HARNESS_LIMITED

if TYPE_CHECKING:
    from pytest_vllm_conformance.perf.latency import Level

LIMITED = Verdict(HARNESS_LIMITED, Severity.HIGH)
IMPOSSIBLE = Verdict(HARNESS_IMPOSSIBLE, Severity.HIGH)
SLO_MISSED = Verdict("Latency SLO missed", Severity.HIGH)
LOAD_FAILED = Verdict("Requests failed under load", Severity.HIGH)


@dataclass(frozen=True, kw_only=True)
class Table(Context):
    """The SLO table of the level, shown with a harness verdict (empty: none judged)."""

    table: str = ""


@dataclass(frozen=True, kw_only=True)
class Slo(Context):
    """The limits a level is judged against (``perf.slo``'s keys), whether it is an
    embeddings level, and the level's own table for the failure text."""

    limits: Mapping[str, float]
    embeddings: bool = False
    detail: str = ""


@check(LIMITED, IMPOSSIBLE)
def harness_sound(level: Level, ctx: Table) -> None:
    """The harness had a CPU whenever data arrived, and the server's own histograms allow
    its figures; otherwise no SLO verdict is given (raises ``selfcheck.HarnessLimited``)."""
    from pytest_vllm_conformance.perf.selfcheck import HarnessLimited, limited_sentence

    health = level.client
    impossible = level.server_inconsistent
    if not (health and health.client_limited) and not impossible:
        return
    limited = bool(health and health.client_limited)
    figures = ", ".join(f"{k} = {v}" for k, v in health.properties()[2:]) if health else ""
    raise (LIMITED if limited else IMPOSSIBLE).failure(
        path=level.name,
        kind=HarnessLimited,
        expected="a harness that had a CPU whenever data arrived, and figures the server's "
        "own histograms allow",
        received=limited_sentence(level),
        detail="\n".join(
            filter(
                None,
                [
                    f"harness figures: {figures}" if figures else "",
                    "the SLO verdict below is not given: these figures are not the server's"
                    if ctx.table
                    else "",
                    ctx.table,
                ],
            )
        ),
    )


@check(SLO_MISSED, LOAD_FAILED, LIMITED, IMPOSSIBLE)
def slo_met(level: Level, ctx: Slo) -> list[tuple[str, float, float, bool]]:
    """Every limit of the SLO is met; returns the measured-vs-allowed rows.

    A level whose harness was client-limited, or whose figures the server's histograms rule
    out, fails :func:`harness_sound` instead, whether or not the SLO was met; only a missed
    error rate stands (a failed request is no timing figure)."""
    from pytest_vllm_conformance.perf.slo import is_rate, judge, table

    rows = judge(level, dict(ctx.limits), ctx.embeddings)
    missed = [r for r in rows if not r[3]]
    detail = f"\n\n{ctx.detail}" if ctx.detail else ""
    if not any(r[0] == "error_rate" for r in missed):  # failed requests failed, whatever timing
        harness_sound(level, Table(table=table(rows) + detail))  # no verdict on these
    if missed:
        errors = level.errors()
        why = "".join(f"\n  {n}x {e}" for e, n in sorted(errors.items(), key=lambda x: -x[1]))
        verdict = SLO_MISSED if any(r[0] != "error_rate" for r in missed) else LOAD_FAILED
        raise verdict.failure(
            path=level.name,
            expected=", ".join(
                f"{k} {'>=' if is_rate(k) else '<='} {a:g}" for k, _, a, _ in missed
            ),
            received=", ".join(f"{k} = {m:.4g}" for k, m, _, _ in missed),
            detail=table(rows) + (f"\n\nerrors:{why}" if why else "") + detail,
        )
    return rows
