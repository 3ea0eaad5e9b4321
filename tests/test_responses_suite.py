"""The bundled Responses suite: passes on a conforming server, skips what a server does not
serve (saying "not supported" with the server's message), and its latency mode's reader."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from pytest_vllm_conformance.client.sse import SSEEvent
from pytest_vllm_conformance.perf.latency import response_text_times
from tests.fault_server import FaultServer

STORAGE = ("test_a_stored_response_can_be_retrieved", "test_previous_response_id_continues")


def test_a_conforming_server_passes_the_suite(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", "--vllm-profile=openai", "-m", "responses", "-rs"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 20, result.stdout.str()
    assert not {"failed", "error", "skipped"} & set(outcomes), result.stdout.str()


def test_a_server_without_the_responses_api_skips_it(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"responses_not_served"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "-m",
        "responses",
        "-rs",
        "--vllm-latency-requests=2",
        "--vllm-latency-warmup=0",
    )
    outcomes = result.parseoutcomes()
    assert not {"failed", "error", "passed"} & set(outcomes), result.stdout.str()
    result.stdout.fnmatch_lines(
        ["SKIPPED *not supported: responses api: POST /v1/responses answered HTTP 404: Not Found*"]
    )
    latency = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_latency.py::test_streamed_responses_time_to_first_text",
        "-rs",
    )
    latency.assert_outcomes(skipped=1)
    latency.stdout.fnmatch_lines(
        ["SKIPPED *not supported: responses api: POST /v1/responses answered*"]
    )


def test_a_server_that_stores_nothing_skips_the_storage_tests(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"responses_no_store"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", "-m", "responses", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == len(STORAGE) and "failed" not in outcomes, outcomes
    result.stdout.fnmatch_lines(
        [
            "SKIPPED *not supported: responses storage: GET /v1/responses/{id} answered HTTP 404: "
            "Response with id 'resp_fault*' not found.*"
        ]
    )


def _events(*events: Mapping[str, object]) -> list[SSEEvent]:
    return [
        SSEEvent(float(i), json.dumps(e).encode(), str(e["type"]).encode())
        for i, e in enumerate(events)
    ]


def test_the_latency_reader_times_the_text_deltas() -> None:
    delta = {"type": "response.output_text.delta", "delta": " word"}
    done = {"type": "response.incomplete", "response": {"usage": {"output_tokens": 2}}}
    created = {"type": "response.created", "response": {}}
    assert response_text_times(_events(created, delta, delta, done)) == ([1.0, 2.0], 2, "")
    assert response_text_times(_events(created, delta))[2] == (
        "the stream ended with no terminal event"
    )
    failed = {"type": "response.failed", "response": {}}
    assert response_text_times(_events(delta, failed))[2] == "the stream ended with response.failed"
    empty = {"type": "response.output_text.delta", "delta": ""}
    assert response_text_times(_events(created, empty, done))[2] == "the stream carried no text"
    wrong = {"type": "response.completed", "response": {"usage": {"output_tokens": "2"}}}
    assert "not a count" in response_text_times(_events(delta, wrong))[2]
