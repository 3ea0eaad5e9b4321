"""Early verdicts: a load level ends as soon as its SLO verdict can no longer change.

Only a miss ends a level early: a pass needs every planned request. A miss is sure when

- ``<metric>_pQ_ms = L`` (ttft, e2e, queue, embeddings; pQ one of p50..p99 or max): more
  than :func:`tolerated_exceeding` requests answered successfully above L. Whatever the
  others do, even if some fail and leave the percentile fewer values, NumPy's linear
  percentile then lands at or above one of those. E2E and queue are read from the
  exchange's own stamps; for TTFT the first streamed event's time is a floor (the first
  text can only come later), so no chunk's JSON is parsed as requests finish. A request
  counted this way is measured for real before the level stops, and only the ones that
  truly succeed above the limit count.
- ``error_rate = r``: more requests failed than ``r`` of the planned ones allows.

Lower limits (min_rps, min_tokens_per_s, embeddings_per_s), means, ITL and TPOT never end a
level early: a slow start can still be made up for, or the figure needs every chunk parsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_vllm_conformance.client.sse import DONE
from pytest_vllm_conformance.config.parsers import SLO_METRICS, SLO_STATS
from pytest_vllm_conformance.perf.latency import Exchange, Finish, Sample

_QUANTILE = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
#: the SLO keys one request can settle: a per-request figure (not ITL or TPOT, which need
#: every chunk parsed) at an order statistic (not the mean)
_UPPER = re.compile(
    rf"({'|'.join(m for m in SLO_METRICS if m not in ('itl', 'tpot'))})"
    rf"_({'|'.join(s for s in SLO_STATS if s in _QUANTILE)})_ms"
)


def tolerated_exceeding(planned: int, q: float) -> int:
    """How many of ``planned`` values may exceed a limit while their q-th percentile (0..100,
    the linear definition of :func:`stats.percentile`) can still be within it.

    The percentile interpolates between the sorted values at ``floor(pos)`` and the next one,
    ``pos = (planned - 1) * q / 100``; it is sure to exceed the limit only once the value at
    ``floor(pos)`` does, that is once more than ``planned - 1 - floor(pos)`` values do. The
    count never falls as ``planned`` grows, so fewer successful requests cannot save a miss."""
    if planned < 1:
        return 0
    return planned - 1 - math.floor((planned - 1) * q / 100)


@dataclass(frozen=True, slots=True)
class Glimpse:
    """What a finished exchange shows without parsing its body (ms; NaN when unknown)."""

    failed: bool  # surely failed: no answer, an HTTP error, a broken or unfinished stream
    e2e_ms: float = math.nan
    ttft_floor_ms: float = math.nan
    queue_ms: float = math.nan


def glimpse(finish: Finish) -> Glimpse | None:
    """The cheap view of a finished exchange; None for a finisher this module cannot read."""
    if not isinstance(finish, Exchange):
        return None
    r = finish.response
    if r is None:
        return Glimpse(failed=True)
    t = r.timings
    failed = r.status != 200 or bool(r.sse_problems) or (r.request.stream and not r.done_seen)
    first = next((ev.t for ev in r.events if ev.data.strip() != DONE), math.nan)
    return Glimpse(
        failed,
        (t.done - t.sent) * 1000 if t.done and t.sent else math.nan,
        (first - t.sent) * 1000 if t.sent else math.nan,
        (t.sent - finish.intended) * 1000 if t.sent else math.nan,
    )


@dataclass(slots=True)
class _Limit:
    """One SLO key that can end a level: how a request may count against it, how many may."""

    key: str
    suspect: Callable[[Glimpse], bool]  # cheap: might this request count?
    counts: Callable[[Sample], bool]  # exact: does it, once measured?
    tolerated: int
    why: Callable[[int], str]  # the count -> the reason, as a sentence's end
    suspects: list[Finish] = field(default_factory=list)

    def confirmed(self, finish: Finish) -> int:
        """Add a suspect; past the tolerated count, measure the suspects for real."""
        self.suspects.append(finish)
        if len(self.suspects) > self.tolerated:
            self.suspects = [f for f in self.suspects if self.counts(f())]
        return len(self.suspects)


def _percentile_limit(key: str, allowed: float, planned: int) -> _Limit | None:
    match = _UPPER.fullmatch(key)
    if not match:
        return None
    metric, stat = match.groups()
    attr = "e2e_ms" if metric == "embeddings" else f"{metric}_ms"
    cheap = "ttft_floor_ms" if metric == "ttft" else attr
    shown = (
        "embeddings E2E"
        if metric == "embeddings"
        else metric.upper()
        if metric in ("ttft", "e2e")
        else metric
    )
    return _Limit(
        key,
        lambda g: not g.failed and getattr(g, cheap) > allowed,
        lambda s: s.ok and getattr(s, attr) > allowed,
        tolerated_exceeding(planned, _QUANTILE[stat]),
        lambda n: (
            f"{n} exceeded {shown} {allowed:g} ms, so {metric}_{stat} cannot come back under it"
        ),
    )


def _error_limit(allowed: float, planned: int) -> _Limit:
    # The largest failure count the rate can still pass with, in Level.error_rate's own
    # arithmetic: the rest all succeeding is the best case, fewer requests only a worse one.
    def passes(failed: int) -> bool:
        return 1 - (planned - failed) / planned <= allowed

    tolerated = min(planned, math.floor(allowed * planned))
    while tolerated < planned and passes(tolerated + 1):
        tolerated += 1
    while tolerated >= 0 and not passes(tolerated):
        tolerated -= 1
    return _Limit(
        "error_rate",
        lambda g: g.failed,
        lambda s: not s.ok,
        tolerated,
        lambda n: (
            f"{n} failed, more than error_rate {allowed:g} allows of "
            f"{planned}, so the error rate cannot come back under it"
        ),
    )


class EarlyStop:
    """A :class:`latency.StopRule` from a test's SLO limits over ``planned`` requests."""

    def __init__(self, limits: list[_Limit], planned: int) -> None:
        self.limits = limits
        self.planned = planned
        self.finished = 0

    @classmethod
    def from_slo(cls, slo: dict[str, float], planned: int, embeddings: bool) -> EarlyStop | None:
        """The rule for one level, or None when no limit of the SLO can end it early."""
        if planned < 1:
            return None
        limits: list[_Limit] = []
        for key, allowed in sorted(slo.items()):
            if key == "error_rate":
                limits.append(_error_limit(allowed, planned))
            elif (key.startswith("embeddings_") == embeddings) and (
                limit := _percentile_limit(key, allowed, planned)
            ):
                limits.append(limit)
        return cls(limits, planned) if limits else None

    def observe(self, finish: Finish) -> str:
        self.finished += 1
        view = glimpse(finish)
        if view is None:
            return ""
        for limit in self.limits:
            if limit.suspect(view) and (n := limit.confirmed(finish)) > limit.tolerated:
                return f"stopped after {self.finished} of {self.planned} requests: {limit.why(n)}"
        return ""
