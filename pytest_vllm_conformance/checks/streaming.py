"""SSE checks on a finished streamed response (see the streaming suite)."""

from __future__ import annotations

from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.client import MalformedStream, Response
from pytest_vllm_conformance.failures import CheckFailure, Severity


def content_type_is_event_stream(r: Response) -> None:
    if not r.content_type.startswith("text/event-stream"):
        raise CheckFailure("Stream is not text/event-stream", path="headers.content-type",
                           expected="text/event-stream", received=r.content_type or "none",
                           curl=r.curl, severity=Severity.HIGH)


def framing_is_clean(r: Response) -> None:
    if r.sse_problems:
        raise CheckFailure("Malformed SSE framing", expected="well-formed SSE events",
                           received="; ".join(r.sse_problems[:3]), curl=r.curl,
                           severity=Severity.HIGH)


def data_lines_are_json(r: Response) -> list[dict[str, Any]]:
    """Every ``data:`` payload but [DONE] is a JSON object; returns them."""
    try:
        return r.chunks()
    except MalformedStream as exc:
        raise CheckFailure("Streamed data line is not JSON", expected="one JSON object per event",
                           received=exc.message.split(": ", 1)[-1], curl=r.curl,
                           severity=Severity.HIGH) from None


def ends_with_done(r: Response) -> None:
    if not r.done_seen or r.events[-1].data.strip() != b"[DONE]":
        last = r.events[-1].data[:80] if r.events else b"(no event)"
        raise CheckFailure("Stream does not end with [DONE]", expected="data: [DONE] last",
                           received=f"last event {last!r}", curl=r.curl, severity=Severity.MEDIUM)


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


def one_id(chunks: list[dict[str, Any]], curl: str = "") -> None:
    ids: list[Any] = []  # ids may be any JSON (unhashable too); four tell the story
    for c in chunks:
        if c.get("id") not in ids:
            ids.append(c.get("id"))
            if len(ids) > 4:
                break
    if len(ids) != 1:
        raise CheckFailure("Stream chunks carry different ids", path="$.id",
                           expected="one id for the whole stream", received=repr(ids[:4]),
                           curl=curl)


def first_chat_chunk_has_role(chunks: list[dict[str, Any]], curl: str = "") -> None:
    empty: list[tuple[int, dict[str, Any]]] = [(0, {})]
    first = next((pairs for c in chunks if (pairs := _choices(c, curl))), empty)
    delta = values.maybe_field(first[0][1], "delta", dict, "$.choices[0]", curl) or {}
    if delta.get("role") != "assistant":
        raise CheckFailure("First chat chunk carries no role", path="$.choices[0].delta.role",
                           expected="'assistant' in the first chunk", received=repr(delta)[:80],
                           curl=curl)


def finish_reason_only_on_last(chunks: list[dict[str, Any]], curl: str = "") -> None:
    """Per choice, exactly one chunk sets finish_reason, and it is that choice's last."""
    positions: dict[int, list[int]] = {}
    finishing: dict[int, list[int]] = {}
    for pos, chunk in enumerate(chunks):
        for k, (index, choice) in enumerate(_choices(chunk, curl)):
            positions.setdefault(index, []).append(pos)
            if values.maybe_field(choice, "finish_reason", str, f"$.choices[{k}]",
                                  curl) is not None:
                finishing.setdefault(index, []).append(pos)
    for index, where in positions.items():
        got = finishing.get(index, [])
        if got != [where[-1]]:
            raise CheckFailure("finish_reason not only on the last chunk",
                               path=f"$.choices[{index}].finish_reason",
                               expected=f"set once, on chunk {where[-1]}",
                               received=f"set on chunks {got}", curl=curl)


def usage_chunk_shape(chunks: list[dict[str, Any]], asked: bool, curl: str = "") -> None:
    """With include_usage, exactly one last chunk carries usage, with empty choices."""
    with_usage = [i for i, c in enumerate(chunks) if c.get("usage")]
    if not asked:
        return
    if len(with_usage) != 1 or with_usage[0] != len(chunks) - 1:
        raise CheckFailure("Usage chunk missing or not last", path="$.usage",
                           expected="usage on the last chunk only",
                           received=f"usage on chunks {with_usage} of {len(chunks)}", curl=curl)
    if chunks[-1].get("choices") != []:
        raise CheckFailure("Usage chunk has choices", path="$.choices",
                           expected="[] on the usage chunk",
                           received=repr(chunks[-1].get("choices"))[:80], curl=curl)


def well_formed(r: Response) -> list[dict[str, Any]]:
    """The framing checks every stream must pass; returns the parsed chunks."""
    content_type_is_event_stream(r)
    framing_is_clean(r)
    chunks = data_lines_are_json(r)
    ends_with_done(r)
    return chunks
