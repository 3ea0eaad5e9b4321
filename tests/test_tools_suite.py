"""The tools suite: what the bite table cannot show alone (a server without tool calling
is "not supported", never a failure; the finish-reason allowance; hostile answers).

Each check failing on its own defect is in tests/test_checks_bite.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pytest_vllm_conformance.checks import tools, values
from pytest_vllm_conformance.checks.registry import Context
from pytest_vllm_conformance.client.records import RequestRecord, Response, Timings
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.target.capabilities import not_supported
from pytest_vllm_conformance.workload import tools as tool_requests
from tests.fault_server import FaultServer

BURST = "test_determinism.py::test_a_burst_of_identical_tool_call_requests_gives_one_set_of_calls"


def answered(status: int, body: Any) -> Response:
    return Response(
        RequestRecord("POST", "http://x/v1/chat/completions"),
        status,
        {},
        json.dumps(body).encode(),
        Timings(),
    )


def error(status: int, message: str) -> Response:
    return answered(status, {"error": {"message": message, "type": "x", "code": status}})


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (
            error(400, 'tool_choice="required" requires --tool-call-parser to be set'),
            'not supported: tool calling: tool_choice="required" requires --tool-call-parser',
        ),
        (  # llama.cpp without jinja: a 500, with a message that says why
            error(500, "tools param requires --jinja flag"),
            "not supported: tool calling: tools param requires --jinja flag",
        ),
        (error(400, "max_tokens must be at least 1"), None),  # not about tools
        (error(500, "internal failure in tool parser"), None),  # no missing capability
        # a crashing parser's 500 may name tools and "requires": only --jinja makes it a gap
        (error(500, "tool parser error: function call requires a closing tag"), None),
        (error(500, "tools are not supported"), None),
        (
            error(400, "\x1b[31mtools\x1b[0m are not supported"),
            "not supported: tool calling: \\x1b[31mtools",
        ),
        (answered(200, {"choices": []}), None),
    ],
)
def test_a_refusal_that_names_tools_and_a_missing_capability_is_not_supported(
    response: Response, reason: str | None
) -> None:
    evidence = tool_requests.not_supported(response)
    if reason is None:
        assert evidence is None
        return
    assert evidence is not None
    with pytest.raises(pytest.skip.Exception) as skipped:
        not_supported("tool calling", evidence)
    found = str(skipped.value.msg)
    assert found.startswith(reason), found
    assert "\x1b" not in found  # the server's words pass through untrusted.line


def test_a_server_without_tool_calling_skips_as_not_supported(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    """vLLM without --tool-call-parser: every forced or auto choice is "not supported"
    (its own words), "none" and a tool-result turn answered with "none" still pass, and so
    does the run: no failure, no harness error."""
    fault.faults = {"tools_not_served"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", "test_tools.py", BURST, "-rs", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=2, skipped=7)
    result.stdout.fnmatch_lines_random(
        [
            '*not supported: tool calling: tool_choice="required" requires --tool-call-parser*',
            '*not supported: tool calling: tool_choice=function "get_weather" requires*',
            '*not supported: tool calling: "auto" tool choice requires --enable-auto-tool-choice*',
        ]
    )


def test_a_refused_tool_turn_fails_when_tools_are_served(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    """Its refusal says "unsupported message role: tool", yet the same request without the
    tool turn is served: a failure, not a skip."""
    fault.faults = {"tool_followup_rejected"}
    node = "test_tools.py::test_a_tool_result_turn_is_accepted"
    result = pytester.runpytest(f"--vllm-url={fault.url}", node, "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unsupported message role: tool*"])


def call(name: str = "get_weather", arguments: Any = '{"city":"paris","celsius":true}') -> Any:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


def turn(finish: str | None, *calls: Any) -> tools.Turn:
    message = {"role": "assistant", "content": None, "tool_calls": list(calls)}
    body = {"choices": [{"index": 0, "message": message, "finish_reason": finish}]}
    return tools.read_turn(body)


def choice(name: str, named: bool = False) -> tools.Choice:
    return tools.Choice(tools=tool_requests.TOOLS, choice=name, named=named)


def test_a_named_choice_may_finish_with_stop_as_openai_answers_it() -> None:
    tools.finish_reason_matches(turn("stop", call()), choice("get_weather", named=True))
    tools.finish_reason_matches(turn("tool_calls", call()), choice("get_weather", named=True))
    with pytest.raises(CheckFailure) as info:
        tools.finish_reason_matches(turn("stop", call()), choice("required"))
    assert info.value.title == tools.FINISH_NOT_TOOL_CALLS.title
    with pytest.raises(CheckFailure) as info:  # the observed vLLM "required" to max_tokens
        tools.finish_reason_matches(turn("length", call()), choice("get_weather", named=True))
    assert "the calls may be cut" in info.value.received


@pytest.mark.parametrize("arguments", ["Infinity", "NaN", '{"a": NaN}', "9049", "[1]", {"a": 1}])
def test_arguments_are_judged_as_an_rfc_8259_json_object_string(arguments: Any) -> None:
    """vLLM gave ``"Infinity"`` (Python's json reads it) and ``"9049"``; some servers send
    an object, not a string."""
    with pytest.raises(CheckFailure) as info:
        tools.arguments_are_json_objects(
            turn("tool_calls", call(arguments=arguments)).calls, choice("auto")
        )
    assert info.value.title in (tools.ARGS_NOT_JSON.title, tools.ARGS_NOT_OBJECT.title)


def test_streamed_arguments_are_compared_as_json_not_as_text() -> None:
    """vLLM re-serialises the returned arguments (``{"tz": "cet"}``) and streams the
    model's own text (``{"tz":"cet"}``): the same call."""
    returned = turn("tool_calls", call("get_time", '{"tz": "cet"}')).calls
    streamed = turn("tool_calls", call("get_time", '{"tz":"cet"}'))
    tools.same_calls(streamed, tools.Returned(calls=tuple(returned)))
    with pytest.raises(CheckFailure):
        tools.same_calls(
            turn("tool_calls", call("get_time", '{"tz":"utc"}')),
            tools.Returned(calls=tuple(returned)),
        )


def delta(tool_calls: Any, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"tool_calls": tool_calls}, "finish_reason": finish}]}


@pytest.mark.parametrize(
    "chunks",
    [
        [delta("oops")],
        [delta(["oops"])],
        [delta([{"index": -1, "id": "a", "function": {"name": "f"}}])],
        [delta([{"index": 0, "id": "a", "function": "f"}])],
        [delta([{"index": 0, "id": "a", "function": {"name": "f", "arguments": 7}}])],
        [{"choices": {"index": 0}}],
    ],
)
def test_hostile_streamed_deltas_are_a_titled_failure(chunks: list[dict[str, Any]]) -> None:
    with pytest.raises(CheckFailure) as info:
        tools.assembled(chunks, Context())
    assert info.value.title == values.WRONG_SHAPE


def test_streamed_deltas_assemble_by_index() -> None:
    chunks = [
        delta([{"index": 1, "id": "b", "type": "function", "function": {"name": "get_time"}}]),
        delta([{"index": 0, "id": "a", "type": "function", "function": {"name": "get_weather"}}]),
        delta([{"index": 0, "function": {"arguments": '{"city":'}}]),
        delta([{"index": 1, "function": {"arguments": '{"tz":"utc"}'}}]),
        delta([{"index": 0, "id": "a", "function": {"arguments": '"rome","celsius":false}'}}]),
        delta([], "tool_calls"),
    ]
    got = tools.assembled(chunks, Context())
    assert [(c.id, c.name, c.arguments) for c in got.calls] == [
        ("a", "get_weather", '{"city":"rome","celsius":false}'),
        ("b", "get_time", '{"tz":"utc"}'),
    ]
    assert got.finish_reason == "tool_calls" and got.content is None


# review: issue 17 (findings 6 and 10)
def test_a_streamed_call_without_type_is_a_function_and_any_other_type_fails() -> None:
    """The schema's tool-call chunk requires only ``index``: no ``type`` in any delta is a
    function call; a non-"function" type in any delta (not only the first) is a finding."""
    head = {"index": 0, "id": "a", "function": {"name": "get_time", "arguments": ""}}
    rest = {"index": 0, "function": {"arguments": '{"tz":"utc"}'}}
    offered = tools.Offered(tools=tool_requests.TOOLS)
    untyped = tools.assembled([delta([head]), delta([rest])], Context())
    assert untyped.calls[0].type == "function"
    tools.calls_well_formed(untyped.calls, offered)
    typed_later = tools.assembled(
        [delta([{**head, "type": "function"}]), delta([{**rest, "type": "custom"}])], Context()
    )
    with pytest.raises(CheckFailure) as caught:
        tools.calls_well_formed(typed_later.calls, offered)
    assert caught.value.title == tools.NOT_FUNCTION.title


def test_streamed_arguments_are_assembled_in_linear_time() -> None:
    """200,000 one-character argument fragments (a hostile stream) are joined once, not
    grown a fragment at a time (quadratic: minutes)."""
    n = 200_000
    head = {"index": 0, "id": "a", "type": "function", "function": {"name": "get_time"}}
    fragment = delta([{"index": 0, "function": {"arguments": "x"}}])
    chunks = [delta([head]), *([fragment] * n)]
    started = time.perf_counter()
    got = tools.assembled(chunks, Context())
    assert time.perf_counter() - started < 10
    assert got.calls[0].arguments == "x" * n
