"""Structured outputs (chat ``response_format``): the answer is the JSON that was asked for.

A user who sends ``response_format`` parses ``message.content`` as JSON straight away, so
every check here judges that text as the user receives it (streamed: the concatenated
``delta.content``). What can go wrong, each its own verdict so a report says which:

* the server ignored ``response_format`` (plain text, not even an attempt at JSON);
* the answer ran out of tokens (``finish_reason: "length"``) before the JSON closed: a
  truncation, reported as such rather than as "invalid JSON" (OpenAI documents that a
  ``length`` answer may be cut short; a bounded schema that cannot finish in the budget
  points at free whitespace in the grammar);
* the answer claims to be complete (``stop``) but is not valid JSON;
* ``finish_reason`` contradicts the answer (``length`` well under ``max_tokens``, or a
  reason that is neither ``stop`` nor ``length``);
* valid JSON that violates the ``json_schema`` (jsonschema, imported lazily), or a
  ``json_object`` answer that is not an object;
* a refusal that is not as the spec describes (a string, with no content beside it);
* a refusal of the suite's harmless question (a server that refuses every ``response_format``
  request would otherwise pass by skipping every JSON test);
* a stream whose deltas assemble into another JSON value than the non-streamed answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.client.records import loads
from pytest_vllm_conformance.failures import Severity

IGNORED = Verdict("response_format ignored: the answer is not JSON at all", Severity.HIGH)
TRUNCATED = Verdict(
    "Structured answer cut off by max_tokens before its JSON closed", Severity.MEDIUM
)
NOT_JSON = Verdict("Structured answer is not valid JSON", Severity.HIGH)
FINISH = Verdict("finish_reason contradicts the structured answer", Severity.MEDIUM)
SCHEMA = Verdict("Structured answer violates its json_schema", Severity.HIGH)
NOT_OBJECT = Verdict("json_object answer is not a JSON object", Severity.HIGH)
REFUSAL_WITH_CONTENT = Verdict("Refusal comes with content", Severity.MEDIUM)
REFUSED = Verdict("A benign structured-output request was refused", Severity.MEDIUM)
STREAM_DIFFERS = Verdict(
    "Streamed structured answer differs from the non-streamed one", Severity.MEDIUM
)
_EXCERPT = 120


@dataclass(frozen=True, kw_only=True)
class Answer(Context):
    """How the answer ended: its ``finish_reason``, the completion tokens it used (None when
    the server did not say) and the ``max_tokens`` asked for; ``path`` names the text."""

    finish_reason: str | None
    completion_tokens: int | None
    max_tokens: int
    path: str = "$.choices[0].message.content"


@dataclass(frozen=True, kw_only=True)
class JsonSchema(Context):
    """The ``json_schema.schema`` the request sent; ``path`` names the answer's text."""

    schema: Mapping[str, Any]
    path: str = "$.choices[0].message.content"


@dataclass(frozen=True, kw_only=True)
class Reference(Context):
    """The value the non-streamed answer parsed to."""

    value: Any


def _excerpt(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= _EXCERPT else f"{shown[: _EXCERPT - 3]}... ({len(text)} chars)"


def parse(text: str) -> Any:
    """Strict JSON (no NaN or Infinity, which Python's json reads), or ValueError."""
    return loads(text, strict=True)


@check(IGNORED, TRUNCATED, NOT_JSON, FINISH)
def json_answer(text: str, ctx: Answer) -> Any:
    """The answer text is one JSON value and ``finish_reason`` agrees with it: ``stop`` for
    a complete answer, ``length`` only when the answer used all of ``max_tokens``; returns
    the parsed value. Unparseable text is told apart: no attempt at JSON (ignored), cut off
    by ``length`` (truncated), or broken though the server says it stopped (not JSON)."""
    finish, where = ctx.finish_reason, ctx.path
    said = f"finish_reason {finish!r}"
    try:
        value = parse(text)
    except ValueError as exc:
        start = text.lstrip()[:1]
        if finish == "length" and (start in ("{", "[") or not start):
            raise TRUNCATED.failure(
                path=where,
                expected=f"JSON that closes within max_tokens={ctx.max_tokens}",
                received=f"{said} after {_excerpt(text)}",
                curl=ctx.curl,
                detail="the answer ran out of tokens before its JSON closed (the suite's "
                "schema is bounded and fits in a few dozen tokens); free whitespace or "
                "endless values allowed by the grammar are the usual cause",
            ) from None
        if start not in ("{", "["):
            raise IGNORED.failure(
                path=where,
                expected="a JSON answer, as response_format asked",
                received=f"{said}: {_excerpt(text)}",
                curl=ctx.curl,
            ) from None
        raise NOT_JSON.failure(
            path=where,
            expected="valid JSON",
            received=f"{said}: {_excerpt(text)} ({str(exc)[:80]})",
            curl=ctx.curl,
            detail="the server says the answer is complete, but a JSON parser rejects it",
        ) from None
    if finish not in ("stop", "length"):
        raise FINISH.failure(
            path=where.rsplit(".", 2)[0] + ".finish_reason",
            expected="'stop' for a complete JSON answer",
            received=repr(finish),
            curl=ctx.curl,
        )
    used = ctx.completion_tokens
    if finish == "length" and used is not None and used < ctx.max_tokens:
        raise FINISH.failure(
            path=where.rsplit(".", 2)[0] + ".finish_reason",
            expected=f"'stop': the answer used {used} of max_tokens={ctx.max_tokens}",
            received="'length'",
            curl=ctx.curl,
        )
    return value


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


@check(SCHEMA)
def matches_json_schema(value: Any, ctx: JsonSchema) -> None:
    """The parsed answer is valid against the ``json_schema`` the request sent."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(dict(ctx.schema)).iter_errors(value))
    if error is not None:
        raise SCHEMA.failure(
            path=f"{ctx.path}, at {_json_path(error.absolute_path)} of its JSON",
            expected=f"valid against the schema ({error.validator}: "
            f"{json.dumps(error.validator_value)[:80]})",
            received=f"{error.message[:160]}",
            curl=ctx.curl,
        )


@check(NOT_OBJECT)
def is_json_object(value: Any, ctx: values.At) -> dict[str, Any]:
    """A ``json_object`` answer is a JSON object (not an array, string or number)."""
    if not isinstance(value, dict):
        raise NOT_OBJECT.failure(
            path=ctx.path,
            expected="a JSON object",
            received=values.describe(value),
            curl=ctx.curl,
        )
    return value


@check(values.SHAPE, REFUSAL_WITH_CONTENT)
def refusal_as_documented(message: Any, ctx: values.At) -> None:
    """``refusal`` is absent, null or a string; when the model refuses, the refusal replaces
    the answer: ``content`` is null (absent or empty is taken as no content too)."""
    refusal = values.maybe_field(message, "refusal", str, ctx.path, ctx.curl)
    content = values.maybe_field(message, "content", str, ctx.path, ctx.curl)
    if refusal and content:
        raise REFUSAL_WITH_CONTENT.failure(
            path=f"{ctx.path}.content",
            expected="null beside a refusal",
            received=f"refusal {_excerpt(refusal)} and content {_excerpt(content)}",
            curl=ctx.curl,
        )


@check(values.SHAPE, REFUSED)
def not_refused(message: Any, ctx: values.At) -> None:
    """The suite's question ("Is grass green, and which colour is the sky?") is harmless:
    an answer that is a refusal and no content gave the user no JSON, and is a failure."""
    refusal = values.maybe_field(message, "refusal", str, ctx.path, ctx.curl)
    content = values.maybe_field(message, "content", str, ctx.path, ctx.curl)
    if refusal and not content:
        raise REFUSED.failure(
            path=f"{ctx.path}.refusal",
            expected="a JSON answer to a harmless question (refusal null)",
            received=f"refusal {_excerpt(refusal)} and no content",
            curl=ctx.curl,
        )


@check(STREAM_DIFFERS)
def same_json(value: Any, ctx: Reference) -> None:
    """The streamed answer parses to the same JSON value as the non-streamed one (values
    compared, so whitespace and key order do not count)."""
    if value != ctx.value:
        raise STREAM_DIFFERS.failure(
            path="delta.content (concatenated)",
            expected=_excerpt(json.dumps(ctx.value)),
            received=_excerpt(json.dumps(value)),
            curl=ctx.curl,
        )


@dataclass(frozen=True)
class Assembled:
    """What a chat stream's choice 0 told the user, put together."""

    message: dict[str, Any]  # {"content": ..., "refusal": ...}: content None when no delta had it
    finish_reason: str | None
    completion_tokens: int | None


def assemble(chunks: list[dict[str, Any]], curl: str = "") -> Assembled:
    """Choice 0 of a chat stream: its ``delta.content`` and ``delta.refusal`` concatenated,
    its last ``finish_reason``, and the usage chunk's ``completion_tokens`` (every value read
    through the typed accessors, so a wrong shape is a titled failure)."""
    content: list[str] = []
    refusal: list[str] = []
    finish: str | None = None
    for chunk in chunks:
        listed = values.maybe_field(chunk, "choices", list, "$", curl) or []
        for k in range(len(listed)):
            choice = values.element(listed, k, dict, "$.choices", curl)
            if (values.maybe_field(choice, "index", int, f"$.choices[{k}]", curl) or 0) != 0:
                continue
            delta = values.maybe_field(choice, "delta", dict, f"$.choices[{k}]", curl) or {}
            where = f"$.choices[{k}].delta"
            if (piece := values.maybe_field(delta, "content", str, where, curl)) is not None:
                content.append(piece)
            if (said := values.maybe_field(delta, "refusal", str, where, curl)) is not None:
                refusal.append(said)
            finish = (
                values.maybe_field(choice, "finish_reason", str, f"$.choices[{k}]", curl) or finish
            )
    counts = [values.usage_count(c, "completion_tokens", curl) for c in chunks]
    used = next((n for n in reversed(counts) if n is not None), None)
    message = {
        "content": "".join(content) if content else None,
        "refusal": "".join(refusal) if refusal else None,
    }
    return Assembled(message, finish, used)
