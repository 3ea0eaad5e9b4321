"""Prometheus /metrics checks, parsed with prometheus_client's own parser."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.checks.registry import NO_CONTEXT, Context, Verdict, check
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import Severity

NEGATIVE = Verdict("Negative value in /metrics", Severity.HIGH)
NO_BOUND = Verdict("Histogram bucket without a bound", Severity.HIGH)
UNPARSEABLE = Verdict("/metrics is not valid Prometheus text", Severity.MEDIUM)
NO_METRICS = Verdict("Server exposes no /metrics", Severity.LOW)
METRICS_FAILED = Verdict("/metrics failed", Severity.MEDIUM)
NAMES_MISSING = Verdict("{engine} metrics missing", Severity.MEDIUM)
COUNTER_DOWN = Verdict("A counter went down", Severity.MEDIUM)
NOT_COUNTED = Verdict("{sample} did not count the requests", Severity.MEDIUM)
DISAGREES = Verdict("Server {what} disagrees with the client's", Severity.MEDIUM)

#: Names each engine must expose; a tuple means any one of them (names changed across versions).
EXPECTED_NAMES: dict[str, list[str | tuple[str, ...]]] = {
    "vllm": [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "vllm:prompt_tokens",
        "vllm:generation_tokens",
        "vllm:request_success",
        "vllm:time_to_first_token_seconds",
        "vllm:e2e_request_latency_seconds",
        ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    ],
    "llama.cpp": [
        "llamacpp:prompt_tokens",
        "llamacpp:tokens_predicted",
        "llamacpp:prompt_seconds",
        "llamacpp:tokens_predicted_seconds",
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
    ],
}
RUNNING_GAUGE = {"vllm": "vllm:num_requests_running", "llama.cpp": "llamacpp:requests_processing"}
PROMPT_COUNTER = {"vllm": "vllm:prompt_tokens_total", "llama.cpp": "llamacpp:prompt_tokens_total"}
E2E_HISTOGRAM = {"vllm": "vllm:e2e_request_latency_seconds"}
TTFT_HISTOGRAM = {"vllm": "vllm:time_to_first_token_seconds"}


@dataclass
class Scrape:
    """One /metrics reading: family names and types, and every sample summed over labels.

    Values are read through :meth:`value`, :meth:`total` and :meth:`buckets`, which check
    them finite: Prometheus text may carry ``NaN``, and a NaN compared with a limit is
    never over it, so it would pass every check that used it."""

    types: dict[str, str] = field(default_factory=dict)
    samples: dict[str, float] = field(default_factory=dict)
    series: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    curl: str = ""

    def has(self, name: str) -> bool:
        return name in self.types or name in self.samples or f"{name}_total" in self.samples

    def value(self, sample: str) -> float:
        """The sample summed over its label sets (0 when absent); non-finite is a failure."""
        return values.finite(self.samples.get(sample, 0.0), f"GET /metrics {sample}", self.curl)

    def total(self, sample: str) -> float | None:
        """A non-negative finite sample summed over label sets, or None when absent."""
        return sample_total(self, Sample(name=sample))

    def buckets(self, histogram: str) -> dict[float, float]:
        """Cumulative bucket counts of one histogram by upper bound, summed over label sets."""
        return histogram_buckets(self, Sample(name=histogram))


@dataclass(frozen=True, kw_only=True)
class Sample(Context):
    """One sample (or histogram) of a scrape, by name."""

    name: str


@check(NEGATIVE, values.INFINITE)
def sample_total(scrape: Scrape, ctx: Sample) -> float | None:
    """A sample is finite and not negative; returns it summed over label sets (None when
    the scrape has none)."""
    if ctx.name not in scrape.samples:
        return None
    found = scrape.value(ctx.name)
    if found < 0:
        raise NEGATIVE.failure(
            path=f"GET /metrics {ctx.name}",
            expected="a value >= 0",
            received=f"{found:g}",
            curl=scrape.curl,
        )
    return found


@check(NO_BOUND, values.INFINITE)
def histogram_buckets(scrape: Scrape, ctx: Sample) -> dict[float, float]:
    """Every bucket of a histogram has a numeric bound and a finite count; returns the
    cumulative counts by upper bound, summed over label sets."""
    out: dict[float, float] = {}
    where = f"GET /metrics {ctx.name}_bucket"
    for name, labels, value in scrape.series:
        if name != f"{ctx.name}_bucket":
            continue
        try:
            bound = float(labels["le"])
        except (KeyError, ValueError):
            raise NO_BOUND.failure(
                path=where,
                expected='an le="<number>" label',
                received=repr(labels)[:120],
                curl=scrape.curl,
            ) from None
        if math.isnan(bound):
            raise values.INFINITE.failure(
                path=where, expected="a numeric le bound", received="le=NaN", curl=scrape.curl
            )
        count = values.finite(value, f"{where}{{le={labels['le']!r}}}", scrape.curl)
        out[bound] = out.get(bound, 0.0) + count
    return out


@check(UNPARSEABLE)
def prometheus_text(text: str, ctx: Context = NO_CONTEXT) -> Scrape:
    """/metrics is Prometheus text that prometheus_client parses; returns the scrape.

    The one Prometheus parser of the project: the metrics, memory and latency suites all
    read /metrics through it."""
    from prometheus_client.parser import text_string_to_metric_families

    curl = ctx.curl
    out = Scrape(curl=curl)
    try:
        for family in text_string_to_metric_families(text):
            out.types[family.name] = family.type
            for s in family.samples:
                value = float(s.value)
                out.samples[s.name] = out.samples.get(s.name, 0.0) + value
                out.series.append((s.name, dict(s.labels), value))
    except Exception as exc:  # whatever the parser trips on is this finding
        raise UNPARSEABLE.failure(
            path="GET /metrics",
            expected="text that prometheus_client parses",
            received=f"{type(exc).__name__}: {str(exc)[:160]}",
            curl=curl,
        ) from None
    return out


@check(NO_METRICS, METRICS_FAILED, UNPARSEABLE)
def parse(r: Response, ctx: Context = NO_CONTEXT) -> Scrape:
    """GET /metrics answers 200 with Prometheus text; returns the scrape."""
    if r.status == 404:
        raise NO_METRICS.failure(
            path="GET /metrics", expected="Prometheus text", received="HTTP 404", curl=r.curl
        )
    if r.status != 200:
        raise METRICS_FAILED.failure(
            path="GET /metrics", expected="HTTP 200", received=f"HTTP {r.status}", curl=r.curl
        )
    return prometheus_text(r.body.decode("utf-8", "replace"), Context(curl=r.curl))


@dataclass(frozen=True, kw_only=True)
class Engine(Context):
    """The engine the server runs (a key of :data:`EXPECTED_NAMES`)."""

    engine: str


@dataclass(frozen=True)
class Change:
    """Two scrapes of one server, before and after some requests."""

    before: Scrape
    after: Scrape


@dataclass(frozen=True, kw_only=True)
class Growth(Context):
    """A sample that must have grown across a :class:`Change`, and by how much at least."""

    sample: str
    at_least: float


@dataclass(frozen=True, kw_only=True)
class Agreement(Context):
    """The client's own figure (seconds) that the server's must agree with, and its name."""

    client_s: float
    what: str
    slack_s: float = 0.02


@check(NAMES_MISSING)
def names_present(scrape: Scrape, ctx: Engine) -> None:
    """Every metric the engine documents is exposed."""
    engine = ctx.engine
    missing = [
        n if isinstance(n, str) else " or ".join(n)
        for n in EXPECTED_NAMES[engine]
        if not any(scrape.has(x) for x in ((n,) if isinstance(n, str) else n))
    ]
    if missing:
        raise NAMES_MISSING.titled(engine=engine).failure(
            path="GET /metrics",
            expected="every metric the engine documents",
            received="missing " + ", ".join(missing),
            curl=ctx.curl,
        )


@check(COUNTER_DOWN, values.INFINITE)
def counters_only_grow(change: Change, ctx: Context = NO_CONTEXT) -> None:
    """No counter decreases between two scrapes (and none is NaN)."""
    before, after = change.before, change.after
    for scrape in (before, after):
        for name in scrape.samples:
            if name.endswith("_total") and scrape.types.get(name[: -len("_total")]) == "counter":
                scrape.value(name)  # a NaN counter is a finding, not a counter that held
    shrunk = [
        f"{name}: {before.samples[name]:g} -> {value:g}"
        for name, value in after.samples.items()
        if name.endswith("_total")
        and name in before.samples
        and before.types.get(name[: -len("_total")]) == "counter"
        and value < before.samples[name]
    ]
    if shrunk:
        raise COUNTER_DOWN.failure(
            path="GET /metrics",
            expected="counters never decrease",
            received="; ".join(shrunk[:3]),
            curl=ctx.curl,
        )


@check(NOT_COUNTED, values.INFINITE)
def grew_by(change: Change, ctx: Growth) -> None:
    """A counter (or histogram count) grew by at least the requests sent between scrapes."""
    sample, at_least = ctx.sample, ctx.at_least
    delta = change.after.value(sample) - change.before.value(sample)
    if delta < at_least:
        raise NOT_COUNTED.titled(sample=sample).failure(
            path=sample,
            expected=f"an increase of at least {at_least:g}",
            received=f"an increase of {delta:g}",
            curl=ctx.curl,
        )


@check(DISAGREES)
def same_order_of_magnitude(server_s: float, ctx: Agreement) -> None:
    """Server-side and client-side means agree within 10x (or within ``slack_s``)."""
    client_s, what = ctx.client_s, ctx.what
    close = abs(server_s - client_s) <= ctx.slack_s
    if not close and not (client_s / 10 <= server_s <= client_s * 10):
        raise DISAGREES.titled(what=what).failure(
            path=what,
            expected=f"within 10x of the client's {client_s * 1000:.1f} ms",
            received=f"{server_s * 1000:.1f} ms",
        )
