"""Property tests: Hypothesis generates requests, valid ones and ones with a wrong type.

Each example is a real request, so the count is modest (--vllm-examples). Examples
are derandomised, so a failure repeats on the next run, and not shrunk, so a failing
run stays short; the failure names the request that broke.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import answers, errors, streaming
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.config import Settings

COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
TEXT = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=40
).filter(str.strip)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )


#: vLLM treats a temperature below this as greedy sampling (vllm.sampling_params _SAMPLING_EPS).
GREEDY = 1e-5


@st.composite
def valid_requests(draw: st.DrawFn, model: str, profile: str) -> tuple[str, dict[str, Any]]:
    chat = draw(st.booleans())
    body: dict[str, Any] = {"model": model, "max_tokens": draw(st.integers(1, 8))}
    if chat:
        turns = [{"role": "user", "content": draw(TEXT)}]
        if draw(st.booleans()):
            turns.insert(0, {"role": "system", "content": draw(TEXT)})
        body["messages"] = turns
    else:
        body["prompt"] = draw(TEXT)
    optional = {
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0.05, 1),
        "seed": st.integers(0, 2**31 - 1),
        "n": st.integers(1, 3),
        "stop": st.one_of(
            TEXT.map(lambda s: s[:4]), st.lists(TEXT.map(lambda s: s[:4]), min_size=1, max_size=4)
        ),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
        "stream": st.booleans(),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    if draw(st.booleans()):
        k = draw(st.integers(0, 5))
        body.update({"logprobs": True, "top_logprobs": k} if chat else {"logprobs": k})
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    if profile == "vllm" and body.get("n", 1) > 1 and body.get("temperature", 1.0) < GREEDY:
        del body["n"]  # the greedy-n allowance: vLLM refuses n > 1 with greedy sampling
    return (CHAT if chat else COMPLETIONS), body


#: Wrong-typed values per field. The vllm profile leaves out what pydantic's lax mode
#: converts (numeric strings, 0/1 for booleans): that is a documented vLLM allowance.
WRONG: dict[str, tuple[list[Any], list[Any]]] = {
    "max_tokens": (["ten", {"n": 1}, [5], 5.5], ["5"]),
    "temperature": (["hot", {}, [0.5]], ["0.5"]),
    "n": (["two", {}, 1.5], ["2"]),
    "stream": (["yes-please", {}, [1]], [1]),
    "seed": (["abc", 1.5, {}], ["7"]),
    "stop": ([5, {"a": "b"}, [1, 2]], []),
    "messages": (["hello", 5, [5], [{"content": "x"}]], []),
}


@st.composite
def wrong_type_requests(draw: st.DrawFn, model: str, profile: str) -> tuple[str, str, Any]:
    field = draw(st.sampled_from(sorted(WRONG)))
    always, strict_only = WRONG[field]
    value = draw(st.sampled_from(always + (strict_only if profile == "openai" else [])))
    return field, repr(value), value


@pytest.mark.compliance
def test_generated_valid_requests_succeed(
    vllm_client: Client, vllm_model: str, vllm_profile: str, vllm_settings: Settings
) -> None:
    @_settings(vllm_settings.examples)
    @given(valid_requests(vllm_model, vllm_profile))
    def run(request: tuple[str, dict[str, Any]]) -> None:
        path, body = request
        chat = path == CHAT
        r = vllm_client.stream(path, body) if body.get("stream") else vllm_client.post(path, body)
        checks.request_succeeded(
            r, checks.Status(title=f"A valid generated request to {path} failed")
        )
        if body.get("stream"):
            streaming.well_formed(r)
        answers.answer_conforms(
            r,
            answers.Asked(
                request=body,
                profile=vllm_profile,
                root="CreateChatCompletionResponse" if chat else "CreateCompletionResponse",
                chunk_root="CreateChatCompletionStreamResponse"
                if chat
                else "CreateCompletionResponse",
                title=f"{path} is not a JSON object",
                finish_reasons=False,
                some_chunk=True,
            ),
        )

    run()


@pytest.mark.errors
def test_generated_wrong_types_are_rejected(
    vllm_client: Client, vllm_model: str, vllm_profile: str, vllm_settings: Settings
) -> None:
    @_settings(vllm_settings.examples)
    @given(wrong_type_requests(vllm_model, vllm_profile))
    def run(case: tuple[str, str, Any]) -> None:
        field, shown, value = case
        body: dict[str, Any] = {
            "model": vllm_model,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}],
            field: value,
        }
        r = vllm_client.post(CHAT, body, timeout=15)
        errors.rejected(r, errors.Invalid(statuses=(400, 422), what=f"{field} = {shown}"))
        errors.error_body(r, errors.Profile(profile=vllm_profile))

    run()
