"""Baseline checks (``--vllm-baseline``): the same greedy answers and no latency regression.

What changed is found by :mod:`pytest_vllm_conformance.report.compare`; these checks judge
it. A failure names what changed and by how much, and both servers' identities. Changes the
operator made on purpose (``--vllm-baseline-accept``) are shown by the comparison, not failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.failures import Severity

if TYPE_CHECKING:
    from pytest_vllm_conformance.perf.latency import LevelFigures
    from pytest_vllm_conformance.report.compare import Identity, LatencyRow, OutputRow
    from pytest_vllm_conformance.workload.determinism import GreedyOutput

OUTPUT_CHANGED = Verdict(
    "The greedy answer to {prompt} changed from the baseline's",
    Severity.HIGH,
    about="the prompt's name",
)
LATENCY_REGRESSED = Verdict("Latency regressed from the baseline at {level}", Severity.HIGH)


@dataclass(frozen=True, kw_only=True)
class Baseline(Context):
    """The baseline's measurement to compare with, both servers' identities, and what the
    operator accepts on purpose (``--vllm-baseline-accept``)."""

    old_identity: Identity
    new_identity: Identity
    accept: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Outputs(Baseline):
    old: GreedyOutput


@dataclass(frozen=True, kw_only=True)
class Latency(Baseline):
    old: LevelFigures
    tolerance: Mapping[str, float] = field(default_factory=dict)
    #: the level measured a second time later in the run (``--vllm-baseline-confirm``): a
    #: regression within the tolerance there is withdrawn; None: the first alone decides
    again: LevelFigures | None = None
    #: why a regression may stand on the first measurement alone (the row's note says more)
    unconfirmed: str = "--vllm-baseline-confirm=off"


def _servers(ctx: Baseline) -> str:
    old, new = ctx.old_identity.describe(), ctx.new_identity.describe()
    return f"baseline server: {old}\nthis server:     {new}"


@check(OUTPUT_CHANGED)
def same_output(new: GreedyOutput, ctx: Outputs) -> OutputRow:
    """The greedy answer (text, and token ids where both runs have them) equals the
    baseline's; returns the comparison row (same, accepted, or not compared)."""
    from pytest_vllm_conformance.report.compare import output_row

    row = output_row(ctx.old, new, ctx.accept)
    if row.regressed:
        raise OUTPUT_CHANGED.titled(prompt=repr(new.prompt)).failure(
            path=f"$.choices[0].text ({new.prompt})",
            expected=f"the baseline's answer: {ctx.old.text[:300]!r}",
            received=f"{new.text[:300]!r}",
            detail=f"first divergence: {row.detail}\n{_servers(ctx)}\n"
            f"accept it on purpose with --vllm-baseline-accept=outputs:{new.prompt}",
            curl=ctx.curl,
        )
    return row


@check(LATENCY_REGRESSED)
def latency_within_tolerance(new: LevelFigures, ctx: Latency) -> list[LatencyRow]:
    """No metric of the level is slower than the baseline's by more than its tolerance AND
    significantly (the 95% bootstrap interval of the percentile ratio wholly above 1 + tolerance),
    in the first measurement and, where one was made, in the second; returns every row
    (improvements, accepted regressions, slowdowns not confirmed and all)."""
    from pytest_vllm_conformance.report.compare import judged_level

    rows = judged_level(ctx.old, new, ctx.again, dict(ctx.tolerance), ctx.accept)
    worse = [r for r in rows if r.regressed]
    if worse:
        raise LATENCY_REGRESSED.titled(level=new.name).failure(
            path=new.name,
            expected=", ".join(
                f"{r.key} at most +{r.tolerance:.0%} over {r.old_ms:.4g} ms" for r in worse
            ),
            received="; ".join(r.sentence() for r in worse),
            detail="\n".join(r.sentence() + (f" [{r.note}]" if r.note else "") for r in rows)
            + "\n"
            + (
                "slower beyond the tolerance in both measurements of the level, the second "
                "made at the end of the run"
                if all(r.measured_again for r in worse)
                else f"not confirmed by a second measurement: {ctx.unconfirmed}"
            )
            + f"\n{_servers(ctx)}\naccept it on purpose with --vllm-baseline-accept=latency",
        )
    return rows
