"""Prometheus /metrics checks, parsed with prometheus_client's own parser."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import CheckFailure, Severity
from pytest_vllm_conformance.report.measurements import measurement

#: Names each engine must expose; a tuple means any one of them (names changed across versions).
EXPECTED_NAMES: dict[str, list[str | tuple[str, ...]]] = {
    "vllm": [
        "vllm:num_requests_running", "vllm:num_requests_waiting",
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "vllm:prompt_tokens", "vllm:generation_tokens", "vllm:request_success",
        "vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
        ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    ],
    "llama.cpp": [
        "llamacpp:prompt_tokens", "llamacpp:tokens_predicted", "llamacpp:prompt_seconds",
        "llamacpp:tokens_predicted_seconds", "llamacpp:requests_processing",
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
        if sample not in self.samples:
            return None
        found = self.value(sample)
        if found < 0:
            raise CheckFailure("Negative value in /metrics", path=f"GET /metrics {sample}",
                               expected="a value >= 0", received=f"{found:g}", curl=self.curl,
                               severity=Severity.HIGH)
        return found

    def buckets(self, histogram: str) -> dict[float, float]:
        """Cumulative bucket counts of one histogram by upper bound, summed over label sets."""
        out: dict[float, float] = {}
        where = f"GET /metrics {histogram}_bucket"
        for name, labels, value in self.series:
            if name != f"{histogram}_bucket":
                continue
            try:
                bound = float(labels["le"])
            except (KeyError, ValueError):
                raise CheckFailure("Histogram bucket without a bound", path=where,
                                   expected='an le="<number>" label', received=repr(labels)[:120],
                                   curl=self.curl, severity=Severity.HIGH) from None
            if math.isnan(bound):
                raise CheckFailure(values.NON_FINITE, path=where, expected="a numeric le bound",
                                   received="le=NaN", curl=self.curl, severity=Severity.HIGH)
            count = values.finite(value, f"{where}{{le={labels['le']!r}}}", self.curl)
            out[bound] = out.get(bound, 0.0) + count
        return out


def parse_text(text: str, curl: str = "") -> Scrape:
    """Prometheus text parsed by prometheus_client; unparseable text is a titled failure.

    The one parser of the project: the metrics, memory and latency suites all read
    /metrics through it."""
    from prometheus_client.parser import text_string_to_metric_families

    out = Scrape(curl=curl)
    try:
        for family in text_string_to_metric_families(text):
            out.types[family.name] = family.type
            for s in family.samples:
                value = float(s.value)
                out.samples[s.name] = out.samples.get(s.name, 0.0) + value
                out.series.append((s.name, dict(s.labels), value))
    except Exception as exc:  # whatever the parser trips on is this finding
        raise CheckFailure("/metrics is not valid Prometheus text", path="GET /metrics",
                           expected="text that prometheus_client parses",
                           received=f"{type(exc).__name__}: {str(exc)[:160]}", curl=curl,
                           severity=Severity.MEDIUM) from None
    return out


def parse(r: Response) -> Scrape:
    """The body parsed by prometheus_client; a parse error or non-200 is a failure."""
    if r.status == 404:
        raise CheckFailure("Server exposes no /metrics", path="GET /metrics",
                           expected="Prometheus text", received="HTTP 404", curl=r.curl,
                           severity=Severity.LOW)
    if r.status != 200:
        raise CheckFailure("/metrics failed", path="GET /metrics", expected="HTTP 200",
                           received=f"HTTP {r.status}", curl=r.curl, severity=Severity.MEDIUM)
    return parse_text(r.body.decode("utf-8", "replace"), r.curl)


def names_present(scrape: Scrape, engine: str, curl: str = "") -> None:
    missing = [n if isinstance(n, str) else " or ".join(n) for n in EXPECTED_NAMES[engine]
               if not any(scrape.has(x) for x in ((n,) if isinstance(n, str) else n))]
    if missing:
        raise CheckFailure(f"{engine} metrics missing", path="GET /metrics",
                           expected="every metric the engine documents",
                           received="missing " + ", ".join(missing), curl=curl)


def counters_only_grow(before: Scrape, after: Scrape, curl: str = "") -> None:
    for scrape in (before, after):
        for name in scrape.samples:
            if name.endswith("_total") and scrape.types.get(name[: -len("_total")]) == "counter":
                scrape.value(name)  # a NaN counter is a finding, not a counter that held
    shrunk = [f"{name}: {before.samples[name]:g} -> {value:g}"
              for name, value in after.samples.items()
              if name.endswith("_total") and name in before.samples
              and before.types.get(name[: -len("_total")]) == "counter"
              and value < before.samples[name]]
    if shrunk:
        raise CheckFailure("A counter went down", path="GET /metrics",
                           expected="counters never decrease", received="; ".join(shrunk[:3]),
                           curl=curl, severity=Severity.MEDIUM)


def grew_by(before: Scrape, after: Scrape, sample: str, at_least: float, curl: str = "") -> None:
    delta = after.value(sample) - before.value(sample)
    if delta < at_least:
        raise CheckFailure(f"{sample} did not count the requests", path=sample,
                           expected=f"an increase of at least {at_least:g}",
                           received=f"an increase of {delta:g}", curl=curl)


def same_order_of_magnitude(server_s: float, client_s: float, what: str, slack_s: float = 0.02
                            ) -> None:
    """Server-side and client-side means agree within 10x (or within ``slack_s``)."""
    close = abs(server_s - client_s) <= slack_s
    if not close and not (client_s / 10 <= server_s <= client_s * 10):
        raise CheckFailure(f"Server {what} disagrees with the client's", path=what,
                           expected=f"within 10x of the client's {client_s * 1000:.1f} ms",
                           received=f"{server_s * 1000:.1f} ms", severity=Severity.MEDIUM)


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
