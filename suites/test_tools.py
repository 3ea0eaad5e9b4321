"""Tool calling on chat: tool_choice honoured, calls an agent can run, streamed deltas that
assemble into the same calls, and a tool-result turn accepted.

Every request offers two strict function tools with bounded parameters
(``workload/tools.py``). A server that does not serve tool calling at all (vLLM without
``--tool-call-parser``: 400 "... requires --tool-call-parser ..."; llama.cpp without jinja:
500 "tools param requires --jinja flag") gives a skip "not supported: <its words>", probed
by each test's own request, since a server may serve one ``tool_choice`` and refuse another.
A server that accepts the request and ignores it (answers text to ``"required"``) fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import streaming, tools
from pytest_vllm_conformance.checks.registry import Check, Context
from pytest_vllm_conformance.client import Client, MalformedResponse, Response
from pytest_vllm_conformance.failures import CheckFailure, Findings
from pytest_vllm_conformance.target.capabilities import not_supported
from pytest_vllm_conformance.workload import tools as tool_requests

pytestmark = pytest.mark.tools

PATH = "/v1/chat/completions"
NAMED = "get_weather"
#: A call the follow-up turn answers when the server gave none to reuse (a 9-character
#: alphanumeric id: Mistral's parser accepts no other).
STAND_IN = {
    "id": "call0tool",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "paris", "celsius": true}'},
}
AnyCheck = Check[Any, Any, Any]


def _send(client: Client, body: dict[str, Any], *, stream: bool = False) -> Response:
    """The request; a skip when the server says it does not serve tool calling."""
    r = client.stream(PATH, body) if stream else client.post(PATH, body)
    if (evidence := tool_requests.not_supported(r)) is not None:
        not_supported("tool calling", evidence)
    title = f"{'streamed ' if stream else ''}POST {PATH} with tools failed"
    checks.request_succeeded(r, checks.Status(title=title))
    return r


def _context(choice: str | dict[str, Any], curl: str) -> tools.Choice:
    if isinstance(choice, dict):
        return tools.Choice(
            tools=tool_requests.TOOLS, choice=choice["function"]["name"], named=True, curl=curl
        )
    return tools.Choice(tools=tool_requests.TOOLS, choice=choice, curl=curl)


def _ask(
    client: Client, model: str, choice: str | dict[str, Any], **extra: Any
) -> tuple[tools.Turn, tools.Choice]:
    r = _send(client, tool_requests.request(model, choice, **extra))
    body = checks.json_object(r, checks.Titled(title=f"POST {PATH} with tools is not JSON"))
    return tools.read_turn(body, r.curl), _context(choice, r.curl)


def _judge(turn: tools.Turn, ctx: tools.Choice, *specific: AnyCheck) -> None:
    """Every call well-formed, its arguments JSON objects (valid for strict functions), the
    finish reason consistent, then the test's own checks: every finding at once."""
    findings = Findings()
    for check in (
        tools.calls_well_formed,
        tools.arguments_are_json_objects,
        tools.strict_arguments_valid,
    ):
        findings.check(check, turn.calls, ctx)
    findings.check(tools.finish_reason_matches, turn, ctx)
    for check in specific:
        findings.check(check, turn, ctx)
    findings.raise_any()


def test_a_named_function_gives_exactly_one_call_to_it(
    vllm_client: Client, vllm_model: str
) -> None:
    turn, ctx = _ask(vllm_client, vllm_model, tool_requests.named(NAMED))
    _judge(turn, ctx, tools.named_call)


def test_required_gives_at_least_one_call(vllm_client: Client, vllm_model: str) -> None:
    turn, ctx = _ask(vllm_client, vllm_model, "required")
    _judge(turn, ctx, tools.required_call)


def test_none_gives_no_call(vllm_client: Client, vllm_model: str) -> None:
    turn, ctx = _ask(vllm_client, vllm_model, "none")
    _judge(turn, ctx, tools.no_call, tools.something_answered)


def test_auto_gives_a_well_formed_answer_either_way(vllm_client: Client, vllm_model: str) -> None:
    turn, ctx = _ask(vllm_client, vllm_model, "auto")
    _judge(turn, ctx, tools.something_answered)


def test_parallel_tool_calls_false_gives_at_most_one_call(
    vllm_client: Client, vllm_model: str
) -> None:
    turn, ctx = _ask(vllm_client, vllm_model, "required", parallel_tool_calls=False)
    _judge(turn, ctx, tools.at_most_one_call)


@pytest.mark.parametrize("choice", ["required", "named"])
def test_streamed_tool_calls_assemble_into_the_returned_calls(
    vllm_client: Client, vllm_model: str, choice: str
) -> None:
    """Greedy, so the stream must carry the calls the same request returns (names and
    arguments as parsed JSON: a server may re-serialise them; ids are fresh per request)."""
    asked: str | dict[str, Any] = tool_requests.named(NAMED) if choice == "named" else choice
    plain, _ = _ask(vllm_client, vllm_model, asked)
    r = _send(vllm_client, tool_requests.request(vllm_model, asked, stream=True), stream=True)
    chunks = streaming.well_formed(r)
    turn = tools.assembled(chunks, Context(curl=r.curl))
    _judge(turn, _context(asked, r.curl))
    tools.same_calls(turn, tools.Returned(calls=tuple(plain.calls), curl=r.curl))


def _reusable(calls: list[tools.Call]) -> list[dict[str, Any]]:
    """The server's own calls, as the assistant turn that made them, when they are
    well-formed enough to answer (else none: the follow-up then answers a stand-in call)."""
    offered = {t["function"]["name"] for t in tool_requests.TOOLS}
    usable = [
        c
        for c in calls
        if isinstance(c.id, str)
        and c.id
        and c.name in offered
        and isinstance(c.arguments, str)
        and isinstance(tools.parse_arguments(c.arguments)[1], dict)
    ]
    if len({c.id for c in usable}) != len(usable):
        return []
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in usable
    ]


def test_a_tool_result_turn_is_accepted(vllm_client: Client, vllm_model: str) -> None:
    """The conversation goes on after the calls: the assistant turn with its calls, one
    ``role: "tool"`` message per call id, then an answer (``tool_choice: "none"``, so the
    turn judges the tool results' acceptance, not the auto choice)."""
    first = vllm_client.post(PATH, tool_requests.request(vllm_model, "required"))
    made: list[dict[str, Any]] = []
    if first.status == 200:  # the first turn's own defects are the other tests' findings
        try:
            made = _reusable(tools.read_turn(first.json(), first.curl).calls)
        except (CheckFailure, MalformedResponse):
            made = []
    made = made or [STAND_IN]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": tool_requests.QUESTION},
        {"role": "assistant", "content": None, "tool_calls": made},
        *(
            {"role": "tool", "tool_call_id": c["id"], "content": '{"temperature": 21}'}
            for c in made
        ),
    ]
    body = tool_requests.request(vllm_model, "none", messages=messages)
    r = vllm_client.post(PATH, body)
    if tool_requests.not_supported(r) is not None:
        # a skip only when tools are not served at all: the same request without the tool
        # turn is refused too; a server refusing only the tool turn fails
        _send(vllm_client, tool_requests.request(vllm_model, "none"))
    checks.request_succeeded(
        r, checks.Status(title="A tool-result turn (role 'tool' with its tool_call_id) was refused")
    )
    answer = checks.json_object(r, checks.Titled(title=f"POST {PATH} is not JSON"))
    turn = tools.read_turn(answer, r.curl)
    _judge(turn, _context("none", r.curl), tools.something_answered)
