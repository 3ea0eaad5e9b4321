"""A programmable OpenAI-compatible server with one switch per defect.

It answers like a well-behaved server until a fault is switched on; each fault is
exactly one departure, so a test can show that the check for it fails. It proves
that checks bite and never stands in for a real engine.

Switch faults in-process (``server.faults = {"stream_no_done"}``) or over HTTP
(``POST /_control {"faults": [...], "api_key": ...}``) for subprocess runs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

FAULTS = {
    "health_503": "GET /health answers 503 for ever (a server that never gets ready)",
    "models_401": "GET /v1/models answers 401 whatever the key",
    "completions_500": "every completion request answers 500",
    "hang": "completion requests never answer",
    "stream_no_done": "streams end without data: [DONE]",
    "stream_non_json": "one streamed data: line is not JSON",
    "stream_bad_frame": "a stream carries a line that is no SSE field",
    "stream_wrong_type": "streams are sent as application/json",
    "stream_stalls": "streams stop sending after two chunks and never end",
    "huge_body": "completion bodies are 80 MB",
    "echo_key": "error bodies repeat the Authorization header back",
    "max_tokens_ignored": "max_tokens is ignored: always 5 tokens",
}
MODEL = "fault-model"
_WORDS = ["alpha", " beta", " gamma", " delta", " epsilon", " zeta", " eta", " theta"]


class FaultServer:
    """Holds the switches; :meth:`start` serves the app on a free loopback port."""

    def __init__(self) -> None:
        self.faults: set[str] = set()
        self.api_key: str | None = None
        self.requests = 0
        self.app = Starlette(routes=[
            Route("/health", self.health),
            Route("/version", self.version),
            Route("/v1/models", self.models),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.completions, methods=["POST"]),
            Route("/_control", self.control, methods=["POST"]),
        ])
        self._server: uvicorn.Server | None = None
        self.url = ""

    def reset(self) -> None:
        self.faults = set()
        self.api_key = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        thread = threading.Thread(target=self._server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fault server did not start")
            time.sleep(0.01)
        sock = self._server.servers[0].sockets[0]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    # -- endpoints ---------------------------------------------------------------------------
    async def control(self, request: Request) -> Response:
        body = await request.json()
        self.faults = set(body.get("faults", []))
        self.api_key = body.get("api_key")
        return JSONResponse({"faults": sorted(self.faults)})

    async def health(self, request: Request) -> Response:
        if "health_503" in self.faults:
            return PlainTextResponse("loading", status_code=503)
        return PlainTextResponse("")

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": "fault-0.1"})

    async def models(self, request: Request) -> Response:
        if denied := self._auth(request, force="models_401" in self.faults):
            return denied
        return JSONResponse({"object": "list", "data": [
            {"id": MODEL, "object": "model", "created": 0, "owned_by": "fault-server"}]})

    async def completions(self, request: Request) -> Response:
        self.requests += 1
        if denied := self._auth(request):
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body is not valid JSON", "invalid_request_error")
        if body.get("model") != MODEL:
            return _error(404, f"model {body.get('model')!r} does not exist", "NotFoundError")
        if "hang" in self.faults:
            await asyncio.sleep(3600)
        if "completions_500" in self.faults:
            return _error(500, "internal failure", "InternalServerError")
        chat = request.url.path.endswith("/chat/completions")
        n_tokens = 5 if "max_tokens_ignored" in self.faults else int(body.get("max_tokens") or 16)
        tokens = [_WORDS[i % len(_WORDS)] for i in range(n_tokens)]
        if body.get("stream"):
            return self._stream(body, tokens, chat)
        text = "".join(tokens)
        if "huge_body" in self.faults:
            text = "x" * 80_000_000
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return JSONResponse({
            "id": "cmpl-fault", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": MODEL, "choices": [choice],
            "usage": {"prompt_tokens": 3, "completion_tokens": n_tokens,
                      "total_tokens": 3 + n_tokens}})

    def _stream(self, body: dict[str, Any], tokens: list[str], chat: bool) -> Response:
        faults = set(self.faults)

        def chunk(payload: dict[str, Any]) -> bytes:
            base = {"id": "chatcmpl-fault" if chat else "cmpl-fault",
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": int(time.time()), "model": MODEL}
            return f"data: {json.dumps(base | payload)}\n\n".encode()

        def choice(text: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {"role": "assistant"} if role else {}
                if text is not None:
                    delta["content"] = text
                return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}

        async def events() -> AsyncIterator[bytes]:
            if chat:
                yield chunk({"choices": [choice("", None, role=True)]})
            for i, tok in enumerate(tokens):
                if "stream_stalls" in faults and i == 2:
                    await asyncio.sleep(3600)
                if "stream_non_json" in faults and i == 1:
                    yield b"data: {not json\n\n"
                if "stream_bad_frame" in faults and i == 1:
                    yield b"garbage line\n\n"
                last = i == len(tokens) - 1
                yield chunk({"choices": [choice(tok, "length" if last else None)]})
            if (body.get("stream_options") or {}).get("include_usage"):
                yield chunk({"choices": [], "usage": {
                    "prompt_tokens": 3, "completion_tokens": len(tokens),
                    "total_tokens": 3 + len(tokens)}})
            if "stream_no_done" not in faults:
                yield b"data: [DONE]\n\n"

        media = "application/json" if "stream_wrong_type" in faults else "text/event-stream"
        return StreamingResponse(events(), media_type=media)

    def _auth(self, request: Request, force: bool = False) -> Response | None:
        sent = request.headers.get("authorization", "")
        if force or (self.api_key is not None and sent != f"Bearer {self.api_key}"):
            message = "invalid API key"
            if "echo_key" in self.faults:
                message += f": got {sent!r}"
            return _error(401, message, "AuthenticationError")
        return None


def _error(status: int, message: str, kind: str) -> Response:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None,
                                   "code": status}}, status_code=status)
