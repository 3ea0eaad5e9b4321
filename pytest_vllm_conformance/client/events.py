"""Turn a finished SSE response into typed, timed events (after the stream, off the hot path)."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.client.records import Response
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
    """Events in arrival order; completions (``text``) and chat (``delta.content``) alike."""
    out = [StreamEvent(EventKind.STARTED, response.timings.sent)]
    chunks = response.chunks()
    times = [ev.t for ev in response.events if ev.data.strip() != b"[DONE]"]
    for t, chunk in zip(times, chunks, strict=True):
        if "error" in chunk:
            out.append(StreamEvent(EventKind.ERROR, t, data=chunk))
            continue
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = choice.get("text") if "text" in choice else (
                delta.get("content") if isinstance(delta, dict) else None)
            ids = choice.get("token_ids") or ()
            index = choice.get("index", 0)
            if text or ids:
                out.append(StreamEvent(EventKind.TOKEN, t, index, text or "", tuple(ids),
                                       data=chunk))
            if choice.get("finish_reason") is not None:
                out.append(StreamEvent(EventKind.END, t, index,
                                       finish_reason=choice["finish_reason"], data=chunk))
        if chunk.get("usage") or chunk.get("metrics"):
            out.append(StreamEvent(EventKind.USAGE, t, data=chunk))
    return out


def stream_text(response: Response, index: int = 0) -> str:
    """The concatenated text of one choice of a finished stream."""
    return "".join(e.text for e in timeline(response)
                   if e.kind is EventKind.TOKEN and e.index == index)


def text_times(events: Sequence[SSEEvent]) -> tuple[list[float], int | None, str]:
    """(arrival times of chunks with generated text, usage's completion_tokens, problem).

    The measuring path's lean reading of a finished stream, shared by the latency suite and
    the locustfile: it runs once per chunk of every measured request, and building typed
    events with :func:`timeline` costs twice as much. Text is completions' ``text`` or chat's
    ``delta.content`` / ``delta.reasoning_content``; the problem is "" for a sound stream."""
    times: list[float] = []
    tokens = None
    loads = json.loads
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
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") if "text" not in choice else None
            if choice.get("text") or (isinstance(delta, dict) and (
                    delta.get("content") or delta.get("reasoning_content"))):
                times.append(ev.t)
                break
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            tokens = usage["completion_tokens"]
    if not times:
        return [], None, "the stream carried no text"
    return times, tokens, ""
