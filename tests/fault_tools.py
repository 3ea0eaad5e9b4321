"""Tool calling on the fault server: correct calls, or exactly one defect per switch.

The clean answers follow OpenAI's chat API: a forced choice (``"required"``, a named
function) and ``"auto"`` call one function (``"auto"`` and ``"required"`` the first offered,
a named choice that one) with arguments built from its ``parameters`` (an enum's first
value, ``true``, a minimum), ``finish_reason`` ``"tool_calls"`` (``"stop"`` for a named
choice, as OpenAI answers it); ``"none"`` and a turn after tool results answer text. A
``role: "tool"`` message must answer a call id of an earlier assistant turn (a 400
otherwise, as OpenAI). Streams send the role, then per call a delta with its index, id,
type and name, then argument fragments, then the finish reason.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from tests import fault_model as fm

if TYPE_CHECKING:
    from tests.fault_server import BadRequest, FaultServer

TEXT = "It is sunny and 21 degrees in Paris."
#: What vLLM without --tool-call-parser answers, per tool_choice (tools_not_served).
NOT_SERVED = {
    "auto": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
    "to be set",
    "required": 'tool_choice="required" requires --tool-call-parser to be set',
    "named": 'tool_choice=function "{name}" requires --tool-call-parser to be set',
}


def _fail(message: str, param: str) -> BadRequest:
    from tests.fault_server import BadRequest

    return BadRequest(message, param)


def example(schema: Any, alt: bool = False) -> Any:
    """A value valid against a bounded ``schema``; ``alt`` another valid one where there is
    a choice (an enum's last value, ``false``)."""
    if not isinstance(schema, dict):
        return {}
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][-1 if alt else 0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: example(v, alt) for k, v in props.items()}
    if kind == "boolean":
        return not alt
    if kind in ("integer", "number"):
        return int(schema.get("minimum", 0)) + (1 if alt else 0)
    if kind == "array":
        return []
    return "b" if alt else "a"


def _offered(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        raise _fail("tools must be a non-empty array", "tools")
    functions = []
    for t in tools:
        function = t.get("function") if isinstance(t, dict) else None
        if t.get("type") != "function" or not isinstance(function, dict):
            raise _fail("each tool must be {'type': 'function', 'function': {...}}", "tools")
        if not isinstance(function.get("name"), str):
            raise _fail("each function needs a name", "tools")
        functions.append(function)
    return functions


def _mode(body: dict[str, Any], names: list[str]) -> tuple[str, str | None]:
    """("auto" | "required" | "none" | "named", the named function)."""
    choice = body.get("tool_choice", "auto")
    if choice in ("auto", "required", "none"):
        return choice, None
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if name not in names:
        raise _fail(
            "The tool specified in `tool_choice` does not match any of the specified `tools`",
            "tool_choice",
        )
    return "named", name


def _check_tool_turns(messages: list[Any]) -> None:
    """A ``role: "tool"`` message answers an id an earlier assistant turn called."""
    called: set[str] = set()
    for m in messages:
        if m.get("role") == "assistant":
            for call in m.get("tool_calls") or []:
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    called.add(call["id"])
        if m.get("role") == "tool" and m.get("tool_call_id") not in called:
            raise _fail(
                "messages with role 'tool' must be a response to a preceding message with "
                "'tool_calls'",
                "messages",
            )


async def answer(server: FaultServer, body: dict[str, Any], params: dict[str, Any]) -> Response:
    """The answer to a chat request with ``tools``: clean, or with the faults switched on."""
    from tests.fault_server import BadRequest  # here: tests.fault_server imports this module

    try:
        functions = _offered(body)
        names = [f["name"] for f in functions]
        mode, named = _mode(body, names)
        messages = body["messages"]
        if server.on("tool_followup_rejected") and any(m.get("role") == "tool" for m in messages):
            raise _fail("unsupported message role: tool", "messages")
        _check_tool_turns(messages)
        if server.on("tools_not_served") and mode != "none":
            raise _fail(NOT_SERVED[mode].format(name=named), "tool_choice")
        if server.on("tool_parser_crash") and mode != "none":
            raise BadRequest("tool parser error: function call requires a closing tag", None, 500)
    except BadRequest as exc:
        return server._error(exc)
    after_results = messages[-1].get("role") == "tool"
    calls, finish = _calls(server, body, functions, mode, named, after_results)
    empty = mode == "auto" and not after_results and server.on("tool_auto_empty")
    content = None if calls or empty else TEXT
    if not calls and server.on("tool_finish_without_calls"):
        finish = "tool_calls"
    prompt = fm.count_tokens(params["prompts"][0])
    completion = fm.count_tokens(content or json.dumps(calls))
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if body.get("stream"):
        return _stream(server, body, content, calls, finish, usage)
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return JSONResponse(
        {
            "id": "chatcmpl-fault-tools",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": server.served_model(),
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": usage,
        }
    )


def _calls(
    server: FaultServer,
    body: dict[str, Any],
    functions: list[dict[str, Any]],
    mode: str,
    named: str | None,
    after_results: bool,
) -> tuple[list[dict[str, Any]], str]:
    """The calls of the answer and its finish reason."""
    if after_results:
        return [], "stop"
    if mode == "none" and not server.on("tool_none_called"):
        return [], "stop"
    if mode == "required" and server.on("tool_required_text"):
        return [], "stop"
    if mode == "auto" and server.on("tool_auto_empty"):
        return [], "stop"
    by_name = {f["name"]: f for f in functions}
    chosen = [by_name[named] if named else functions[0]]
    if named and server.on("tool_named_ignored"):
        chosen = [next((f for f in functions if f["name"] != named), functions[0])]
    if body.get("parallel_tool_calls") is False and server.on("tool_parallel_ignored"):
        chosen = [*chosen, functions[-1]]
    if server.on("tool_duplicate_ids"):
        chosen = [*chosen, chosen[0]]
    # every other request of a burst answers other (valid) arguments: tool_calls_differ
    alt = server.on("tool_calls_differ") and server.requests % 2 == 0
    calls = [_call(server, f, alt) for f in chosen]
    if server.on("tool_duplicate_ids"):
        for c in calls:
            c["id"] = calls[0]["id"]
    finish = "stop" if named or server.on("tool_finish_stop") else "tool_calls"
    return calls, finish


def _call(server: FaultServer, function: dict[str, Any], alt: bool) -> dict[str, Any]:
    args: Any = example(function.get("parameters"), alt)
    if server.on("tool_args_violate_schema") and isinstance(args, dict):
        args = {**args, "unexpected": True}  # additionalProperties: false
    arguments = json.dumps(args, separators=(",", ":"))
    if server.on("tool_args_not_json"):
        arguments = arguments[:-1]
    if server.on("tool_args_not_object"):
        arguments = "9049"
    call: dict[str, Any] = {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": function["name"] + ("_v2" if server.on("tool_wrong_name") else ""),
            "arguments": arguments,
        },
    }
    if server.on("tool_type_missing"):
        del call["type"]
    return call


def _stream(
    server: FaultServer,
    body: dict[str, Any],
    content: str | None,
    calls: list[dict[str, Any]],
    finish: str,
    usage: dict[str, int],
) -> Response:
    faults = set(server.faults)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    created, served = int(time.time()), server.served_model()
    if "tool_stream_differs" in faults:  # the stream carries other (valid) arguments
        for c in calls:
            function = next(
                t["function"]
                for t in body["tools"]
                if t["function"]["name"] == c["function"]["name"]
            )
            c["function"]["arguments"] = json.dumps(example(function.get("parameters"), True))

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return _event(
            {
                "id": "chatcmpl-fault-tools",
                "object": "chat.completion.chunk",
                "created": created,
                "model": served,
                "choices": [choice],
            }
        )

    async def events() -> AsyncIterator[bytes]:
        yield chunk({"role": "assistant", "content": None if calls else ""})
        for i, c in enumerate(calls):
            head: dict[str, Any] = {"index": i, "id": c["id"], "type": c.get("type")}
            head["function"] = {"name": c["function"]["name"], "arguments": ""}
            name_late = "tool_stream_name_late" in faults  # the name comes a delta late
            if name_late:
                del head["function"]
            if "tool_stream_no_index" in faults:
                del head["index"]
            yield chunk({"tool_calls": [{k: v for k, v in head.items() if v is not None}]})
            arguments = c["function"]["arguments"]
            for k in range(0, len(arguments), 8):
                piece: dict[str, Any] = {
                    "index": i,
                    "function": {"arguments": arguments[k : k + 8]},
                }
                if name_late and k == 0:
                    piece["function"]["name"] = c["function"]["name"]
                if "tool_stream_type_later" in faults:
                    piece["type"] = "custom"
                if "tool_stream_no_index" in faults:
                    del piece["index"]
                yield chunk({"tool_calls": [piece]})
        if content:
            for k in range(0, len(content), 6):
                yield chunk({"content": content[k : k + 6]})
        yield chunk({}, finish)
        if include_usage:
            yield _event(
                {
                    "id": "chatcmpl-fault-tools",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": served,
                    "choices": [],
                    "usage": usage,
                }
            )
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
