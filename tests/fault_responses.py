"""The fault server's Responses API (``POST /v1/responses``, ``GET /v1/responses/{id}``).

Clean, it answers as OpenAI documents: a Response object with every required field, the
typed stream events in the documented order with increasing ``sequence_number`` and
``event:`` lines naming each type, ``status: "incomplete"`` when ``max_output_tokens`` cuts
the answer, stored responses retrievable and continued by ``previous_response_id``. Each
``responses_*`` switch of :data:`tests.faults.FAULTS` is one departure from that.

A clean answer has :data:`NATURAL` tokens; a smaller ``max_output_tokens`` cuts it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests import fault_model as fm

if TYPE_CHECKING:
    from tests.fault_server import FaultServer

#: Tokens of a clean answer that nothing cuts (the model "stops" there).
NATURAL = 20
#: Stored responses kept (oldest dropped): the fault server lives for the whole test session.
KEEP = 256


def routes(server: FaultServer) -> list[Route]:
    """The routes to mount in the fault server's app."""
    api = ResponsesAPI(server)
    return [
        Route("/v1/responses", api.create, methods=["POST"]),
        Route("/v1/responses/{response_id}", api.retrieve, methods=["GET"]),
    ]


class ResponsesAPI:
    """Creates, streams and stores Responses for one fault server (its switches, its key)."""

    def __init__(self, server: FaultServer) -> None:
        self.server = server
        self.stored: dict[str, tuple[dict[str, Any], str]] = {}  # id -> (Response, history)
        self.made = 0

    def on(self, fault: str) -> bool:
        return self.server.on(fault)

    # -- endpoints ---------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        from tests.fault_server import BadRequest, JSONResponse

        server = self.server
        server.requests += 1
        if denied := server._auth(request):
            return denied
        if self.on("responses_not_served"):
            return server._error(BadRequest("Not Found", status=404))
        try:
            body = await server._json(request)
            params = self._validate(body)
        except BadRequest as exc:
            return server._error(exc)
        if body.get("store") is True and self.on("responses_store_refused"):
            return server._error(BadRequest("store is not supported by this server", "store"))
        answer = self._answer(body, params)
        if body.get("stream"):
            return StreamingResponse(self._events(answer), media_type="text/event-stream")
        await asyncio.sleep(server.token_delay_s)
        final = answer["final"]
        if self.on("responses_missing_field"):
            final = {k: v for k, v in final.items() if k != "error"}
        return JSONResponse(final)

    async def retrieve(self, request: Request) -> Response:
        from tests.fault_server import BadRequest, JSONResponse

        if denied := self.server._auth(request):
            return denied
        rid = request.path_params["response_id"]
        if rid not in self.stored or self.on("responses_not_served"):
            message = f"Response with id {rid!r} not found."
            return self.server._error(BadRequest(message, "response_id", 404))
        stored = self.stored[rid][0]
        if self.on("responses_store_differs"):
            stored = _with_text(stored, _text_of(stored) + " changed")
        return JSONResponse(stored)

    # -- the request -------------------------------------------------------------------------
    def _validate(self, body: dict[str, Any]) -> dict[str, Any]:
        from tests.fault_server import BadRequest

        server = self.server
        server._model(body)
        text = _input_text(body.get("input"))
        instructions = body.get("instructions")
        if not isinstance(instructions, str | None):
            raise BadRequest("instructions must be a string", "instructions")
        limit = body.get("max_output_tokens")
        if limit is not None:
            limit = server._int(body, "max_output_tokens", NATURAL, minimum=1)
        temperature = server._number(body, "temperature", 1.0, 0.0, 2.0)
        server._number(body, "top_p", 1.0, 0.0, 1.0, open_low=True)
        for name in ("stream", "store"):
            if not isinstance(body.get(name), bool | None):
                raise BadRequest(f"{name} must be a boolean", name)
        previous = body.get("previous_response_id")
        history = ""
        if previous is not None:
            if not isinstance(previous, str) or previous not in self.stored:
                raise BadRequest(
                    f"Previous response with id {previous!r} not found.",
                    "previous_response_id",
                    404,
                    "previous_response_not_found",
                )
            if not self.on("responses_previous_ignored"):
                history = self.stored[previous][1]
        if self.on("responses_instructions_ignored"):
            instructions = None
        return {
            "text": text,
            "instructions": instructions,
            "limit": limit,
            "temperature": temperature,
            "previous": previous,
            "history": history,
        }

    # -- the answer --------------------------------------------------------------------------
    def _answer(self, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """The final Response and the pieces a stream sends, generated once."""
        self.made += 1
        rid, mid = f"resp_fault{self.made:06d}", f"msg_fault{self.made:06d}"
        prompt = "\n".join(
            p for p in (params["history"], params["instructions"] or "", params["text"]) if p
        )
        limit = params["limit"]
        cap = (
            NATURAL
            if limit is None
            else limit + (3 if self.on("responses_max_output_ignored") else 0)
        )
        n = min(NATURAL, cap)
        truncated = n < NATURAL
        pieces = [
            t.text
            for t in fm.generate(prompt, n, temperature=params["temperature"], seed=None, choice=0)
        ]
        text = "".join(pieces)
        incomplete = truncated and not self.on("responses_truncated_completed")
        status = "incomplete" if incomplete else "completed"
        if self.on("responses_status_in_progress"):
            status = "in_progress"
        usage: dict[str, Any] = {
            "input_tokens": fm.count_tokens(prompt),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": n,
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        usage["total_tokens"] = usage["input_tokens"] + n
        if self.on("responses_usage_mismatch"):
            usage["total_tokens"] += 7
        item = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "status": "incomplete" if incomplete else "completed",
            "content": [_part(text)],
        }
        now = int(time.time())
        final = _response(self.server.served_model(), body, params, rid, now, status, usage)
        final["output"] = [] if self.on("responses_no_output") else [item]
        if status == "completed":
            final["completed_at"] = now
        if incomplete:
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        if body.get("store", True) is not False and not self.on("responses_no_store"):
            self.stored[rid] = (final, f"{prompt}\n{text}")
            while len(self.stored) > KEEP:
                del self.stored[next(iter(self.stored))]
        return {"final": final, "item": item, "pieces": pieces, "text": text}

    async def _events(self, answer: dict[str, Any]) -> AsyncIterator[bytes]:
        """The documented event sequence, each switch bending one rule of it."""
        server = self.server
        final, item, pieces, text = (
            answer["final"],
            answer["item"],
            answer["pieces"],
            answer["text"],
        )
        started = time.perf_counter()
        opening = {k: v for k, v in final.items() if k != "usage"}
        opening |= {"status": "in_progress", "output": []}
        opening["incomplete_details"] = opening["completed_at"] = None
        ids = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        head: list[dict[str, Any]] = [
            {"type": "response.created", "response": opening},
            {"type": "response.in_progress", "response": opening},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
            },
            {"type": "response.content_part.added", **ids, "part": _part("")},
        ]
        if self.on("responses_events_out_of_order"):
            head[2], head[3] = head[3], head[2]
        shown = [
            p for i, p in enumerate(pieces) if not (i == 1 and self.on("responses_deltas_differ"))
        ]
        deltas = [
            {"type": "response.output_text.delta", **ids, "delta": p, "logprobs": []} for p in shown
        ]
        if self.on("responses_no_deltas"):
            deltas = []
        if self.on("responses_event_missing_field"):
            deltas = [{k: v for k, v in d.items() if k != "item_id"} for d in deltas]
        terminal = (
            "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        )
        if self.on("responses_terminal_mismatch"):
            terminal = "response.completed"
        tail: list[dict[str, Any]] = [
            {"type": "response.output_text.done", **ids, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **ids, "part": _part(text)},
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {
                "type": terminal,
                "response": {**final, "output": []}
                if self.on("responses_terminal_empty")
                else final,
            },
        ]
        if self.on("responses_no_terminal"):
            tail = tail[:-1]
        first = 0.0
        events: list[dict[str, Any]] = [*head, *deltas, *tail]
        for n, event in enumerate(events):
            if event["type"] == "response.output_text.delta":
                await asyncio.sleep(server._token_delay() + (0 if first else server._first_delay()))
                first = first or time.perf_counter()
            number = 0 if self.on("responses_sequence_repeats") else n
            name = "message" if self.on("responses_event_name_wrong") else event["type"]
            payload = json.dumps({**event, "sequence_number": number})
            yield f"event: {name}\ndata: {payload}\n\n".encode()
        server._observe([{"n_tokens": len(pieces), "finish": "length"}], started, first or started)


def _input_text(raw: Any) -> str:
    """The text of ``input``: a string, or input messages whose content is a string or
    ``input_text`` parts."""
    from tests.fault_server import BadRequest

    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, list) and raw:
        texts = []
        for item in raw:
            content = item.get("content") if isinstance(item, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list) and all(
                isinstance(p, dict) and isinstance(p.get("text"), str) for p in content
            ):
                texts += [p["text"] for p in content]
            else:
                raise BadRequest("each input item needs a role and text content", "input")
        return "\n".join(texts)
    raise BadRequest("input must be a non-empty string or a list of input items", "input")


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _response(
    model: str,
    body: dict[str, Any],
    params: dict[str, Any],
    rid: str,
    now: int,
    status: str,
    usage: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": now,
        "status": status,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": params["instructions"],
        "max_output_tokens": params["limit"],
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": params["previous"],
        "temperature": params["temperature"],
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "metadata": {},
        "usage": usage,
    }


def _text_of(response: dict[str, Any]) -> str:
    return "".join(part["text"] for item in response["output"] for part in item.get("content", []))


def _with_text(response: dict[str, Any], text: str) -> dict[str, Any]:
    items = [{**item, "content": [_part(text)]} for item in response["output"][:1]]
    return {**response, "output": items}
