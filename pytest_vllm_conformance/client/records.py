"""What one request sent and what came back, with timestamps and a replayable ``curl`` line."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.client.errors import MalformedResponse, MalformedStream
from pytest_vllm_conformance.client.sse import DONE, SSEEvent

_CURL_BODY_LIMIT = 8192


class TooDeep(ValueError):
    """JSON nested deeper than the parser's recursion allows (a hostile body)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes | str, strict: bool = False) -> Any:
    """``json.loads`` whose failures are all ValueError: a body nested 100,000 levels deep
    raises RecursionError inside the C scanner, which is caught here as :class:`TooDeep`.
    ``strict``: RFC 8259 only, refusing the ``NaN`` and ``Infinity`` Python's json reads."""
    try:
        return json.loads(data, parse_constant=_no_constant) if strict else json.loads(data)
    except RecursionError:
        raise TooDeep("JSON nested too deeply to read") from None


@dataclass(slots=True)
class RequestRecord:
    """A request as sent, minus the credentials; enough to replay it."""

    method: str
    url: str
    body: bytes | None = None
    stream: bool = False
    authorized: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    def json_body(self) -> Any:
        return json.loads(self.body) if self.body else None

    def curl(self) -> str:
        """A shell line that repeats this request; the key is read from $VLLM_API_KEY."""
        parts = ["curl", "-sS"]
        if self.stream:
            parts.append("-N")
        if self.method != ("POST" if self.body is not None else "GET"):
            parts += ["-X", self.method]
        parts.append(shlex.quote(self.url))
        for name, value in self.headers:
            parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.authorized:
            parts += ["-H", '"Authorization: Bearer $VLLM_API_KEY"']
        if self.body is not None:
            text = self.body.decode("utf-8", "replace")
            if len(text) > _CURL_BODY_LIMIT:
                text = text[:_CURL_BODY_LIMIT] + "...(truncated)"
            parts += ["-H", "'Content-Type: application/json'", "--data-raw", shlex.quote(text)]
        return " ".join(parts)


@dataclass(slots=True)
class Timings:
    """Monotonic ``time.perf_counter()`` stamps; 0.0 means it never happened."""

    scheduled: float = 0.0  # the caller asked for the request
    connected: float = 0.0  # TCP (and TLS) connection up
    sent: float = 0.0  # just before the request bytes were handed to the socket
    first_byte: float = 0.0  # first response bytes read
    headers: float = 0.0  # status line and headers parsed
    done: float = 0.0  # body complete
    write_s: float = 0.0  # ``sent`` -> the write call returned (a write that blocked shows here)
    write_pending: int = 0  # bytes the transport could not hand to the socket at once

    @property
    def queue_s(self) -> float:
        """Client-side wait between asking and sending (connection set-up included)."""
        return self.sent - self.scheduled if self.sent else 0.0


@dataclass(slots=True)
class Response:
    """A complete HTTP response."""

    request: RequestRecord
    status: int
    headers: dict[str, str]
    body: bytes
    timings: Timings
    events: list[SSEEvent] = field(default_factory=list)
    sse_problems: list[str] = field(default_factory=list)
    done_seen: bool = False
    aborted: bool = False  # the client closed the stream on purpose (abort_after)

    @property
    def curl(self) -> str:
        return self.request.curl()

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        """The body as JSON, or a :class:`MalformedResponse` naming the request."""
        try:
            return loads(self.body)
        except TooDeep:
            raise MalformedResponse(
                f"{self.request.method} {self.request.url} answered HTTP {self.status} with a "
                f"JSON body nested too deeply to read: {self.body[:60]!r}",
                self.curl,
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedResponse(
                f"{self.request.method} {self.request.url} answered HTTP {self.status} with a "
                f"body that is not JSON ({exc.__class__.__name__}: {exc}): "
                f"{self.body[:120]!r}",
                self.curl,
            ) from None

    def chunks(self) -> list[dict[str, Any]]:
        """Every streamed ``data:`` payload but ``[DONE]``, parsed; non-JSON is a failure."""
        out: list[dict[str, Any]] = []
        for i, ev in enumerate(self.events):
            if ev.data.strip() == DONE:
                continue
            try:
                value = loads(ev.data)
            except (ValueError, UnicodeDecodeError):
                raise MalformedStream(
                    f"SSE event {i} from {self.request.url} is not JSON: {ev.data[:120]!r}",
                    self.curl,
                ) from None
            if not isinstance(value, dict):
                raise MalformedStream(
                    f"SSE event {i} from {self.request.url} is JSON but not an object: "
                    f"{ev.data[:120]!r}",
                    self.curl,
                )
            out.append(value)
        return out

    def error_message(self) -> str:
        """The ``error.message`` of an OpenAI-style error body, else a body excerpt."""
        return error_message(self.body)


def error_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body (or its ``error`` string,
    ``message`` or ``detail``), else a body excerpt; at most 300 characters, not yet made safe
    for output. Shared by the plugin's client and the locustfile."""
    try:
        parsed = loads(body)
        error = parsed.get("error")
        if isinstance(error, dict):
            message = error["message"]
        else:
            said = error if isinstance(error, str) else None
            message = said or parsed.get("message") or parsed.get("detail") or parsed
        return str(message)[:300]
    except (ValueError, AttributeError, KeyError, TypeError, UnicodeDecodeError):
        return body[:300].decode("utf-8", "replace")
