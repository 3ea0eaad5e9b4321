"""The fault server's answers to chat requests with ``response_format`` (issue 17).

Clean, it answers what the API documents: JSON that satisfies the request's
``json_schema`` (for bounded schemas: ``const``, the first ``enum`` member, ``true``, the
smallest number or string allowed) or, for ``json_object``, a small object; non-streamed or
streamed (with the usage chunk when asked), ``finish_reason`` ``stop``, ``refusal`` null.
Each ``structured_*`` switch of :mod:`tests.faults` is exactly one departure.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse

from tests import fault_model as fm

if TYPE_CHECKING:
    from tests.fault_server import FaultServer

PIECE = 4  # characters per "token" of a structured answer
REFUSAL = "I cannot help with that."


def value_for(schema: Any, other: bool = False) -> Any:
    """A value valid against a bounded schema: ``const``, the first ``enum`` member (the
    last with ``other``), ``true`` (``false``), the least number or string allowed."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][-1 if other else 0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return value_for(schema[key][0], other)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: value_for(v, other) for k, v in props.items() if isinstance(v, dict)}
    if kind == "array":
        return [value_for(schema.get("items"), other)] * int(schema.get("minItems") or 0)
    if kind == "string":
        return ("no" if other else "ok")[: schema.get("maxLength", 2)].ljust(
            int(schema.get("minLength") or 0), "x"
        )
    if kind in ("integer", "number"):
        return schema.get("minimum", 0) + (1 if other and "maximum" not in schema else 0)
    if kind == "boolean":
        return not other
    return None


def _format(body: dict[str, Any]) -> tuple[str, Any] | None:
    """(type, schema) of a valid ``response_format``; None for ``text``; ValueError else."""
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return kind, None
    if kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            return kind, spec.get("schema", {})
        raise ValueError("response_format.json_schema needs a name and a schema")
    raise ValueError("response_format.type must be 'text', 'json_object' or 'json_schema'")


def answer(server: FaultServer, body: dict[str, Any], params: dict[str, Any]) -> Response | None:
    """The answer to a chat request with a JSON ``response_format``; None for ``text``."""
    from tests.fault_server import BadRequest, JSONResponse

    try:
        asked = _format(body)
    except ValueError as exc:
        return server._error(BadRequest(str(exc), "response_format"))
    if asked is None:
        return None
    if server.on("structured_unsupported"):
        return server._error(
            BadRequest("response_format is not supported by this server", "response_format")
        )
    if server.on("structured_unrelated_400"):
        return server._error(BadRequest("the seed parameter is not supported", "seed"))
    kind, schema = asked
    pieces, finish = _pieces(server, kind, schema, params, other=False)
    streamed: list[str] = pieces
    if body.get("stream") and server.on("structured_stream_differs"):
        streamed, finish = _pieces(server, kind, schema, params, other=True)
    if server.on("structured_finish_length"):
        finish = "length"
    refusal = REFUSAL if server.on("structured_refusal_with_content") else None
    if server.on("structured_refused"):
        pieces, streamed, refusal = [], [], REFUSAL
    prompt = "\n".join(str(m.get("content") or "") for m in body["messages"])
    usage = {"prompt_tokens": fm.count_tokens(prompt), "completion_tokens": len(streamed)}
    usage = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
    base = {
        "id": "chatcmpl-fault",
        "created": int(time.time()),
        "model": server.served_model(),
    }
    n = params["n"]
    if body.get("stream"):
        if server.on("structured_stream_cumulative"):
            streamed = ["".join(streamed[: k + 1]) for k in range(len(streamed))]
        usage["completion_tokens"] *= n
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _events(server, base, streamed, finish, refusal, n, usage if include else None),
            media_type="text/event-stream",
        )
    content = None if server.on("structured_refused") else "".join(pieces)
    message = {"role": "assistant", "content": content, "refusal": refusal}
    choices = [
        {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
        for i in range(n)
    ]
    usage["completion_tokens"] *= n
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    out = {**base, "object": "chat.completion", "choices": choices, "usage": usage}
    return JSONResponse(out)


def _pieces(
    server: FaultServer, kind: str, schema: Any, params: dict[str, Any], other: bool
) -> tuple[list[str], str]:
    """The answer's text in ~4-character "tokens", cut at max_tokens; and its finish_reason."""
    limit = params["max_tokens"]
    value = (
        value_for(schema, other) if kind == "json_schema" else {"answer": "no" if other else "yes"}
    )
    if server.on("structured_schema_violated") and isinstance(value, dict):
        value = {**value, "unexpected": True}
    if server.on("structured_array") and kind == "json_object":
        value = [value]
    text = json.dumps(value, separators=(",", ":"))
    if server.on("structured_ignored"):
        words = fm.generate(params["prompts"][0], 6, temperature=0, seed=None, choice=0)
        text = "".join(t.text for t in words).strip()
    if server.on("structured_not_json"):
        text = text[: len(text) // 2]
    if server.on("structured_padded"):
        return ["{", *[" " * PIECE] * (limit - 1)], "length"
    pieces = [text[i : i + PIECE] for i in range(0, len(text), PIECE)]
    if len(pieces) > limit:
        return pieces[:limit], "length"
    return pieces, "stop"


async def _events(
    server: FaultServer,
    base: dict[str, Any],
    pieces: list[str],
    finish: str,
    refusal: str | None,
    n: int,
    usage: dict[str, int] | None,
) -> AsyncIterator[bytes]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
        return f"data: {json.dumps(payload)}\n\n".encode()

    def part(i: int, delta: dict[str, Any], end: str | None = None) -> dict[str, Any]:
        return {"index": i, "delta": delta, "logprobs": None, "finish_reason": end}

    yield chunk([part(i, {"role": "assistant", "content": ""}) for i in range(n)])
    if refusal is not None:
        yield chunk([part(i, {"refusal": refusal}) for i in range(n)])
    for k, piece in enumerate(pieces):
        await asyncio.sleep(server.token_delay_s)
        end = finish if k == len(pieces) - 1 else None
        yield chunk([part(i, {"content": piece}, end) for i in range(n)])
    if not pieces:
        yield chunk([part(i, {}, finish) for i in range(n)])
    if usage is not None:
        yield chunk([], usage=usage)
    yield b"data: [DONE]\n\n"
