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
    HeadersTooLarge,
    MalformedResponse,
    RequestTimeout,
)
from pytest_vllm_conformance.client.records import RequestRecord, Response, Timings
from pytest_vllm_conformance.client.sse import SSEDecoder
from pytest_vllm_conformance.secrets import Secret

DEFAULT_MAX_BODY = 64 * 1024 * 1024
#: Limits on the status line and headers: real engines send a dozen headers in under 2 KiB.
MAX_HEADERS = 256
MAX_HEADER_BYTES = 64 * 1024
#: Events kept per stream (~130 bytes each): 64 MiB of empty events would be 9 million.
MAX_EVENTS = 500_000
_USER_AGENT = f"pytest-vllm-conformance/{__version__}"
perf_counter = time.perf_counter


class _Exchange(asyncio.Protocol):
    """Writes one request, parses one response; resolves ``done`` when it is whole."""

    def __init__(
        self,
        payload: bytes,
        timings: Timings,
        max_body: int,
        sse: SSEDecoder | None,
        loop: asyncio.AbstractEventLoop,
        abort_after: int | None = None,
    ) -> None:
        self.payload = payload
        self.timings = timings
        self.max_body = max_body
        self.sse = sse
        self.done: asyncio.Future[None] = loop.create_future()
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: dict[str, str] = {}
        self._header_values: dict[str, list[str]] = {}
        self.header_count = 0
        self.head_bytes = 0  # bytes read before the headers were complete
        self.body = bytearray()
        self.status = 0
        self.now = 0.0
        self.headers_complete = False
        self.interim = False
        self.abort_after = abort_after
        self.aborted = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.timings.connected = self.timings.sent = sent = perf_counter()
        # Stamped before the write: a process descheduled inside it used to stamp "sent"
        # after the whole answer had arrived, and report a 0.3 ms TTFT (issue 15).
        transport.write(self.payload)
        self.timings.write_s = perf_counter() - sent
        self.timings.write_pending = transport.get_write_buffer_size()

    def data_received(self, data: bytes) -> None:
        self.now = now = perf_counter()
        if not self.timings.first_byte:
            self.timings.first_byte = now
        if not self.headers_complete:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # not an HttpParserError: asyncio would log it
            self._fail(_switched(self.parser.get_status_code()))
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(f"the server sent invalid HTTP: {exc}"))
        if (
            not self.headers_complete
            and self.head_bytes > MAX_HEADER_BYTES
            and (not self.done.done())
        ):
            self._fail(
                HeadersTooLarge(f"the status line and headers grew past {MAX_HEADER_BYTES} bytes")
            )

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
        """Collect values per name, joined once at the end.

        Joining each repeat onto the string so far copied it again every time: 50,000
        headers of one name cost quadratic time inside one read callback.
        """
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            if self.header_count == MAX_HEADERS + 1:
                self._fail(HeadersTooLarge(f"the server sent more than {MAX_HEADERS} headers"))
            return
        key = name.decode("latin-1").lower()
        self._header_values.setdefault(key, []).append(value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim: 100 Continue, 103 Early Hints; 101 switches away
            if status == 101:
                self._fail(_switched(status))
            self.interim = True
            self._header_values, self.header_count = {}, 0
            return
        self.headers = {k: ", ".join(v) for k, v in self._header_values.items()}
        self.status = status
        self.headers_complete = True
        self.timings.headers = self.now
        announced = self.headers.get("content-length", "")
        if announced.isdigit() and int(announced) > self.max_body:
            self._fail(
                BodyTooLarge(
                    f"the response body would grow past {self.max_body} bytes "
                    f"(Content-Length: {int(announced)})"
                )
            )

    def on_body(self, body: bytes) -> None:
        if self.done.done() and not self.aborted:
            return  # failed already: the rest of this read is not kept
        if len(self.body) + len(body) > self.max_body:
            self._fail(BodyTooLarge(f"the response body grew past {self.max_body} bytes"))
            return
        self.body += body
        if self.sse is not None:
            self.sse.feed(body, self.now)
            if len(self.sse.events) > MAX_EVENTS:
                self._fail(BodyTooLarge(f"the stream sent more than {MAX_EVENTS} events"))
                return
            if self.abort_after is not None and len(self.sse.events) >= self.abort_after:
                self.aborted = True  # the caller walks away: close as a dropped client would
                self.timings.done = self.now
                if not self.done.done():
                    self.done.set_result(None)
                self._close()

    def on_message_complete(self) -> None:
        if self.interim:  # the final answer follows on the same connection
            self.interim = False
            return
        self.timings.done = self.now or perf_counter()
        if self.sse is not None:
            self.sse.close()
        if not self.done.done():
            self.done.set_result(None)
        self._close()

    def _framed(self) -> bool:
        return "content-length" in self.headers or "chunked" in self.headers.get(
            "transfer-encoding", ""
        )

    def _fail(self, exc: ClientError) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class AsyncClient:
    """The one client every suite uses: JSON requests and timed SSE streams."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret | None = None,
        timeout: float = 60.0,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
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

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        stream: bool = False,
        timeout: float | None = None,
        base_url: str | None = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        abort_after: int | None = None,
    ) -> Response:
        """Send one request; raise a :class:`ClientError` subclass with a ``curl`` line on failure.

        ``raw`` sends bytes as they are (for malformed-JSON tests); ``auth=False`` leaves the
        key out; ``base_url`` sends to another server with the same key and limits;
        ``abort_after`` closes a stream after that many events, as a client that walks away.
        """
        timings = Timings(scheduled=perf_counter())
        url = (base_url or self.base_url).rstrip("/") + path
        parts = urlsplit(url)
        data = (
            raw
            if raw is not None
            else (json.dumps(body, separators=(",", ":")).encode() if body is not None else None)
        )
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
                        lambda: proto,
                        parts.hostname or "",
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
            got = (
                f"; {len(sse.events)} events arrived but the stream never ended"
                if (sse and sse.events)
                else ""
            )
            exc_t = RequestTimeout(
                f"{method} {url}: no complete answer within {limit:g} s{got}",
                self._redact(record.curl()),
            )
            exc_t.reason = f"no complete answer within {limit:g} s{got}"
            raise exc_t from None
        except ClientError as exc:
            exc.message = self._redact(f"{method} {url}: {exc.message}")
            exc.curl = self._redact(record.curl())
            raise
        except asyncio.CancelledError:  # the caller gave up (an early verdict): free the socket
            proto._close()
            raise
        return Response(
            record,
            proto.status,
            proto.headers,
            bytes(proto.body),
            timings,
            sse.events if sse else [],
            sse.problems if sse else [],
            sse.done_seen if sse else False,
            proto.aborted,
        )

    def _payload(
        self,
        method: str,
        parts: Any,
        data: bytes | None,
        stream: bool,
        send_auth: bool,
        extra: dict[str, str] | None,
    ) -> bytes:
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


def _switched(status: int) -> MalformedResponse:
    return MalformedResponse(
        f"the server answered HTTP {status} and switched protocols "
        "(Upgrade); an OpenAI API answer is a plain HTTP response"
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
