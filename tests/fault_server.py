"""A programmable OpenAI-compatible server with one switch per defect.

With no fault on it behaves as the OpenAI API documents (it passes every bundled check,
strict ``openai`` profile included); each fault is exactly one departure, so a test
can show that the check for it fails. It proves that checks bite and never stands in
for a real engine. It speaks vLLM's ``/version`` and ``vllm:`` metric names.

Switch faults in-process (``server.faults = {"stream_no_done"}``) or over HTTP
(``POST /_control {"faults": [...], "api_key": ...}``) for subprocess runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import struct
import threading
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, MutableMapping
from typing import Any
from urllib.parse import quote

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSONResponse
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests import fault_model as fm
from tests import (
    fault_responses,  # issue 17: responses
    fault_structured,  # issue 17: structured outputs
    fault_tools,  # issue 17: tools
)
from tests.faults import FAULTS

MODEL = "fault-model"
MB = 1024 * 1024
#: What a hostile server could send to run code in a report that does not escape it.
INJECTION = "<script>document.title='PWNED'</script><img src=x onerror=\"document.title='PWNED'\">"
_ROLES = {"system", "developer", "user", "assistant", "tool"}
# issue 14: secrets and untrusted text
#: A model id that colours the terminal, retitles its window and forges a line.
ESCAPES = "\x1b[31m-red\x1b[0m\x1b]0;PWNED-TITLE\x07\nFORGED: 0 failed\r"
SURROGATE = "-\ud800"
ECHO_HEADER = "x-echo-authorization"


class JSONResponse(_StarletteJSONResponse):
    """Starlette's, but a lone surrogate is sent as the JSON escape ``\\ud800`` (legal JSON)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode()


class _EchoKeyHeader:
    """ASGI middleware: with echo_key_everywhere, every answer repeats the key in a header."""

    def __init__(self, app: Any, server: FaultServer) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            key = self.server.api_key
            if (
                message["type"] == "http.response.start"
                and key
                and self.server.on("echo_key_everywhere")
            ):
                message["headers"] = [
                    *message.get("headers", []),
                    (ECHO_HEADER.encode(), f"Bearer {key}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, sending)


class BadRequest(Exception):
    def __init__(
        self, message: str, param: str | None = None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


class FaultServer:
    """Holds the switches; :meth:`start` serves the app on a free loopback port."""

    def __init__(self) -> None:
        self.faults: set[str] = set()
        self.api_key: str | None = None
        self.divergence_rate = 0.01
        self.rng = random.Random(0)
        self.seen_prefixes: set[str] = set()
        self.token_delay_s = 0.001
        self.requests = 0
        self.hits_by_path: Tally[str] = Tally()  # every HTTP request, by path
        self._transport = HostileTransport(self)  # wire-level faults in front of the app
        self._inflight = 0
        self._grow_since: float | None = None
        self._jitter = random.Random(1)
        self._busy = 0
        self._scrapes = 0
        self.app = Starlette(
            routes=[
                Route("/health", self.health),
                Route("/version", self.version),
                Route("/metrics", self.metrics),
                Route("/v1/models", self.models),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/_control", self.control, methods=["POST"]),
                *fault_responses.routes(self),  # issue 17: responses
            ],
            middleware=[Middleware(_EchoKeyHeader, server=self)],
        )
        self._init_metrics()
        self._server: uvicorn.Server | None = None
        self.url = ""

    def reset(self) -> None:
        self.faults = set()
        self.api_key = None
        self.divergence_rate = 0.01
        self.rng = random.Random(0)
        self.seen_prefixes = set()
        self._grow_since = None
        self.m_running.labels(MODEL).set(self._inflight)  # slots leaked by an earlier test

    def on(self, fault: str) -> bool:
        assert fault in FAULTS, fault
        return fault in self.faults

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        config = uvicorn.Config(
            self._counted,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, daemon=True).start()
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

    # -- metrics -----------------------------------------------------------------------------
    def _init_metrics(self) -> None:
        self.registry = reg = CollectorRegistry()
        labels = ["model_name"]
        self.m_running = Gauge("vllm:num_requests_running", "running", labels, registry=reg)
        self.m_waiting = Gauge("vllm:num_requests_waiting", "waiting", labels, registry=reg)
        self.m_kv = Gauge("vllm:kv_cache_usage_perc", "kv cache", labels, registry=reg)
        self.m_prompt = Counter("vllm:prompt_tokens", "prompt tokens", labels, registry=reg)
        self.m_gen = Counter("vllm:generation_tokens", "generated", labels, registry=reg)
        self.m_success = Counter(
            "vllm:request_success", "finished", [*labels, "finished_reason"], registry=reg
        )
        self.m_ttft = Histogram("vllm:time_to_first_token_seconds", "ttft", labels, registry=reg)
        self.m_itl = Histogram("vllm:inter_token_latency_seconds", "itl", labels, registry=reg)
        self.m_e2e = Histogram("vllm:e2e_request_latency_seconds", "e2e", labels, registry=reg)
        for gauge in (self.m_running, self.m_waiting, self.m_kv):
            gauge.labels(MODEL).set(0)
        self.m_rss = Gauge("process_resident_memory_bytes", "resident memory", registry=reg)

    def _resident_bytes(self) -> float:
        """~400 MB with +-0.1 MB noise; with memory_grows, 16 MB more every second."""
        grown = 0.0
        if self.on("memory_grows"):
            self._grow_since = self._grow_since or time.monotonic()
            grown = 16 * MB * (time.monotonic() - self._grow_since)
        return 400 * MB + self._jitter.uniform(-0.1, 0.1) * MB + grown

    async def metrics(self, request: Request) -> Response:
        if self.on("metrics_missing"):
            return PlainTextResponse("Not Found", status_code=404)
        if self.on("metrics_busy_500") and self._busy:
            return PlainTextResponse("busy", status_code=500)
        self.m_rss.set(self._resident_bytes())
        text = generate_latest(self.registry).decode()
        self._scrapes += 1
        if self.on("metrics_names_missing"):
            text = (
                "\n".join(line for line in text.splitlines() if "num_requests_running" not in line)
                + "\n"
            )
        if self.on("metrics_counter_decreases"):
            text = re.sub(
                r"^(vllm:prompt_tokens_total\{[^}]*\}) \S+",
                lambda m: f"{m.group(1)} {1e6 - self._scrapes * 1000}",
                text,
                flags=re.M,
            )
        if self.on("metrics_unparseable"):
            text += "this line is { not prometheus\n"
        if self.on("running_stuck"):
            text = re.sub(
                r"^(vllm:num_requests_running\{[^}]*\}) (\S+)",
                lambda m: f"{m.group(1)} {float(m.group(2)) + 1}",
                text,
                flags=re.M,
            )
        text += self._echo_metrics()
        # issue 14: every server value validated before use
        if self.on("metrics_nan"):
            text = re.sub(
                r"^((?:process_resident_memory_bytes|vllm:\w+_seconds_(?:bucket|sum))"
                r"(?:\{[^}]*\})?) \S+$",
                r"\1 NaN",
                text,
                flags=re.M,
            )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # -- endpoints ---------------------------------------------------------------------------
    async def control(self, request: Request) -> Response:
        body = await request.json()
        self.faults = set(body.get("faults", []))
        self.api_key = body.get("api_key")
        return JSONResponse({"faults": sorted(self.faults)})

    async def health(self, request: Request) -> Response:
        if self.on("health_503"):
            return PlainTextResponse("loading", status_code=503)
        if self.on("health_missing"):
            return PlainTextResponse("Not Found", status_code=404)
        return PlainTextResponse("")

    async def version(self, request: Request) -> Response:
        if self.on("html_injection"):
            return JSONResponse({"version": INJECTION})
        if self.on("echo_key_everywhere") and self.api_key:
            return JSONResponse(
                {"version": f"0.1+{quote(self.api_key, safe='')}", "auth": f"Bearer {self.api_key}"}
            )
        return JSONResponse({"version": "fault-0.1"})

    async def models(self, request: Request) -> Response:
        if denied := self._auth(request, force=self.on("models_401")):
            return denied
        if self.on("models_500"):
            return self._error(BadRequest("model registry unavailable", status=500))
        model = {
            "id": self.served_model(),
            "object": "model",
            "created": 1700000000,
            "owned_by": "fault-server",
        }
        if self.on("extra_field"):
            model["fault_extension"] = True
        # issue 14: every server value validated before use
        if self.on("models_data_not_list"):
            return JSONResponse({"object": "list", "data": 7})
        if self.on("deep_json"):
            depth = 100_000
            return Response(
                b'{"object": "list", "data": ' + b"[" * depth + b"]" * depth + b"}",
                media_type="application/json",
            )
        return JSONResponse({"object": "list", "data": [model, *self._more_models()]})

    async def completions(self, request: Request) -> Response:
        self.requests += 1
        if denied := self._auth(request):
            return denied
        chat = request.url.path.endswith("/chat/completions")
        try:
            body = await self._json(request)
            params = self._validate(body, chat)
        except BadRequest as exc:
            return self._error(exc)
        if self.on("hang"):
            await asyncio.sleep(3600)
        if self.on("completions_500"):
            message = INJECTION if self.on("html_injection") else "internal failure"
            return self._error(BadRequest(message, status=500))
        if self.on("errors_under_load") and self._inflight >= 4:
            return self._error(BadRequest("server overloaded, try again later", status=503))
        # issue 17: structured outputs
        if chat and (structured := fault_structured.answer(self, body, params)) is not None:
            return structured
        # issue 17: tools
        if chat and body.get("tools"):
            return await fault_tools.answer(self, body, params)
        prompts = params["prompts"]
        choices = [
            self._choice(p, params, i, self._salt(p, len(prompts)))
            for i, p in enumerate(prompt for prompt in prompts for _ in range(params["n"]))
        ]
        if self.on("n_ignored"):
            choices = choices[:1]
        usage = {
            "prompt_tokens": sum(fm.count_tokens(p) for p in prompts),
            "completion_tokens": sum(c["n_tokens"] for c in choices),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if self.on("usage_mismatch"):
            usage["total_tokens"] += 7
        self.m_prompt.labels(MODEL).inc(usage["prompt_tokens"])
        if body.get("stream"):
            return self._stream(body, params, choices, usage, chat)
        started = time.perf_counter()
        self.m_running.labels(MODEL).inc()
        self._busy += 1
        self._inflight += 1
        await asyncio.sleep(
            self.token_delay_s * (20 if self.on("metrics_busy_500") else 1)
            + self._first_delay()
            + (
                sum(c["n_tokens"] for c in choices) * self._token_delay()
                if self.on("slow_tokens")
                else 0.0
            )
        )
        self._inflight -= 1
        self._busy -= 1
        self.m_running.labels(MODEL).dec()
        self._observe(choices, started, started + self.token_delay_s)
        text = "x" * 80_000_000 if self.on("huge_body") else None
        out: dict[str, Any] = {
            "id": "chatcmpl-fault" if chat else "cmpl-fault",
            "object": "chat.completion" if chat else "text_completion",
            "created": "yesterday" if self.on("created_string") else int(time.time()),
            "model": self.served_model(),
            "choices": [self._render(c, i, chat, text) for i, c in enumerate(choices)],
        }
        if not self.on("missing_usage"):
            out["usage"] = usage
        if self.on("extra_field"):
            out["fault_extension"] = True
        if self.on("wrong_object"):
            out["object"] = "completion"
        # issue 14: every server value validated before use
        if self.on("choices_string"):
            out["choices"] = "".join(
                c["message"]["content"] if chat else c["text"] for c in out["choices"]
            )
        if self.on("usage_list") and "usage" in out:
            out["usage"] = list(usage.values())
        return JSONResponse(out)

    # -- generation --------------------------------------------------------------------------
    def _salt(self, prompt: str, batch: int) -> str:
        """What makes this answer differ from the true one, per determinism fault."""
        salt = ""
        if self.on("diverge_sometimes") and self.rng.random() < self.divergence_rate:
            salt += "|diverged"
        if self.on("replica_differs"):
            salt += "|replica"
        if self.on("batch_differs") and batch > 1:
            salt += "|batch"
        prefix = prompt[:60]
        if self.on("cache_differs") and prefix in self.seen_prefixes:
            salt += "|cached"
        salt += "|changed" if self.on("greedy_changed") else ""  # issue 18: baseline
        self.seen_prefixes.add(prefix)
        return salt

    def _choice(
        self, prompt: str, params: dict[str, Any], index: int, salt: str = ""
    ) -> dict[str, Any]:
        max_tokens = params["max_tokens"] + (3 if self.on("max_tokens_ignored") else 0)
        seed = None if self.on("seed_ignored") else params["seed"]
        tokens = fm.generate(
            prompt + salt,
            max_tokens,
            temperature=params["temperature"],
            seed=seed,
            choice=index,
            top_k=params["top_k"],
        )
        if self.on("logprob_drift"):
            for tok in tokens:
                tok.logprob += self.rng.random() * 1e-6
        pieces, finish = [], "length"
        text = ""
        for tok in tokens:
            text += tok.text
            pieces.append(tok.text)
            hit = [text.find(s) for s in params["stop"] if s and s in text]
            if hit and not self.on("stop_ignored"):
                cut = min(hit)
                if self.on("stop_included"):
                    cut += len(params["stop"][0])
                kept, left = [], cut
                for piece in pieces:
                    if left <= 0:
                        break
                    kept.append(piece[:left])
                    left -= len(piece)
                pieces, text, finish = kept, text[:cut], "stop"
                break
        used = tokens[: len(pieces)]
        if self.on("echo_key_everywhere") and self.api_key and pieces:
            pieces[0] = f"[Bearer {self.api_key}]" + pieces[0]
        pieces = self._shown(pieces, params)
        ids = self._token_ids(used)
        if params["echo"] and not self.on("echo_ignored"):
            pieces.insert(0, prompt)
            ids.insert(0, [])
        return {
            "pieces": pieces,
            "tokens": used,
            "finish": finish,
            "n_tokens": len(used),
            "top_k": params["top_k"],
            "logprobs": params["logprobs"],
            "piece_ids": ids,
            "return_ids": params["return_token_ids"],
        }

    def _shown(self, pieces: list[str], params: dict[str, Any]) -> list[str]:
        """The text pieces a user sees; the text faults change them, never the tokens."""
        greedy = params["temperature"] == 0
        if not pieces or not (
            (greedy and self.on("text_differs") and self.rng.random() < self.divergence_rate)
            or (not greedy and params["seed"] is not None and self.on("seeded_text_differs"))
        ):
            return pieces
        k = len(pieces) // 2
        changed = (
            " " + fm.WORDS[self.rng.randrange(len(fm.WORDS))] if not greedy else pieces[k].upper()
        )
        return [*pieces[:k], changed, *pieces[k + 1 :]]

    def _token_ids(self, used: list[fm.Token]) -> list[list[int]]:
        """The token ids of each text piece (vLLM's return_token_ids), one per piece."""
        ids = [[t.id] for t in used]
        if ids and self.on("token_ids_differ") and self.rng.random() < self.divergence_rate:
            ids[0] = [self.rng.randrange(10**6, 10**9)]
        return ids

    def _render(
        self, c: dict[str, Any], index: int, chat: bool, text: str | None
    ) -> dict[str, Any]:
        content = text if text is not None else "".join(c["pieces"])
        out: dict[str, Any] = {
            "index": 0 if self.on("bad_indices") else index,
            "finish_reason": None if self.on("finish_reason_null") else c["finish"],
        }
        if chat:
            out["message"] = {"role": "assistant", "content": content, "refusal": None}
            out["logprobs"] = self._chat_logprobs(c) if c["logprobs"] else None
        else:
            out["text"] = content
            out["logprobs"] = self._completion_logprobs(c) if c["logprobs"] else None
        if c["return_ids"]:
            out["token_ids"] = [i for ids in c["piece_ids"] for i in ids]
        return out

    def _top(self, c: dict[str, Any], tok: fm.Token) -> list[tuple[str, float]]:
        k = c["top_k"] + (2 if self.on("logprobs_count_wrong") else 0)
        return [*tok.top, (" extra", -9.0), (" more", -9.5)][:k]

    def _chat_logprobs(self, c: dict[str, Any]) -> dict[str, Any]:
        def entry(text: str, lp: float) -> dict[str, Any]:
            return {"token": text, "logprob": lp, "bytes": list(text.encode())}

        return {
            "refusal": None,
            "content": [
                entry(text, t.logprob) | {"top_logprobs": [entry(a, b) for a, b in self._top(c, t)]}
                for text, t in zip(self._spelled(c), c["tokens"], strict=True)
            ],
        }

    def _spelled(self, c: dict[str, Any]) -> list[str]:
        """The logprob tokens' text; with logprobs_misspell, the first is upper-cased."""
        texts = [t.text for t in c["tokens"]]
        if texts and self.on("logprobs_misspell"):
            texts[0] = texts[0].upper()
        return texts

    def _completion_logprobs(self, c: dict[str, Any]) -> dict[str, Any]:
        offsets, pos = [], 0
        for t in c["tokens"]:
            offsets.append(pos)
            pos += len(t.text)
        return {
            "tokens": self._spelled(c),
            "token_logprobs": [
                0.5 if self.on("logprob_positive") else t.logprob for t in c["tokens"]
            ],
            "top_logprobs": [dict(self._top(c, t)) for t in c["tokens"]],
            "text_offset": offsets,
        }

    def _observe(self, choices: list[dict[str, Any]], started: float, first: float) -> None:
        now = time.perf_counter()
        scale = 1000.0 if self.on("metrics_ttft_off") else 1.0
        for c in choices:
            self.m_gen.labels(MODEL).inc(c["n_tokens"])
            self.m_success.labels(MODEL, c["finish"]).inc()
            if not self.on("metrics_histogram_stuck"):
                slow = 10.0 if self.on("server_histogram_slow") else 1.0  # issue 15: self-check
                self.m_ttft.labels(MODEL).observe((first - started) * scale * slow)
                self.m_e2e.labels(MODEL).observe((now - started) * slow)

    def _first_delay(self) -> float:
        slower = 0.03 if self.on("slow_30ms") else 0.0  # issue 18: baseline
        return slower + (1.5 if self.on("slow_first_token") else 0.0)

    def _token_delay(self) -> float:
        return 0.06 if self.on("slow_tokens") else self.token_delay_s

    def _stream(
        self,
        body: dict[str, Any],
        params: dict[str, Any],
        choices: list[dict[str, Any]],
        usage: dict[str, int],
        chat: bool,
    ) -> Response:
        faults = set(self.faults)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created = int(time.time())
        served, echo = self.served_model(), self._echo_sse()

        def chunk(payload: dict[str, Any], n: int) -> bytes:
            base = {
                "id": f"chatcmpl-fault{n if 'stream_id_changes' in faults else ''}",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created,
                "model": served,
            }
            if "choices_string" in faults and payload.get("choices"):  # issue 14: values
                payload = payload | {
                    "choices": "".join(
                        str(c.get("delta", c).get("content") or c.get("text") or "")
                        for c in payload["choices"]
                    )
                }
            return f"{echo}data: {json.dumps(base | payload)}\n\n".encode()

        def part(
            i: int, text: str | None, finish: str | None, role: bool = False
        ) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {"role": "assistant"} if role else {}
                if text is not None:
                    delta["content"] = text
                return {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}
            return {"index": i, "text": text or "", "finish_reason": finish, "logprobs": None}

        async def events() -> AsyncIterator[bytes]:
            started = time.perf_counter()
            self.m_running.labels(MODEL).inc()
            self._inflight += 1
            n = 0
            first = 0.0
            finished_normally = False
            try:
                if chat:
                    for i in range(len(choices)):
                        role = "stream_no_role" not in faults
                        yield chunk({"choices": [part(i, "", None, role=role)]}, n)
                        n += 1
                longest = max(len(c["pieces"]) for c in choices)
                for k in range(longest):
                    await asyncio.sleep(
                        self._token_delay() + (self._first_delay() if k == 0 else 0.0)
                    )
                    first = first or time.perf_counter()
                    if "stream_stalls" in faults and k == 2:
                        await asyncio.sleep(3600)
                    if "stream_non_json" in faults and k == 1:
                        yield b"data: {not json\n\n"
                    if "stream_bad_frame" in faults and k == 1:
                        yield b"garbage line\n\n"
                    for i, c in enumerate(choices):
                        if k >= len(c["pieces"]):
                            continue
                        text = c["pieces"][k]
                        if "stream_text_differs" in faults and k == 0:
                            text = text.upper()
                        last = k == len(c["pieces"]) - 1
                        early = "stream_finish_early" in faults and k == 0
                        finish = c["finish"] if (last or early) else None
                        piece = part(i, text, finish)
                        if c["return_ids"]:
                            piece["token_ids"] = c["piece_ids"][k]
                        yield chunk({"choices": [piece]}, n)
                        n += 1
                if include_usage:
                    leak = [part(0, "", None)] if "stream_usage_with_choices" in faults else []
                    yield chunk({"choices": leak, "usage": usage}, n)
                if "stream_no_done" not in faults:
                    yield b"data: [DONE]\n\n"
                finished_normally = True
                self._observe(choices, started, first or time.perf_counter())
            finally:
                self._inflight -= 1
                if finished_normally or "cancel_leak" not in faults:
                    self.m_running.labels(MODEL).dec()

        media = "application/json" if "stream_wrong_type" in faults else "text/event-stream"
        return StreamingResponse(reframe(events(), faults), media_type=media)

    # issue 14: load runs fit the server
    async def _counted(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The app, counting every HTTP request by path (what a load run really sent)."""
        if scope["type"] == "http":
            self.hits_by_path[scope["path"]] += 1
        await self._transport(scope, receive, send)

    def _not_served(self, what: str) -> Response:
        """What a server started without an endpoint answers (llama.cpp: 501)."""
        return JSONResponse(
            {
                "error": {
                    "message": f"This server does not serve {what}",
                    "type": "not_implemented_error",
                    "param": None,
                    "code": 501,
                }
            },
            status_code=501,
        )

    # -- embeddings --------------------------------------------------------------------------
    async def embeddings(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        if self.on("embeddings_not_served"):
            return self._not_served("embeddings")
        try:
            body = await self._json(request)
            self._model(body)
            texts = self._embedding_inputs(body, self.on("embed_no_token_ids"))
            fmt = body.get("encoding_format", "float")
            if fmt not in ("float", "base64"):
                raise BadRequest("encoding_format must be 'float' or 'base64'", "encoding_format")
            if self.on("embed_slow"):
                await asyncio.sleep(0.6)
        except BadRequest as exc:
            if self.on("embed_bad_input_200"):
                return JSONResponse(
                    {
                        "object": "list",
                        "data": [],
                        "model": MODEL,
                        "usage": {"prompt_tokens": 0, "total_tokens": 0},
                    }
                )
            return self._error(exc)
        vectors = [fm.embed(t) for t in texts]
        if self.on("embed_dims") and len(vectors) > 1:
            vectors[1] = vectors[1][:-1]
        data = []
        for i, vec in enumerate(vectors):
            value: Any = vec
            if fmt == "base64":
                if self.on("embed_base64_differs"):
                    vec = [x + 0.5 for x in vec]
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        if self.on("embed_order"):
            data = [dict(d, index=i) for i, d in enumerate(reversed(data))]
        # issue 16: every embedding check bites on its own defect
        if self.on("embed_count_short") and len(data) > 1:
            data = data[:-1]
        if self.on("embed_index_reversed") and len(data) > 1:
            data = [dict(d, index=len(data) - 1 - i) for i, d in enumerate(data)]
        if self.on("embed_not_base64") and fmt == "base64":
            data = [dict(d, embedding="!!" + d["embedding"]) for d in data]
        overflow = self.on("embed_overflow") and fmt != "base64" and bool(data)
        if overflow:
            data[0] = dict(data[0], embedding=["OVERFLOW", *data[0]["embedding"][1:]])
        tokens = sum(fm.count_tokens(t) for t in texts)
        out: dict[str, Any] = {"object": "list", "data": data, "model": self.served_model()}
        if not self.on("embed_no_usage"):
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        if overflow:  # a number JSON allows and no float holds
            text = json.dumps(out).replace('"OVERFLOW"', "1e999", 1)
            return Response(text, media_type="application/json")
        return JSONResponse(out)

    @staticmethod
    def _embedding_inputs(body: dict[str, Any], embed_token_ids_refused: bool = False) -> list[str]:
        raw = body.get("input")
        if isinstance(raw, str) and raw:
            return [raw]
        if isinstance(raw, list) and raw:
            if all(isinstance(x, str) and x for x in raw):
                return list(raw)
            ids = all(isinstance(x, int) and not isinstance(x, bool) for x in raw) or all(
                isinstance(x, list) and x and all(isinstance(i, int) for i in x) for x in raw
            )
            if ids and embed_token_ids_refused:
                raise BadRequest("token-id input is not supported", "input")
            if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
                return [fm.ids_to_text(raw)]
            if all(isinstance(x, list) and x and all(isinstance(i, int) for i in x) for x in raw):
                return [fm.ids_to_text(x) for x in raw]
        raise BadRequest("input must be a non-empty string, list of strings or token ids", "input")

    # -- validation --------------------------------------------------------------------------
    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise BadRequest("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def _model(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if not isinstance(model, str):
            raise BadRequest("you must provide a model parameter", "model")
        if model != self.served_model() and not self.on("unknown_model_200"):
            raise BadRequest(f"The model {model!r} does not exist", "model", 404, "model_not_found")

    def _validate(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        self._model(body)
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise BadRequest("messages must be a non-empty array", "messages")
            for m in messages:
                if not isinstance(m, dict) or m.get("role") not in _ROLES:
                    raise BadRequest("each message needs a valid role", "messages")
                if not isinstance(m.get("content"), str | list | None):
                    raise BadRequest("message content must be a string or array", "messages")
            prompts = ["\n".join(str(m.get("content") or "") for m in messages)]
        else:
            prompts = self._prompts(body.get("prompt"))
        key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        max_tokens = self._int(body, key, 16, minimum=1)
        n = self._int(body, "n", 1, minimum=1, maximum=8)
        temperature = self._number(body, "temperature", 1.0, 0.0, 2.0)
        self._number(body, "top_p", 1.0, 0.0, 1.0, open_low=True)
        for name in ("presence_penalty", "frequency_penalty"):
            self._number(body, name, 0.0, -2.0, 2.0)
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise BadRequest("seed must be an integer", "seed")
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
        if (
            not isinstance(stops, list)
            or len(stops) > 4
            or not all(isinstance(s, str) for s in stops)
        ):
            raise BadRequest("stop must be a string or up to 4 strings", "stop")
        if chat:
            logprobs = body.get("logprobs", False)
            if not isinstance(logprobs, bool):
                raise BadRequest("logprobs must be a boolean", "logprobs")
            top_k = self._int(body, "top_logprobs", 0, minimum=0, maximum=20)
            if top_k and not logprobs:
                raise BadRequest("top_logprobs requires logprobs", "top_logprobs")
            echo = False
        else:
            top_k = self._int(body, "logprobs", 0, minimum=0, maximum=5)
            logprobs = "logprobs" in body and body["logprobs"] is not None
            echo = body.get("echo", False)
            if not isinstance(echo, bool):
                raise BadRequest("echo must be a boolean", "echo")
        for name in ("stream", "return_token_ids"):
            if name in body and not isinstance(body[name], bool | None):
                raise BadRequest(f"{name} must be a boolean", name)
        longest = max(fm.count_tokens(p) for p in prompts)
        if longest + max_tokens > fm.CONTEXT and not self.on("invalid_accepted"):
            raise BadRequest(
                f"This model's maximum context length is {fm.CONTEXT} tokens",
                "max_tokens",
                code="context_length_exceeded",
            )
        return {
            "prompts": prompts,
            "max_tokens": max_tokens,
            "n": n,
            "seed": seed,
            "temperature": temperature,
            "stop": stops,
            "top_k": top_k,
            "logprobs": logprobs,
            "echo": echo,
            "return_token_ids": body.get("return_token_ids") is True,
        }

    def _prompts(self, raw: Any) -> list[str]:
        if isinstance(raw, str) and raw:
            return [raw]
        if isinstance(raw, list) and raw:
            if all(isinstance(x, str) for x in raw):
                return list(raw)
            if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
                return [fm.ids_to_text(raw)]
            if all(isinstance(x, list) and all(isinstance(i, int) for i in x) for x in raw):
                return [fm.ids_to_text(x) for x in raw]
        raise BadRequest("prompt must be a string, strings, token ids or lists of them", "prompt")

    def _int(
        self,
        body: dict[str, Any],
        name: str,
        default: int,
        minimum: int,
        maximum: int | None = None,
    ) -> int:
        value = body.get(name, default)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"{name} must be an integer", name)
        if (value < minimum or (maximum is not None and value > maximum)) and not self.on(
            "invalid_accepted"
        ):
            raise BadRequest(f"{name} is out of range", name)
        return max(value, minimum)

    def _number(
        self,
        body: dict[str, Any],
        name: str,
        default: float,
        low: float,
        high: float,
        open_low: bool = False,
    ) -> float:
        value = body.get(name, default)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise BadRequest(f"{name} must be a number", name)
        bad = value < low or value > high or (open_low and value == low)
        if bad and not self.on("invalid_accepted"):
            raise BadRequest(f"{name} is out of range", name)
        return float(value)

    # -- errors and auth ---------------------------------------------------------------------
    def _error(self, exc: BadRequest) -> Response:
        status = exc.status
        if self.on("error_500_on_invalid") and status < 500:
            status = 500
        if self.on("echo_key_everywhere") and self.api_key:
            exc = BadRequest(
                f"Bearer {self.api_key} (as {quote(self.api_key, safe='')}): {exc}",
                exc.param,
                exc.status,
                exc.code,
            )
        if self.on("error_shape"):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        kind = {401: "authentication_error", 404: "invalid_request_error", 500: "server_error"}.get(
            status, "invalid_request_error"
        )
        return JSONResponse(
            {"error": {"message": str(exc), "type": kind, "param": exc.param, "code": exc.code}},
            status_code=status,
        )

    def _auth(self, request: Request, force: bool = False) -> Response | None:
        sent = request.headers.get("authorization", "")
        wrong = self.api_key is not None and sent != f"Bearer {self.api_key}"
        if force or (wrong and not self.on("no_auth")):
            message = "Incorrect API key provided"
            if self.on("echo_key"):
                message += f": {sent!r}"
            return self._error(BadRequest(message, status=401, code="invalid_api_key"))
        return None

    # -- issue 14: secrets and untrusted text --------------------------------------------------
    def served_model(self) -> str:
        """The id this server serves: hostile with model_id_escapes, model_id_surrogate or
        echo_key_everywhere (which puts the key into it)."""
        if self.on("model_id_escapes"):
            return MODEL + ESCAPES
        if self.on("model_id_surrogate"):
            return MODEL + SURROGATE
        if self.on("echo_key_everywhere") and self.api_key:
            return f"{MODEL}-{self.api_key}"
        return MODEL

    def _more_models(self) -> list[dict[str, Any]]:
        if not self.on("models_10000"):
            return []
        return [
            {
                "id": f"org-{i:05d}/fault-model-variant-{i:05d}-instruct-q4",
                "object": "model",
                "created": 1700000000,
                "owned_by": "fault-server",
            }
            for i in range(1, 10_000)
        ]

    def _echo_sse(self) -> str:
        """An SSE comment line (legal, ignored by clients) carrying the key."""
        if self.on("echo_key_everywhere") and self.api_key:
            return f": Bearer {self.api_key}\n"
        return ""

    def _echo_metrics(self) -> str:
        if not (self.on("echo_key_everywhere") and self.api_key):
            return ""
        label = self.api_key.replace("\\", "\\\\").replace('"', '\\"')
        return (
            "# HELP fault_echo_info the Authorization header, echoed\n"
            "# TYPE fault_echo_info gauge\n"
            f'fault_echo_info{{authorization="Bearer {label}"}} 1\n'
        )


# issue 14: bounded requests and SSE as the spec defines it
async def reframe(pieces: AsyncIterator[bytes], faults: set[str]) -> AsyncIterator[bytes]:
    """Legal SSE a server may send that the stream above does not: both must pass.

    ``sse_other_fields`` adds a comment block, and ``retry``, ``id``, ``event`` and an
    unknown field to every event (in the event's own block: the SDK dispatches a block
    that sets only ``id`` or ``retry`` as an empty event); ``sse_cr_only`` ends every
    line with CR alone.
    """
    n = 0
    async for piece in pieces:
        if "sse_other_fields" in faults:
            if n == 0:
                yield b": a comment block before the first event\n\n"
            piece = (
                b": keep-alive\nretry: 3000\nid: %d\nevent: message\nx-fault-trace: %d\n" % (n, n)
            ) + piece
        if "sse_cr_only" in faults:
            piece = piece.replace(b"\n", b"\r")
        n += 1
        yield piece


class HostileTransport:
    """The wire-level faults, applied to chat completions as raw ASGI messages.

    Only chat: the session's canary (a completion) must get through for the suites to
    run at all. Everything else passes to the Starlette app untouched.
    """

    FAULTS = frozenset({"trickle", "huge_announced_body", "many_headers", "http_101"})

    def __init__(self, server: FaultServer) -> None:
        self.server = server

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        active = self.server.faults & self.FAULTS
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions" or not active:
            await self.server.app(scope, receive, send)
            return
        left: list[asyncio.Future[Any]] = []  # the client's disconnect, once the body is read
        done = False

        async def hostile_send(message: MutableMapping[str, Any]) -> None:
            nonlocal done
            if done:
                return
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                status = 101 if "http_101" in active else message["status"]
                if "http_101" in active:
                    headers += [(b"upgrade", b"h2c"), (b"connection", b"upgrade")]
                if "many_headers" in active:
                    headers += [(b"x-fault-repeat", b"%d" % i) for i in range(50_000)]
                if "huge_announced_body" in active:
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                    headers.append((b"content-length", b"5000000000"))
                await send({**message, "status": status, "headers": headers})
                return
            if not left:
                left.append(asyncio.ensure_future(receive()))
            if "huge_announced_body" in active:
                done = True  # 100 MiB of the 5 GB announced, as fast as the socket takes it
                for _ in range(100):
                    if left[0].done():
                        return
                    await send({"type": "http.response.body", "body": b"x" * MB, "more_body": True})
                return
            if "trickle" in active:
                body = message.get("body", b"")
                for i in range(len(body)):
                    if left[0].done():
                        done = True
                        return
                    await send(
                        {"type": "http.response.body", "body": body[i : i + 1], "more_body": True}
                    )
                    await asyncio.sleep(0.5)
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        try:
            await self.server.app(scope, receive, hostile_send)
        finally:
            for watcher in left:
                watcher.cancel()
