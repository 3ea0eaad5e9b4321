"""The structured-outputs suite beyond its bite rows: the "not supported" skip, the reading of
hostile answers, and the fault server's clean answers for other schemas (issue 17)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vllm_conformance.checks import structured, values
from pytest_vllm_conformance.failures import CheckFailure
from tests.fault_server import FaultServer
from tests.fault_structured import value_for

SUITE = "test_structured_outputs.py"


def test_a_server_that_says_it_does_not_serve_response_format_skips(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"structured_unsupported"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", SUITE, "-rs", "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == 10 and "failed" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*not supported: structured outputs: HTTP 400: response_format is not supported*"]
    )


def _answer(finish: str | None, used: int | None = None) -> structured.Answer:
    return structured.Answer(finish_reason=finish, completion_tokens=used, max_tokens=64)


@pytest.mark.parametrize(
    ("text", "finish", "title"),
    [
        ("NaN", "stop", structured.IGNORED.title),  # Python's json reads NaN; JSON does not
        ('{"a": NaN}', "stop", structured.NOT_JSON.title),
        ("[" * 100_000, "stop", structured.NOT_JSON.title),  # too deep to read: no RecursionError
        ("   ", "length", structured.TRUNCATED.title),  # whitespace until max_tokens
        ("", "stop", structured.IGNORED.title),
        ("Sure! Here is JSON:", "length", structured.IGNORED.title),
        ('{"ok": true}', None, structured.FINISH.title),
        ('{"ok": true}', "tool_calls", structured.FINISH.title),
    ],
)
def test_the_answer_text_gets_the_verdict_that_says_what_went_wrong(
    text: str, finish: str | None, title: str
) -> None:
    with pytest.raises(CheckFailure) as caught:
        structured.json_answer(text, _answer(finish))
    assert caught.value.title == title


def test_length_is_fine_when_the_answer_used_every_token() -> None:
    assert structured.json_answer('{"ok": true}', _answer("length", 64)) == {"ok": True}
    assert structured.json_answer(' {"ok": true} ', _answer("stop", 9)) == {"ok": True}


@pytest.mark.parametrize(
    "message",
    [{"content": None, "refusal": "No."}, {"content": "", "refusal": "No."}, {"content": "{}"}],
)
def test_a_refusal_without_content_is_as_documented(message: dict[str, Any]) -> None:
    structured.refusal_as_documented(message, values.At(path="$.choices[0].message"))


def test_a_refusal_of_the_wrong_type_is_the_wrong_shape() -> None:
    with pytest.raises(CheckFailure) as caught:
        structured.refusal_as_documented(
            {"content": None, "refusal": ["no"]}, values.At(path="$.choices[0].message")
        )
    assert caught.value.title == values.WRONG_SHAPE


def test_a_stream_assembles_with_its_refusal_and_usage() -> None:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": '{"a"'}}]},
        {"choices": [{"index": 1, "delta": {"content": "other choice"}}]},
        {"choices": [{"index": 0, "delta": {"content": ":1}"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    ]
    got = structured.assemble(chunks)
    assert got.message == {"content": '{"a":1}', "refusal": None}
    assert (got.finish_reason, got.completion_tokens) == ("stop", 2)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}},
        {"type": "object", "properties": {"s": {"type": "string", "minLength": 5}}},
        {"type": "array", "items": {"const": 7}, "minItems": 2},
        {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
        {"type": ["null", "number"], "minimum": 0},
    ],
)
def test_the_clean_fault_server_answers_valid_json_for_bounded_schemas(
    schema: dict[str, Any],
) -> None:
    for other in (False, True):
        structured.matches_json_schema(
            value_for(schema, other), structured.JsonSchema(schema=schema)
        )


# review: issue 17 (findings 8 and 13)
@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ({"content": None, "refusal": "I cannot help with that."}, True),
        ({"content": "", "refusal": "No."}, True),
        ({"content": '{"ok": true}', "refusal": None}, False),
        ({"content": '{"ok": true}'}, False),
        ({"content": '{"ok": true}', "refusal": "No."}, False),  # refusal_as_documented's
    ],
)
def test_a_refusal_of_the_harmless_question_fails(message: dict[str, Any], refused: bool) -> None:
    at = values.At(path="$.choices[0].message")
    if not refused:
        structured.not_refused(message, at)
        return
    with pytest.raises(CheckFailure) as caught:
        structured.not_refused(message, at)
    assert caught.value.title == structured.REFUSED.title


def test_a_refusal_about_another_field_is_a_failure_not_a_skip(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"structured_unrelated_400"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", SUITE, "-rfs", "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 10 and "skipped" not in outcomes, result.stdout.str()
    assert "not supported: structured outputs" not in result.stdout.str()
