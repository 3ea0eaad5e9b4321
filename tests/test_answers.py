"""The answer bundle judges what each suite judged before the redesign (checks/answers.py).

The compliance suite asks for finish reasons and names the full URL; the generated suite
does neither, and alone fails a stream that carried no chunk.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_vllm_conformance.checks import answers, semantics, streaming
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.client.records import RequestRecord, Timings
from pytest_vllm_conformance.client.sse import SSEEvent
from pytest_vllm_conformance.failures import CheckFailure

URL = "http://h/v1/completions"
ANSWER: dict[str, Any] = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "text": "hi", "logprobs": None, "finish_reason": None}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _response(body: bytes, events: tuple[bytes, ...] = ()) -> Response:
    return Response(
        RequestRecord("POST", URL, b"{}", stream=bool(events)),
        200,
        {"content-type": "text/event-stream" if events else "application/json"},
        body,
        Timings(sent=1.0, done=2.0),
        events=[SSEEvent(data=e, t=1.5) for e in events],
        done_seen=bool(events),
    )


def _asked(
    stream: bool = False, finish_reasons: bool = False, some_chunk: bool = False
) -> answers.Asked:
    request: dict[str, Any] = {"model": "m", "prompt": "p", "max_tokens": 2}
    if stream:
        request |= {"stream": True, "stream_options": {"include_usage": True}}
    return answers.Asked(
        request=request,
        root="CreateCompletionResponse",
        chunk_root="CreateCompletionResponse",
        profile="vllm",
        title="/v1/completions is not a JSON object",
        finish_reasons=finish_reasons,
        some_chunk=some_chunk,
    )


def test_a_body_that_is_not_an_object_carries_the_callers_title() -> None:
    with pytest.raises(CheckFailure) as failure:
        answers.answer_conforms(_response(b"[1]"), _asked())
    assert failure.value.title == "/v1/completions is not a JSON object"


@pytest.mark.parametrize("asked", [False, True])
def test_finish_reasons_are_judged_only_where_asked(asked: bool) -> None:
    r = _response(json.dumps(ANSWER).encode())
    if not asked:
        answers.answer_conforms(r, _asked(finish_reasons=False))
        return
    with pytest.raises(CheckFailure) as failure:
        answers.answer_conforms(r, _asked(finish_reasons=True))
    assert failure.value.title == semantics.NO_FINISH_REASON.title


@pytest.mark.parametrize("asked", [False, True])
def test_a_stream_without_chunks_fails_only_where_asked(asked: bool) -> None:
    r = _response(b"", (b"[DONE]",))
    if not asked:
        answers.answer_conforms(r, _asked(stream=True, some_chunk=False))
        return
    with pytest.raises(CheckFailure) as failure:
        answers.answer_conforms(r, _asked(stream=True, some_chunk=True))
    assert failure.value.title == streaming.NO_CHUNK.title
