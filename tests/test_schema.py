"""The vendored OpenAI schema: provenance, errata, and what each profile lets through."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pytest_vllm_conformance.schemas import _vendor
from pytest_vllm_conformance.schemas import validate as schema

CHAT = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "logprobs": None,
            "message": {"role": "assistant", "content": "hi", "refusal": None},
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def test_the_vendored_file_is_what_the_extractor_makes() -> None:
    fresh = _vendor.render(_vendor.extract(*_vendor.load_upstream()))
    assert _vendor.OUTPUT.read_text() == fresh, "rerun pytest_vllm_conformance.schemas._vendor"


def test_a_conforming_answer_passes_both_profiles() -> None:
    for profile in schema.PROFILES:
        assert schema.validate("CreateChatCompletionResponse", CHAT, profile) == []


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(CHAT)
    for path, value in changes.items():
        node: Any = body
        *parents, last = path.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[last] = value
    return body


@pytest.mark.parametrize(
    ("body", "openai_fails", "vllm_fails"),
    [
        (_with(stop_reason=None), True, False),  # vLLM extension
        (_with(totally_new=1), True, True),  # an unknown extension
        (_with(usage__completion_tokens_details=None), True, False),  # null-for-absent
        (_with(choices__0__finish_reason="bored"), True, True),  # outside the enum
        (_with(created="yesterday"), True, True),
    ],
)
def test_profiles_differ_only_by_the_named_allowances(
    body: dict[str, Any], openai_fails: bool, vllm_fails: bool
) -> None:
    assert bool(schema.validate("CreateChatCompletionResponse", body, "openai")) is openai_fails
    assert bool(schema.validate("CreateChatCompletionResponse", body, "vllm")) is vllm_fails


def test_integer_error_codes_are_a_vllm_allowance() -> None:
    body = {"error": {"message": "m", "type": "t", "param": None, "code": 404}}
    assert schema.validate("ErrorResponse", body, "vllm") == []
    [v] = schema.validate("ErrorResponse", body, "openai")
    assert (v.path, v.expected, v.received) == ("$.error.code", "type string", "404")


def test_streamed_completion_chunks_may_have_no_finish_reason_yet() -> None:
    chunk = {
        "id": "c",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": "a", "finish_reason": None, "logprobs": None}],
    }
    assert schema.validate("CreateCompletionResponse", chunk, "openai") == []


def test_violations_name_the_path_and_the_closest_branch() -> None:
    body = _with(choices__0__logprobs={"content": []})
    [v] = schema.validate("CreateChatCompletionResponse", body, "openai")
    assert (v.path, v.expected) == ("$.choices[0].logprobs.refusal", "field 'refusal' present")


def test_a_typed_union_member_is_judged_as_the_member_it_names() -> None:
    """An output message with a null ``logprobs`` (vLLM 0.32) is told about its logprobs, not
    about a file search call's ``queries`` (the branch of the union whose type it is not)."""
    item = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": None}],
    }
    event = {"type": "response.output_item.done", "output_index": 0, "sequence_number": 3}
    found = schema.validate("ResponseOutputItemDoneEvent", {**event, "item": item}, "openai")
    assert [(v.path, v.expected) for v in found] == [("$.item.content[0].logprobs", "type array")]
