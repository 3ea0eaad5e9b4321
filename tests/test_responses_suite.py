"""The bundled Responses suite: passes on a conforming server, skips what a server does not
serve (saying "not supported" with the server's message), and its latency mode's reader."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import pytest

from pytest_vllm_conformance.checks import responses
from pytest_vllm_conformance.client.sse import SSEEvent
from pytest_vllm_conformance.failures import CheckFailure
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


def test_a_server_that_refuses_store_skips_the_storage_tests(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"responses_store_refused"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", "--vllm-profile=openai", "-m", "responses", "-rs"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == len(STORAGE) and "failed" not in outcomes, outcomes
    result.stdout.fnmatch_lines(
        [
            "SKIPPED *not supported: responses storage: POST /v1/responses with store: true "
            "answered HTTP 400: store is not supported by this server*"
        ]
    )


@pytest.mark.parametrize("profile", ["openai", "vllm"])
def test_a_server_that_accepts_store_and_stores_nothing(
    pytester: pytest.Pytester, fault: FaultServer, profile: str
) -> None:
    """vLLM's way without VLLM_ENABLE_RESPONSES_API_STORE: a failure as the spec is written,
    the vllm profile's allowance (an ordinary skip, not "not supported") in the vllm one."""
    fault.faults = {"responses_no_store"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", f"--vllm-profile={profile}", "-m", "responses", "-rfs"
    )
    outcomes = result.parseoutcomes()
    out = result.stdout.str()
    if profile == "openai":
        assert outcomes.get("failed") == len(STORAGE) and "skipped" not in outcomes, out
        result.stdout.fnmatch_lines(["*A response accepted with store: true cannot be retrieved*"])
    else:
        assert outcomes.get("skipped") == len(STORAGE) and "failed" not in outcomes, out
        result.stdout.fnmatch_lines(
            [
                "SKIPPED *the vllm profile allows this: vLLM stores responses only with "
                "VLLM_ENABLE_RESPONSES_API_STORE=1 (GET /v1/responses/{id} answered HTTP 404: "
                "Response with id 'resp_fault*' not found.)*"
            ]
        )
        assert "not supported" not in out, out
    assert "Traceback" not in out, out


def test_deltas_are_judged_in_linear_time() -> None:
    """200,000 one-character deltas (a hostile stream) are joined once, not grown a
    fragment at a time (quadratic: minutes)."""
    n = 200_000
    ids = {"item_id": "m", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    item = {"id": "m", "type": "message", "role": "assistant", "content": []}
    text = "x" * n
    done_item = {**item, "content": [{**part, "text": text}]}
    events: list[dict[str, object]] = [
        {"type": "response.created", "response": {}},
        {"type": "response.in_progress", "response": {}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", **ids, "part": part},
        *({"type": "response.output_text.delta", **ids, "delta": "x"} for _ in range(n)),
        {"type": "response.output_text.done", **ids, "text": text},
        {"type": "response.content_part.done", **ids, "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {"type": "response.completed", "response": {"status": "completed", "output": [done_item]}},
    ]
    started = time.perf_counter()
    responses.deltas_add_up(events)
    assert time.perf_counter() - started < 10


def _terminal_after(*deltas: str, final: str, output: bool = True) -> list[dict[str, object]]:
    ids = {"item_id": "m", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": final, "annotations": []}
    item = {"id": "m", "type": "message", "role": "assistant", "content": [part]}
    return [
        {"type": "response.created", "response": {}},
        {"type": "response.in_progress", "response": {}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        {"type": "response.content_part.added", **ids, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **ids, "delta": d} for d in deltas),
        {"type": "response.output_text.done", **ids, "text": final},
        {
            "type": "response.completed",
            "response": {"status": "completed", "output": [item] if output else []},
        },
    ]


def test_deltas_that_add_up_pass_and_every_way_of_losing_them_fails() -> None:
    responses.deltas_add_up(_terminal_after("a", "b", final="ab"))
    responses.deltas_add_up(_terminal_after(final=""))  # nothing streamed, nothing claimed
    for events in (
        _terminal_after(final="ab"),  # the text arrives only in the done events
        _terminal_after("a", "b", final="ab", output=False),  # the terminal Response lost it
        _terminal_after("a", final="ab"),  # a delta missing
    ):
        with pytest.raises(CheckFailure) as caught:
            responses.deltas_add_up(events)
        assert caught.value.title == responses.DELTAS.title


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
