"""Latency percentiles and throughput under load, judged against the SLO.

Streamed /v1/completions at each concurrency level of the sweep (closed loop: a user sends
its next request when the last one ends) and at an open-loop arrival rate (requests start
at gamma-distributed times whatever is in flight, so a slow server builds a queue instead of
slowing the load down); embeddings single and batched. Each level reports TTFT, ITL, TPOT,
E2E and client queue percentiles next to the server's own histograms; definitions are in
``pytest_vllm_conformance.perf.latency`` and the README. Limits:
``pytest_vllm_conformance.perf.slo``.
"""

from __future__ import annotations

import pytest

from pytest_vllm_conformance.perf.loadtest import LoadRunner

pytestmark = pytest.mark.latency


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "concurrency" in metafunc.fixturenames:
        from pytest_vllm_conformance.plugin import settings

        levels = settings(metafunc.config).perf.concurrency
        metafunc.parametrize("concurrency", levels, ids=[f"c{c}" for c in levels])


def test_streamed_completions_at_each_concurrency_level(
    vllm_load: LoadRunner, concurrency: int
) -> None:
    vllm_load.completions(concurrency=concurrency)


def test_streamed_completions_at_an_open_loop_arrival_rate(vllm_load: LoadRunner) -> None:
    vllm_load.completions(rate=vllm_load.perf.rate)


@pytest.mark.parametrize("batch", [1, 16], ids=["single", "batch-16"])
def test_embeddings_latency_and_rate(vllm_load: LoadRunner, batch: int) -> None:
    vllm_load.embeddings(batch=batch, concurrency=min(max(vllm_load.perf.concurrency), 16))


# issue 17: responses
def test_streamed_responses_time_to_first_text(vllm_load: LoadRunner) -> None:
    """One closed-loop level of streamed /v1/responses: TTFT is the first output_text.delta."""
    vllm_load.responses(concurrency=1)
