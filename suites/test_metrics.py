"""The Prometheus /metrics endpoint: parses, names, counters, histograms, agreement with us."""

from __future__ import annotations

import asyncio

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import metrics, streaming
from pytest_vllm_conformance.client import Client, Response
from pytest_vllm_conformance.target.discovery import Target
from pytest_vllm_conformance.workload import shapes

pytestmark = pytest.mark.metrics


def _scrape(client: Client) -> metrics.Scrape:
    return metrics.parse(client.get("/metrics"))


def _request(client: Client, model: str, n: int = 1) -> None:
    for _ in range(n):
        r = client.post("/v1/completions", shapes.completion(model, max_tokens=4))
        checks.request_succeeded(r, checks.Status(title="A plain completion failed"))


def _known(target: Target, table: dict[str, str]) -> str:
    if target.engine.name not in table:
        pytest.skip(f"no known metric for this check on engine {target.engine.name!r}")
    return table[target.engine.name]


def test_metrics_parse_as_prometheus_text(vllm_client: Client) -> None:
    _scrape(vllm_client)


def test_the_engine_metrics_are_exposed(vllm_client: Client, vllm_target: Target) -> None:
    if vllm_target.engine.name not in metrics.EXPECTED_NAMES:
        pytest.skip(f"no documented metric names for engine {vllm_target.engine.name!r}")
    r = vllm_client.get("/metrics")
    metrics.names_present(
        metrics.parse(r), metrics.Engine(engine=vllm_target.engine.name, curl=r.curl)
    )


def test_counters_only_grow_across_a_request(vllm_client: Client, vllm_target: Target) -> None:
    before = _scrape(vllm_client)
    _request(vllm_client, vllm_target.model)
    after = _scrape(vllm_client)
    metrics.counters_only_grow(metrics.Change(before, after))
    if vllm_target.engine.name in metrics.PROMPT_COUNTER:
        metrics.grew_by(
            metrics.Change(before, after),
            metrics.Growth(sample=metrics.PROMPT_COUNTER[vllm_target.engine.name], at_least=1),
        )


def test_the_latency_histogram_counts_each_request(
    vllm_client: Client, vllm_target: Target
) -> None:
    name = _known(vllm_target, metrics.E2E_HISTOGRAM)
    before = _scrape(vllm_client)
    _request(vllm_client, vllm_target.model, n=3)
    metrics.grew_by(
        metrics.Change(before, _scrape(vllm_client)),
        metrics.Growth(sample=f"{name}_count", at_least=3),
    )


def test_server_ttft_agrees_with_the_client(vllm_client: Client, vllm_target: Target) -> None:
    name = _known(vllm_target, metrics.TTFT_HISTOGRAM)
    body = shapes.chat(vllm_target.model, max_tokens=8, stream=True)
    before = _scrape(vllm_client)
    client_ttft = []
    for _ in range(4):
        r = vllm_client.stream("/v1/chat/completions", body)
        client_ttft.append(streaming.first_token_at(r) - r.timings.sent)
    after = _scrape(vllm_client)
    count = after.value(f"{name}_count") - before.value(f"{name}_count")
    metrics.grew_by(
        metrics.Change(before, after), metrics.Growth(sample=f"{name}_count", at_least=4)
    )
    server_mean = (after.value(f"{name}_sum") - before.value(f"{name}_sum")) / count
    metrics.same_order_of_magnitude(
        server_mean, metrics.Agreement(client_s=sum(client_ttft) / len(client_ttft), what="TTFT")
    )


def test_metrics_scrape_under_load_does_not_fail(vllm_client: Client, vllm_target: Target) -> None:
    """Scraping while requests run must not break the endpoint or the requests."""
    if not vllm_target.has("/metrics"):
        pytest.skip("the server has no /metrics (test_metrics_parse_as_prometheus_text says so)")

    async def load() -> list[Response]:
        body = shapes.completion(vllm_target.model, max_tokens=8)
        work = [vllm_client.aio.post("/v1/completions", body) for _ in range(4)]
        scrapes = [vllm_client.aio.get("/metrics") for _ in range(4)]
        return list(await asyncio.gather(*work, *scrapes))

    for r in vllm_client.run(load()):
        checks.request_succeeded(
            r, checks.Status(title="A request failed while /metrics was scraped")
        )
