"""Turn a finished SSE response into typed, timed events (after the stream, off the hot path)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.client.errors import MalformedStream
from pytest_vllm_conformance.client.records import Response, loads
from pytest_vllm_conformance.client.sse import DONE, SSEEvent


class EventKind(enum.Enum):
    STARTED = "started"  # request written to the socket
    TOKEN = "token"  # a chunk carrying generated text or token ids
    USAGE = "usage"  # a chunk carrying usage (or server metrics)
    END = "end"  # a choice finished; ``finish_reason`` set
    ERROR = "error"  # an in-stream error object


@dataclass(frozen=True, slots=True)
class StreamEvent:
    kind: EventKind
    t: float
    index: int = 0
    text: str = ""
    token_ids: tuple[int, ...] = ()
    finish_reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def timeline(response: Response) -> list[StreamEvent]:
    """Events in arrival order; completions (``text``) and chat (``delta.content``) alike.

    A chunk whose fields have the wrong type (``choices`` not a list, ``text`` a number,
    ``token_ids`` not integers) is a :class:`MalformedStream`, never a raw TypeError."""
    out = [StreamEvent(EventKind.STARTED, response.timings.sent)]
    chunks = response.chunks()
    times = [ev.t for ev in response.events if ev.data.strip() != DONE]
    for n, (t, chunk) in enumerate(zip(times, chunks, strict=True)):
        if "error" in chunk:
            out.append(StreamEvent(EventKind.ERROR, t, data=chunk))
            continue
        for choice in _list(response, n, chunk, "choices"):
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = (
                choice.get("text")
                if "text" in choice
                else (delta.get("content") if isinstance(delta, dict) else None)
            )
            ids = choice.get("token_ids") or ()
            index = choice.get("index", 0)
            finish = choice.get("finish_reason")
            if not (
                isinstance(text, str | None)
                and isinstance(index, int)
                and isinstance(ids, list | tuple)
                and isinstance(finish, str | None)
                and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            ):
                raise _wrong(
                    response,
                    n,
                    "a choice with string text, integer index and token_ids, string finish_reason",
                    choice,
                )
            if text or ids:
                out.append(
                    StreamEvent(EventKind.TOKEN, t, index, text or "", tuple(ids), data=chunk)
                )
            if finish is not None:
                out.append(StreamEvent(EventKind.END, t, index, finish_reason=finish, data=chunk))
        if chunk.get("usage") or chunk.get("metrics"):
            out.append(StreamEvent(EventKind.USAGE, t, data=chunk))
    return out


def _list(response: Response, n: int, chunk: dict[str, Any], key: str) -> list[Any]:
    value = chunk.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong(response, n, f"{key} as a list", value)
    return value


def _wrong(response: Response, n: int, expected: str, value: Any) -> MalformedStream:
    shown = repr(value)
    return MalformedStream(
        f"SSE chunk {n} from {response.request.url} has the wrong shape: "
        f"expected {expected}, received {shown[:120]}",
        response.curl,
    )


def stream_text(response: Response, index: int = 0) -> str:
    """The concatenated text of one choice of a finished stream."""
    return "".join(
        e.text for e in timeline(response) if e.kind is EventKind.TOKEN and e.index == index
    )


def text_times(events: Sequence[SSEEvent]) -> tuple[list[float], int | None, str]:
    """(arrival times of chunks with generated text, usage's completion_tokens, problem).

    The measuring path's lean reading of a finished stream, shared by the latency suite and
    the locustfile: it runs once per chunk of every measured request, and building typed
    events with :func:`timeline` costs twice as much. Text is completions' ``text`` or chat's
    ``delta.content`` / ``delta.reasoning_content``; the problem is "" for a sound stream."""
    times: list[float] = []
    tokens = None
    for ev in events:
        if ev.data.strip() == DONE:
            continue
        try:
            chunk = loads(ev.data)
        except ValueError:
            return [], None, "a streamed data: line is not JSON"
        if not isinstance(chunk, dict):
            return [], None, "a streamed data: line is not a JSON object"
        if "error" in chunk:
            err = chunk["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            return [], None, f"error inside the stream: {str(message)[:300]}"
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            return [], None, f"a streamed chunk's choices is {str(choices)[:40]!r}, not a list"
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") if "text" not in choice else None
            if choice.get("text") or (
                isinstance(delta, dict) and (delta.get("content") or delta.get("reasoning_content"))
            ):
                times.append(ev.t)
                break
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            tokens = usage["completion_tokens"]
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
                return [], None, f"usage.completion_tokens is {str(tokens)[:40]!r}, not a count"
    if not times:
        return [], None, "the stream carried no text"
    return times, tokens, ""
