"""Structured outputs: chat ``response_format`` (json_schema, json_object), streamed or not.

Each request kind is sent once per module and shared by its tests. The schema is bounded
(a boolean and an enum, both required, no other property), so a greedy answer that follows
it closes in a few tokens and ``max_tokens`` is generous: running out of tokens is then a
finding of its own (see :mod:`pytest_vllm_conformance.checks.structured`).

Capabilities are probed, not assumed: a server that answers a ``response_format`` request
with 501, or with a 4xx whose message says the feature is unsupported, skips these tests
with "not supported: <its message>", provided the message names the feature
(response_format, json_schema, grammar, guided or structured decoding): any other refusal
is a failure. A 200 whose answer is plain text is a failure ("response_format ignored"):
the user was told nothing and got no JSON. So is a refusal of the harmless question.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import streaming, structured, values
from pytest_vllm_conformance.client import Client, ClientError, Response
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.target.capabilities import not_supported
from pytest_vllm_conformance.workload import shapes

pytestmark = pytest.mark.structured_outputs
CHAT = "/v1/chat/completions"
#: Bounded: every value is a boolean or an enum member, so the answer must close quickly.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "colour": {"type": "string", "enum": ["red", "green", "blue"]},
    },
    "required": ["ok", "colour"],
    "additionalProperties": False,
}
FORMATS: dict[str, dict[str, Any]] = {
    "json_schema": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA},
    },
    "json_object": {"type": "json_object"},
}
#: json_schema closes in ~30 tokens (vLLM's tiny model spends one per JSON character);
#: json_object's values are free text (SmolLM2 on llama.cpp wrote a ~100-token object).
MAX_TOKENS = {"json_schema": 96, "json_object": 256}
#: OpenAI refuses json_object unless a message says "JSON".
MESSAGES = [
    {"role": "system", "content": "You answer in JSON only."},
    {"role": "user", "content": "Is grass green, and which colour is the sky? Reply in JSON."},
]
KINDS = ["json_schema", "json_schema-stream", "json_object", "json_object-stream"]
#: What a server says when it does not serve a feature (vLLM: "... requires --flag ...").
UNSUPPORTED = re.compile(
    r"not (?:supported|implemented|enabled|available)|unsupported|does not support|"
    r"doesn't support|requires? --",
    re.IGNORECASE,
)
#: ...and the feature it names must be this one: a refusal about another field is a failure.
ABOUT_FORMAT = re.compile(
    r"response_format|json_schema|json_object|grammar|guided|structured", re.IGNORECASE
)


def _body(model: str, kind: str) -> dict[str, Any]:
    fmt = kind.removesuffix("-stream").removesuffix("-again")
    extra: dict[str, Any] = {}
    if kind.endswith("-stream"):
        extra = {"stream": True, "stream_options": {"include_usage": True}}
    return shapes.chat(
        model,
        messages=MESSAGES,
        max_tokens=MAX_TOKENS[fmt],
        seed=1,
        response_format=FORMATS[fmt],
        **extra,
    )


def _not_supported(r: Response) -> str | None:
    """The server's own words when it says it does not serve ``response_format``: a 501, or
    a 4xx saying "not supported" (or alike), each naming the feature (response_format,
    json_schema, json_object, grammar, guided or structured decoding). Any other refusal
    of this valid request is a failure."""
    message = r.error_message()
    if not ABOUT_FORMAT.search(message):
        return None
    if r.status == 501 or (400 <= r.status < 500 and UNSUPPORTED.search(message)):
        return f"HTTP {r.status}: {message}"
    return None


@pytest.fixture(scope="module")
def answer_of(vllm_client: Client, vllm_model: str) -> Callable[[str], Response]:
    """Each request kind is sent once per module; its failure or skip is shared too."""
    cache: dict[str, Response | BaseException] = {}

    def get(kind: str) -> Response:
        if kind not in cache:
            body = _body(vllm_model, kind)
            try:
                send = vllm_client.stream if body.get("stream") else vllm_client.post
                r = send(CHAT, body)
                if (evidence := _not_supported(r)) is not None:
                    not_supported("structured outputs", evidence)
                title = f"POST {CHAT} with response_format {body['response_format']['type']} failed"
                checks.request_succeeded(r, checks.Status(title=title))
            except (ClientError, CheckFailure, pytest.skip.Exception) as exc:
                cache[kind] = exc
                raise
            cache[kind] = r
        got = cache[kind]
        if isinstance(got, BaseException):
            raise got.with_traceback(None)
        return got

    return get


@dataclass(frozen=True)
class Received:
    """Choice 0 as the user received it, non-streamed or assembled from the stream."""

    message: dict[str, Any]
    finish_reason: str | None
    completion_tokens: int | None
    path: str  # of the message: $.choices[0].message, or .delta for a stream
    curl: str

    @property
    def content_path(self) -> str:
        return f"{self.path}.content" + (" (concatenated)" if self.path.endswith("delta") else "")


def _received(r: Response) -> Received:
    if r.request.json_body().get("stream"):
        got = structured.assemble(streaming.data_lines_are_json(r), r.curl)
        return Received(
            got.message,
            got.finish_reason,
            got.completion_tokens,
            "$.choices[0].delta",
            r.curl,
        )
    body = checks.json_object(r, checks.Titled(title=f"POST {CHAT} is not a JSON object"))
    choice = values.element(values.choices(body, r.curl), 0, dict, "$.choices", r.curl)
    return Received(
        values.field(choice, "message", dict, "$.choices[0]", r.curl),
        values.maybe_field(choice, "finish_reason", str, "$.choices[0]", r.curl),
        values.usage_count(body, "completion_tokens", r.curl),
        "$.choices[0].message",
        r.curl,
    )


def _json(got: Received, kind: str) -> Any:
    """The JSON value of the answer (judged by ``json_answer``); a refusal of the suite's
    harmless question is a failure of its own (``not_refused``), not a skip."""
    structured.not_refused(got.message, values.At(path=got.path, curl=got.curl))
    content = values.maybe_field(got.message, "content", str, got.path, got.curl)
    return structured.json_answer(
        content or "",
        structured.Answer(
            finish_reason=got.finish_reason,
            completion_tokens=got.completion_tokens,
            max_tokens=MAX_TOKENS[kind.split("-")[0]],
            path=got.content_path,
            curl=got.curl,
        ),
    )


@pytest.mark.parametrize("kind", ["json_schema", "json_schema-stream"])
def test_json_schema_answer_parses_and_validates(
    answer_of: Callable[[str], Response], kind: str
) -> None:
    got = _received(answer_of(kind))
    structured.matches_json_schema(
        _json(got, kind),
        structured.JsonSchema(schema=SCHEMA, path=got.content_path, curl=got.curl),
    )


@pytest.mark.parametrize("kind", ["json_object", "json_object-stream"])
def test_json_object_answer_is_a_json_object(
    answer_of: Callable[[str], Response], kind: str
) -> None:
    got = _received(answer_of(kind))
    structured.is_json_object(_json(got, kind), values.At(path=got.content_path, curl=got.curl))


@pytest.mark.parametrize("fmt", ["json_schema", "json_object"])
def test_streamed_json_equals_the_non_streamed_json(
    answer_of: Callable[[str], Response], fmt: str
) -> None:
    """Compared as parsed values, and only where the server is deterministic for this
    request: a second identical non-streamed request must give the same value first (a
    server whose greedy answers vary is the determinism suite's finding, not this one's)."""
    plain = _json(_received(answer_of(fmt)), fmt)
    if _json(_received(answer_of(f"{fmt}-again")), fmt) != plain:
        pytest.skip(
            "two identical greedy requests gave different JSON: streamed and non-streamed "
            "answers cannot be compared (the determinism suite judges this server)"
        )
    got = _received(answer_of(f"{fmt}-stream"))
    structured.same_json(_json(got, fmt), structured.Reference(value=plain, curl=got.curl))


@pytest.mark.parametrize("kind", KINDS)
def test_refusal_is_null_or_replaces_the_content(
    answer_of: Callable[[str], Response], kind: str
) -> None:
    got = _received(answer_of(kind))
    structured.refusal_as_documented(got.message, values.At(path=got.path, curl=got.curl))
