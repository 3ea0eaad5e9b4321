"""OpenAI schema and semantics of /v1/models, /v1/completions and /v1/chat/completions."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import answers, semantics, streaming, values
from pytest_vllm_conformance.checks import schema as schema_checks
from pytest_vllm_conformance.checks.registry import Context
from pytest_vllm_conformance.client import Client, Response
from pytest_vllm_conformance.client.events import stream_text
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.report import measurements
from pytest_vllm_conformance.target.discovery import Target
from pytest_vllm_conformance.workload import shapes

pytestmark = pytest.mark.compliance
COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"


def _send(client: Client, path: str, body: dict[str, Any]) -> Response:
    r = client.stream(path, body) if body.get("stream") else client.post(path, body)
    checks.request_succeeded(r, checks.Status(title=f"POST {path} failed"))
    return r


def test_models_match_the_schema(vllm_client: Client, vllm_profile: str) -> None:
    r = vllm_client.get("/v1/models")
    checks.request_succeeded(r, checks.Status(title="GET /v1/models failed"))
    schema_checks.matches(
        checks.json_object(r, checks.Titled(title="GET /v1/models is not a JSON object")),
        schema_checks.Schema(root="ListModelsResponse", profile=vllm_profile, curl=r.curl),
    )


@pytest.mark.parametrize("shape", shapes.COMPLETION_SHAPES)
def test_completions_match_the_schema(
    vllm_client: Client, vllm_model: str, vllm_profile: str, shape: str
) -> None:
    body = shapes.completion(vllm_model, **shapes.COMPLETION_SHAPES[shape])
    r = _send(vllm_client, COMPLETIONS, body)
    answers.answer_conforms(
        r,
        answers.Asked(
            request=body,
            root="CreateCompletionResponse",
            chunk_root="CreateCompletionResponse",
            profile=vllm_profile,
            title=f"POST {r.request.url} is not a JSON object",
            finish_reasons=True,
            some_chunk=False,
        ),
    )


@pytest.mark.parametrize("shape", shapes.CHAT_SHAPES)
def test_chat_completions_match_the_schema(
    vllm_client: Client, vllm_model: str, vllm_profile: str, shape: str
) -> None:
    body = shapes.chat(vllm_model, **shapes.CHAT_SHAPES[shape])
    r = _send(vllm_client, CHAT, body)
    answers.answer_conforms(
        r,
        answers.Asked(
            request=body,
            root="CreateChatCompletionResponse",
            chunk_root="CreateChatCompletionStreamResponse",
            profile=vllm_profile,
            title=f"POST {r.request.url} is not a JSON object",
            finish_reasons=True,
            some_chunk=False,
        ),
    )


@pytest.mark.parametrize("call", ["models", "completions", "chat", "chat-stream"])
def test_the_openai_sdk_accepts_the_answers(
    vllm_target: Target, vllm_client: Client, call: str
) -> None:
    """Round-trip through the official SDK with strict response validation.

    The SDK's bytes travel through the harness's client: one deadline for the whole
    request (--vllm-timeout), a 64 MiB body cap, and typed errors (client/sdk.py).
    """
    from pytest_vllm_conformance.checks.sdk import Call, sdk_accepts
    from pytest_vllm_conformance.client.sdk import official_sdk

    key = vllm_target.api_key.reveal() if vllm_target.api_key else "no-key"
    model = vllm_target.model
    with official_sdk(vllm_client, f"{vllm_target.base_url}/v1", key) as (sdk, last_curl):
        try:
            if call == "models":
                sdk.models.list()
            elif call == "completions":
                sdk.completions.create(
                    model=model, prompt=shapes.PROMPT, max_tokens=4, temperature=0
                )
            elif call == "chat":
                sdk.chat.completions.create(
                    model=model,
                    max_tokens=4,
                    temperature=0,
                    messages=[{"role": "user", "content": shapes.PROMPT}],
                )
            else:
                for _ in sdk.chat.completions.create(
                    model=model,
                    max_tokens=4,
                    temperature=0,
                    stream=True,
                    messages=[{"role": "user", "content": shapes.PROMPT}],
                ):
                    pass
        except CheckFailure:
            raise
        except Exception as exc:  # the SDK's errors, a JSONDecodeError, a transport failure
            redact = vllm_target.api_key.redact if vllm_target.api_key else str
            sdk_accepts(exc, Call(expected=f"{call} parses", curl=last_curl(), redact=redact))
            raise  # sdk_accepts always raises: the titled failure, or the transport's error


@pytest.mark.parametrize("variant", ["completions", "chat", "chat-max_completion_tokens"])
def test_max_tokens_is_respected(vllm_client: Client, vllm_model: str, variant: str) -> None:
    if variant == "completions":
        path, body = COMPLETIONS, shapes.completion(vllm_model, max_tokens=5)
    elif variant == "chat":
        path, body = CHAT, shapes.chat(vllm_model, max_tokens=5)
    else:
        path, body = CHAT, shapes.chat(vllm_model, max_tokens=None, max_completion_tokens=5)
    r = _send(vllm_client, path, body)
    semantics.max_tokens_respected(_answer(r), semantics.Count(n=5, curl=r.curl))


def _answer(r: Response) -> dict[str, Any]:
    return checks.json_object(r, checks.Titled(title=f"POST {r.request.url} is not a JSON object"))


def _text(r: Response, index: int = 0) -> str:
    """The text of one choice; a body of the wrong shape is a titled failure."""
    return values.choice_text(_answer(r), index, r.curl)


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
def test_a_stop_sequence_ends_the_text_and_is_not_included(
    vllm_client: Client, vllm_model: str, path: str
) -> None:
    make = shapes.completion if path == COMPLETIONS else shapes.chat
    baseline = _text(_send(vllm_client, path, make(vllm_model, max_tokens=16)))
    cut = next(
        (
            k
            for k in range(3, len(baseline) - 3)
            if baseline.find(baseline[k : k + 3]) == k and baseline[k : k + 3].strip()
        ),
        None,
    )
    if cut is None:
        pytest.skip(f"the greedy answer {baseline!r} is too short to place a stop sequence in")
    stop = baseline[cut : cut + 3]
    r = _send(vllm_client, path, make(vllm_model, max_tokens=16, stop=[stop]))
    semantics.stop_applied(
        _answer(r), semantics.Stop(stop=stop, before=baseline[:cut], curl=r.curl)
    )


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
def test_n_gives_n_indexed_choices(vllm_client: Client, vllm_model: str, path: str) -> None:
    make = shapes.completion if path == COMPLETIONS else shapes.chat
    r = _send(vllm_client, path, make(vllm_model, n=3, temperature=0.8, seed=3, max_tokens=4))
    semantics.n_choices_indexed(_answer(r), semantics.Count(n=3, curl=r.curl))


def test_echo_returns_the_prompt(vllm_client: Client, vllm_model: str) -> None:
    r = _send(vllm_client, COMPLETIONS, shapes.completion(vllm_model, echo=True, max_tokens=4))
    semantics.echo_returns_prompt(_answer(r), semantics.Text(text=shapes.PROMPT, curl=r.curl))


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
def test_logprobs_come_in_the_requested_number(
    vllm_client: Client, vllm_model: str, path: str
) -> None:
    if path == COMPLETIONS:
        r = _send(vllm_client, path, shapes.completion(vllm_model, logprobs=3, max_tokens=4))
        semantics.completion_logprobs_count(_answer(r), semantics.Count(n=3, curl=r.curl))
    else:
        r = _send(
            vllm_client, path, shapes.chat(vllm_model, logprobs=True, top_logprobs=3, max_tokens=4)
        )
        semantics.chat_logprobs_count(_answer(r), semantics.Count(n=3, curl=r.curl))


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
def test_streamed_text_equals_non_streamed_text(
    vllm_client: Client, vllm_model: str, path: str
) -> None:
    make = shapes.completion if path == COMPLETIONS else shapes.chat
    plain = _text(_send(vllm_client, path, make(vllm_model, max_tokens=12)))
    r = _send(vllm_client, path, make(vllm_model, max_tokens=12, stream=True))
    streaming.data_lines_are_json(r)
    semantics.same_text(stream_text(r), semantics.Text(text=plain, curl=r.curl))


# issue 14: the logprob tokens spell the text
@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
def test_logprob_tokens_spell_the_text(
    vllm_client: Client, vllm_model: str, path: str, request: pytest.FixtureRequest
) -> None:
    """Joined, the logprob tokens are the text (byte fragments match loosely, and are counted)."""
    from pytest_vllm_conformance.checks import logprobs as logprob_checks

    if path == COMPLETIONS:
        body = shapes.completion(vllm_model, logprobs=1, max_tokens=16)
    else:
        body = shapes.chat(vllm_model, logprobs=True, max_tokens=16)
    r = _send(vllm_client, path, body)
    data = checks.json_object(r, checks.Titled(title=f"POST {path} is not a JSON object"))
    spelling = logprob_checks.tokens_spell_text(data, Context(curl=r.curl))
    measurements.record(request, spelling)
    if spelling.tokens == 0:
        pytest.skip("the answer carries no logprob tokens to compare with its text")
    if spelling.unspellable == spelling.tokens:
        pytest.skip(
            f"all {spelling.tokens} logprob tokens are byte fragments (U+FFFD, "
            "bytes:, token_id:), which cannot be spelled one by one"
        )
