"""Server-Sent Events: framing, ids, roles, finish reasons, the usage chunk, [DONE]."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import streaming
from pytest_vllm_conformance.checks.registry import Context
from pytest_vllm_conformance.client import Client, ClientError, Response
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.workload import shapes

pytestmark = pytest.mark.streaming

STREAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "completions": ("/v1/completions", {}),
    "completions-usage": ("/v1/completions", {"stream_options": {"include_usage": True}}),
    "chat": ("/v1/chat/completions", {}),
    "chat-usage": ("/v1/chat/completions", {"stream_options": {"include_usage": True}}),
    "chat-n-2": ("/v1/chat/completions", {"n": 2, "temperature": 0.8, "seed": 5}),
}
CHAT_STREAMS = [k for k in STREAMS if k.startswith("chat")]


@pytest.fixture(scope="module")
def stream_of(vllm_client: Client, vllm_model: str) -> Callable[[str], Response]:
    """Each kind of stream is requested once per module and shared by its checks.

    A failure is shared too: a stream that stalls costs one --vllm-timeout per kind,
    not one per test (31 of them), and every later test shows the same failure.
    """
    cache: dict[str, Response | Exception] = {}

    def get(kind: str) -> Response:
        if kind not in cache:
            path, extra = STREAMS[kind]
            make = shapes.chat if path.endswith("chat/completions") else shapes.completion
            try:
                r = vllm_client.stream(path, make(vllm_model, stream=True, max_tokens=6, **extra))
                checks.request_succeeded(r, checks.Status(title=f"streamed POST {path} failed"))
            except (ClientError, CheckFailure) as exc:
                cache[kind] = exc
                raise
            cache[kind] = r
        got = cache[kind]
        if isinstance(got, Exception):
            raise got.with_traceback(None)
        return got

    return get


def _chunks(r: Response) -> list[dict[str, Any]]:
    return streaming.data_lines_are_json(r)


@pytest.mark.parametrize("kind", STREAMS)
def test_content_type_is_event_stream(stream_of: Callable[[str], Response], kind: str) -> None:
    streaming.content_type_is_event_stream(stream_of(kind))


@pytest.mark.parametrize("kind", STREAMS)
def test_every_event_is_one_json_chunk(stream_of: Callable[[str], Response], kind: str) -> None:
    r = stream_of(kind)
    streaming.framing_is_clean(r)
    _chunks(r)


@pytest.mark.parametrize("kind", STREAMS)
def test_one_id_across_the_stream(stream_of: Callable[[str], Response], kind: str) -> None:
    r = stream_of(kind)
    streaming.one_id(_chunks(r), Context(curl=r.curl))


@pytest.mark.parametrize("kind", CHAT_STREAMS)
def test_first_chat_chunk_carries_the_role(stream_of: Callable[[str], Response], kind: str) -> None:
    r = stream_of(kind)
    streaming.first_chat_chunk_has_role(_chunks(r), Context(curl=r.curl))


@pytest.mark.parametrize("kind", STREAMS)
def test_finish_reason_only_on_the_last_chunk(
    stream_of: Callable[[str], Response], kind: str
) -> None:
    r = stream_of(kind)
    streaming.finish_reason_only_on_last(_chunks(r), Context(curl=r.curl))


@pytest.mark.parametrize("kind", [k for k in STREAMS if k.endswith("usage")])
def test_usage_chunk_is_last_with_empty_choices(
    stream_of: Callable[[str], Response], kind: str
) -> None:
    r = stream_of(kind)
    streaming.usage_chunk_shape(_chunks(r), Context(curl=r.curl))


@pytest.mark.parametrize("kind", STREAMS)
def test_stream_ends_with_done(stream_of: Callable[[str], Response], kind: str) -> None:
    streaming.ends_with_done(stream_of(kind))
