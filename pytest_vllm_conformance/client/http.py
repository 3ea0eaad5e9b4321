"""One HTTP/1.1 exchange per connection on a bare asyncio protocol.

Why not aiohttp or httpx: a connection pool queues requests out of sight (the
latency it adds is then blamed on the server), and both spend tens of
microseconds per streamed chunk in Python. Here each request owns its socket,
every phase gets a ``perf_counter`` stamp, and per-read work is llhttp's C parser
(``httptools``) plus a byte split. The README has the measurements.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httptools

from pytest_vllm_conformance import __version__
from pytest_vllm_conformance.client.errors import (
    BodyTooLarge,
    ClientError,
    ConnectError,
    MalformedResponse,
    RequestTimeout,
)
from pytest_vllm_conformance.client.records import RequestRecord, Response, Timings
from pytest_vllm_conformance.client.sse import SSEDecoder
from pytest_vllm_conformance.secrets import Secret

DEFAULT_MAX_BODY = 64 * 1024 * 1024
_USER_AGENT = f"pytest-vllm-conformance/{__version__}"
perf_counter = time.perf_counter


class _Exchange(asyncio.Protocol):
    """Writes one request, parses one response; resolves ``done`` when it is whole."""

    def __init__(self, payload: bytes, timings: Timings, max_body: int, sse: SSEDecoder | None,
                 loop: asyncio.AbstractEventLoop, abort_after: int | None = None) -> None:
        self.payload = payload
        self.timings = timings
        self.max_body = max_body
        self.sse = sse
        self.done: asyncio.Future[None] = loop.create_future()
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.status = 0
        self.now = 0.0
        self.headers_complete = False
        self.abort_after = abort_after
        self.aborted = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.timings.connected = perf_counter()
        transport.write(self.payload)
        self.timings.sent = perf_counter()

    def data_received(self, data: bytes) -> None:
        self.now = now = perf_counter()
        if not self.timings.first_byte:
            self.timings.first_byte = now
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(f"the server sent invalid HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if self.headers_complete and not self._framed():
            self.on_message_complete()  # body delimited by the connection closing
        else:
            where = "while sending the body" if self.headers_complete else "before answering"
            self._fail(MalformedResponse(f"the server closed the connection {where}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_complete = True
        self.timings.headers = self.now

    def on_body(self, body: bytes) -> None:
        if len(self.body) + len(body) > self.max_body:
            self._fail(BodyTooLarge(f"the response body grew past {self.max_body} bytes"))
            return
        self.body += body
        if self.sse is not None:
            self.sse.feed(body, self.now)
            if self.abort_after is not None and len(self.sse.events) >= self.abort_after:
                self.aborted = True  # the caller walks away: close as a dropped client would
                self.timings.done = self.now
                if not self.done.done():
                    self.done.set_result(None)
                self._close()

    def on_message_complete(self) -> None:
        self.timings.done = self.now or perf_counter()
        if self.sse is not None:
            self.sse.close()
        if not self.done.done():
            self.done.set_result(None)
        self._close()

    def _framed(self) -> bool:
        return "content-length" in self.headers or "chunked" in self.headers.get(
            "transfer-encoding", "")

    def _fail(self, exc: ClientError) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class AsyncClient:
    """The one client every suite uses: JSON requests and timed SSE streams."""

    def __init__(self, base_url: str, api_key: Secret | None = None, timeout: float = 60.0,
                 max_body: int = DEFAULT_MAX_BODY) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.max_body = max_body
        self._ssl: ssl.SSLContext | None = None

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> Response:
        return await self.request("POST", path, body=body, **kw)

    async def stream(self, path: str, body: Any, **kw: Any) -> Response:
        """POST and decode the answer as SSE, stamping each event with its arrival time."""
        return await self.request("POST", path, body=body, stream=True, **kw)

    async def request(self, method: str, path: str, *, body: Any = None, raw: bytes | None = None,
                      stream: bool = False, timeout: float | None = None,
                      base_url: str | None = None, auth: bool = True,
                      headers: dict[str, str] | None = None,
                      abort_after: int | None = None) -> Response:
        """Send one request; raise a :class:`ClientError` subclass with a ``curl`` line on failure.

        ``raw`` sends bytes as they are (for malformed-JSON tests); ``auth=False`` leaves the
        key out; ``base_url`` sends to another server with the same key and limits;
        ``abort_after`` closes a stream after that many events, as a client that walks away.
        """
        timings = Timings(scheduled=perf_counter())
        url = (base_url or self.base_url).rstrip("/") + path
        parts = urlsplit(url)
        data = raw if raw is not None else (
            json.dumps(body, separators=(",", ":")).encode() if body is not None else None)
        send_auth = auth and self.api_key is not None
        record = RequestRecord(method, url, data, stream, send_auth, tuple((headers or {}).items()))
        limit = timeout or self.timeout
        sse = SSEDecoder() if stream else None
        loop = asyncio.get_running_loop()
        payload = self._payload(method, parts, data, stream, send_auth, headers)
        proto = _Exchange(payload, timings, self.max_body, sse, loop, abort_after)
        try:
            async with asyncio.timeout(limit):
                try:
                    await loop.create_connection(
                        lambda: proto, parts.hostname or "",
                        parts.port or _default_port(parts.scheme),
                        ssl=self._ssl_context() if parts.scheme == "https" else None,
                    )
                except ConnectionRefusedError:
                    raise ConnectError("connection refused") from None
                except socket.gaierror:
                    raise ConnectError(f"unknown host {parts.hostname!r}") from None
                except OSError as exc:
                    raise ConnectError(exc.strerror or str(exc)) from None
                await proto.done
        except TimeoutError:
            proto._close()
            got = f"; {len(sse.events)} events arrived but the stream never ended" if (
                sse and sse.events) else ""
            exc_t = RequestTimeout(f"{method} {url}: no complete answer within {limit:g} s{got}",
                                   self._redact(record.curl()))
            exc_t.reason = f"no complete answer within {limit:g} s{got}"
            raise exc_t from None
        except ClientError as exc:
            exc.message = self._redact(f"{method} {url}: {exc.message}")
            exc.curl = self._redact(record.curl())
            raise
        return Response(record, proto.status, proto.headers, bytes(proto.body), timings,
                        sse.events if sse else [], sse.problems if sse else [],
                        sse.done_seen if sse else False, proto.aborted)

    def _payload(self, method: str, parts: Any, data: bytes | None, stream: bool,
                 send_auth: bool, extra: dict[str, str] | None) -> bytes:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {parts.netloc.rsplit('@', 1)[-1]}",
            f"User-Agent: {_USER_AGENT}",
            "Accept: text/event-stream" if stream else "Accept: application/json",
            "Connection: close",
        ]
        if data is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        if send_auth:
            assert self.api_key is not None
            lines.append(f"Authorization: Bearer {self.api_key.reveal()}")
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + data if data is not None else head

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _redact(self, text: str) -> str:
        return self.api_key.redact(text) if self.api_key else text


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80

