"""Prometheus /metrics checks, parsed with prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import CheckFailure, Severity

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
    """One /metrics reading: family names and types, and every sample summed over labels."""

    types: dict[str, str] = field(default_factory=dict)
    samples: dict[str, float] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.types or name in self.samples or f"{name}_total" in self.samples

    def value(self, sample: str) -> float:
        return self.samples.get(sample, 0.0)


def parse(r: Response) -> Scrape:
    """The body parsed by prometheus_client; a parse error or non-200 is a failure."""
    from prometheus_client.parser import text_string_to_metric_families

    if r.status == 404:
        raise CheckFailure("Server exposes no /metrics", path="GET /metrics",
                           expected="Prometheus text", received="HTTP 404", curl=r.curl,
                           severity=Severity.LOW)
    if r.status != 200:
        raise CheckFailure("/metrics failed", path="GET /metrics", expected="HTTP 200",
                           received=f"HTTP {r.status}", curl=r.curl, severity=Severity.MEDIUM)
    out = Scrape()
    try:
        for family in text_string_to_metric_families(r.body.decode("utf-8", "replace")):
            out.types[family.name] = family.type
            for s in family.samples:
                out.samples[s.name] = out.samples.get(s.name, 0.0) + s.value
    except ValueError as exc:
        raise CheckFailure("/metrics is not valid Prometheus text", path="GET /metrics",
                           expected="text that prometheus_client parses",
                           received=str(exc)[:160], curl=r.curl,
                           severity=Severity.MEDIUM) from None
    return out


def names_present(scrape: Scrape, engine: str, curl: str = "") -> None:
    missing = [n if isinstance(n, str) else " or ".join(n) for n in EXPECTED_NAMES[engine]
               if not any(scrape.has(x) for x in ((n,) if isinstance(n, str) else n))]
    if missing:
        raise CheckFailure(f"{engine} metrics missing", path="GET /metrics",
                           expected="every metric the engine documents",
                           received="missing " + ", ".join(missing), curl=curl)


def counters_only_grow(before: Scrape, after: Scrape, curl: str = "") -> None:
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
