"""SSE checks on a finished streamed response (see the streaming suite)."""

from __future__ import annotations

from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.checks.registry import NO_CONTEXT, Context, Verdict, check
from pytest_vllm_conformance.client import EventKind, MalformedStream, Response, timeline
from pytest_vllm_conformance.failures import Severity

NOT_EVENT_STREAM = Verdict("Stream is not text/event-stream", Severity.HIGH)
BAD_FRAMING = Verdict("Malformed SSE framing", Severity.HIGH)
NOT_JSON = Verdict("Streamed data line is not JSON", Severity.HIGH)
NO_DONE = Verdict("Stream does not end with [DONE]", Severity.MEDIUM)
IDS_DIFFER = Verdict("Stream chunks carry different ids", Severity.MEDIUM)
NO_ROLE = Verdict("First chat chunk carries no role", Severity.MEDIUM)
FINISH_EARLY = Verdict("finish_reason not only on the last chunk", Severity.MEDIUM)
USAGE_NOT_LAST = Verdict("Usage chunk missing or not last", Severity.MEDIUM)
USAGE_WITH_CHOICES = Verdict("Usage chunk has choices", Severity.MEDIUM)
NO_CHUNK = Verdict("Stream carried no chunk", Severity.HIGH)
NO_TEXT = Verdict("Stream carried no text", Severity.HIGH)


@check(NOT_EVENT_STREAM)
def content_type_is_event_stream(r: Response, ctx: Context = NO_CONTEXT) -> None:
    """A stream is sent as text/event-stream."""
    if not r.content_type.startswith("text/event-stream"):
        raise NOT_EVENT_STREAM.failure(
            path="headers.content-type",
            expected="text/event-stream",
            received=r.content_type or "none",
            curl=r.curl,
        )


@check(BAD_FRAMING)
def framing_is_clean(r: Response, ctx: Context = NO_CONTEXT) -> None:
    """Every line of the stream is an SSE field, comment or blank line."""
    if r.sse_problems:
        raise BAD_FRAMING.failure(
            expected="well-formed SSE events", received="; ".join(r.sse_problems[:3]), curl=r.curl
        )


@check(NOT_JSON)
def data_lines_are_json(r: Response, ctx: Context = NO_CONTEXT) -> list[dict[str, Any]]:
    """Every ``data:`` payload but [DONE] is a JSON object; returns them."""
    try:
        return r.chunks()
    except MalformedStream as exc:
        raise NOT_JSON.failure(
            expected="one JSON object per event",
            received=exc.message.split(": ", 1)[-1],
            curl=r.curl,
        ) from None


@check(NO_DONE)
def ends_with_done(r: Response, ctx: Context = NO_CONTEXT) -> None:
    """The last event of a stream is ``data: [DONE]``."""
    if not r.done_seen or r.events[-1].data.strip() != b"[DONE]":
        last = r.events[-1].data[:80] if r.events else b"(no event)"
        raise NO_DONE.failure(
            expected="data: [DONE] last", received=f"last event {last!r}", curl=r.curl
        )


def _choices(chunk: dict[str, Any], curl: str) -> list[tuple[int, dict[str, Any]]]:
    """A chunk's (index, choice) pairs, every value read through the typed accessors: a
    wrong type is the titled "Response body has the wrong shape", never an AttributeError.
    Absent or null choices are none; an absent index is 0."""
    listed = values.maybe_field(chunk, "choices", list, "$", curl) or []
    pairs = []
    for k in range(len(listed)):
        choice = values.element(listed, k, dict, "$.choices", curl)
        index = values.maybe_field(choice, "index", int, f"$.choices[{k}]", curl)
        pairs.append((values.count(index or 0, f"$.choices[{k}].index", curl), choice))
    return pairs


@check(IDS_DIFFER)
def one_id(chunks: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> None:
    """Every chunk of a stream carries the same id."""
    ids: list[Any] = []  # ids may be any JSON (unhashable too); four tell the story
    for c in chunks:
        if c.get("id") not in ids:
            ids.append(c.get("id"))
            if len(ids) > 4:
                break
    if len(ids) != 1:
        raise IDS_DIFFER.failure(
            path="$.id",
            expected="one id for the whole stream",
            received=repr(ids[:4]),
            curl=ctx.curl,
        )


@check(NO_ROLE, values.SHAPE)
def first_chat_chunk_has_role(chunks: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> None:
    """The first chat chunk with a choice says the role is 'assistant'."""
    curl = ctx.curl
    empty: list[tuple[int, dict[str, Any]]] = [(0, {})]
    first = next((pairs for c in chunks if (pairs := _choices(c, curl))), empty)
    delta = values.maybe_field(first[0][1], "delta", dict, "$.choices[0]", curl) or {}
    if delta.get("role") != "assistant":
        raise NO_ROLE.failure(
            path="$.choices[0].delta.role",
            expected="'assistant' in the first chunk",
            received=repr(delta)[:80],
            curl=curl,
        )


@check(FINISH_EARLY, values.SHAPE)
def finish_reason_only_on_last(chunks: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> None:
    """Per choice, exactly one chunk sets finish_reason, and it is that choice's last."""
    curl = ctx.curl
    positions: dict[int, list[int]] = {}
    finishing: dict[int, list[int]] = {}
    for pos, chunk in enumerate(chunks):
        for k, (index, choice) in enumerate(_choices(chunk, curl)):
            positions.setdefault(index, []).append(pos)
            if (
                values.maybe_field(choice, "finish_reason", str, f"$.choices[{k}]", curl)
                is not None
            ):
                finishing.setdefault(index, []).append(pos)
    for index, where in positions.items():
        got = finishing.get(index, [])
        if got != [where[-1]]:
            raise FINISH_EARLY.failure(
                path=f"$.choices[{index}].finish_reason",
                expected=f"set once, on chunk {where[-1]}",
                received=f"set on chunks {got}",
                curl=curl,
            )


@check(USAGE_NOT_LAST, USAGE_WITH_CHOICES)
def usage_chunk_shape(chunks: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> None:
    """With include_usage, exactly one last chunk carries usage, with empty choices."""
    with_usage = [i for i, c in enumerate(chunks) if c.get("usage")]
    if len(with_usage) != 1 or with_usage[0] != len(chunks) - 1:
        raise USAGE_NOT_LAST.failure(
            path="$.usage",
            expected="usage on the last chunk only",
            received=f"usage on chunks {with_usage} of {len(chunks)}",
            curl=ctx.curl,
        )
    if chunks[-1].get("choices") != []:
        raise USAGE_WITH_CHOICES.failure(
            path="$.choices",
            expected="[] on the usage chunk",
            received=repr(chunks[-1].get("choices"))[:80],
            curl=ctx.curl,
        )


@check(NOT_EVENT_STREAM, BAD_FRAMING, NOT_JSON, NO_DONE)
def well_formed(r: Response, ctx: Context = NO_CONTEXT) -> list[dict[str, Any]]:
    """The framing checks every stream must pass; returns the parsed chunks."""
    content_type_is_event_stream(r)
    framing_is_clean(r)
    chunks = data_lines_are_json(r)
    ends_with_done(r)
    return chunks


@check(NO_CHUNK)
def some_chunk(chunks: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> None:
    """A stream that ended well carried at least one chunk before [DONE]."""
    if not chunks:
        raise NO_CHUNK.failure(
            expected="data: chunks before [DONE]", received="none", curl=ctx.curl
        )


@check(NO_TEXT)
def first_token_at(r: Response, ctx: Context = NO_CONTEXT) -> float:
    """A stream carries text; returns when its first token arrived (``perf_counter`` s)."""
    first = next((e.t for e in timeline(r) if e.kind is EventKind.TOKEN), None)
    if first is None:
        raise NO_TEXT.failure(
            path="$.choices[*].delta.content",
            expected="at least one chunk with text",
            received=f"{len(r.events)} events without text",
            curl=r.curl,
        )
    return first
