"""Errors: invalid requests get a 4xx with OpenAI's error object; keys are enforced."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vllm_conformance.checks import errors
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.config import Settings
from pytest_vllm_conformance.target.discovery import Target
from pytest_vllm_conformance.workload import shapes

pytestmark = pytest.mark.errors
COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
#: Invalid requests tolerate no long generation: a server that starts one has accepted it.
ERROR_TIMEOUT_S = 15.0

# name -> (path, body edits or raw bytes, statuses allowed, profiles it applies to)
INVALID: dict[str, tuple[str, Any, tuple[int, ...], tuple[str, ...]]] = {
    "invalid-json": (CHAT, b'{"model": "m", "messages": [', (400, 422), ("openai", "vllm")),
    "body-not-an-object": (CHAT, b"[1, 2, 3]", (400, 422), ("openai", "vllm")),
    "missing-messages": (CHAT, {"messages": None}, (400, 422), ("openai", "vllm")),
    "messages-not-a-list": (CHAT, {"messages": "hello"}, (400, 422), ("openai", "vllm")),
    "message-without-role": (
        CHAT,
        {"messages": [{"content": "hi"}]},
        (400, 422),
        ("openai", "vllm"),
    ),
    "unknown-role": (
        CHAT,
        {"messages": [{"role": "wizard", "content": "hi"}]},
        (400, 422),
        ("openai",),
    ),
    "missing-model": (CHAT, {"model": None}, (400, 422), ("openai",)),
    "unknown-model": (CHAT, {"model": "no-such-model-x9"}, (404,), ("openai", "vllm")),
    "missing-prompt": (COMPLETIONS, {"prompt": None}, (400, 422), ("openai", "vllm")),
    "negative-max-tokens": (COMPLETIONS, {"max_tokens": -5}, (400, 422), ("openai", "vllm")),
    "max-tokens-wrong-type": (COMPLETIONS, {"max_tokens": "ten"}, (400, 422), ("openai", "vllm")),
    "zero-n": (COMPLETIONS, {"n": 0}, (400, 422), ("openai", "vllm")),
    "temperature-above-2": (CHAT, {"temperature": 5}, (400, 422), ("openai", "vllm")),
    "top-p-above-1": (CHAT, {"top_p": 2}, (400, 422), ("openai", "vllm")),
    "stop-wrong-type": (CHAT, {"stop": {"word": "x"}}, (400, 422), ("openai", "vllm")),
    "oversize-prompt": (
        COMPLETIONS,
        {"prompt": "hello " * 100_000},
        (400, 413, 422),
        ("openai", "vllm"),
    ),
    "max-tokens-beyond-context": (
        COMPLETIONS,
        {"max_tokens": 10_000_000},
        (400, 422),
        ("openai", "vllm"),
    ),
}


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_request_is_rejected(
    vllm_client: Client, vllm_model: str, vllm_profile: str, case: str
) -> None:
    path, edit, statuses, profiles = INVALID[case]
    if vllm_profile not in profiles:
        pytest.skip(f"the {vllm_profile} profile allows this (see the README's allowances)")
    if isinstance(edit, bytes):
        r = vllm_client.run(
            vllm_client.aio.request("POST", path, raw=edit, timeout=ERROR_TIMEOUT_S)
        )
    else:
        make = shapes.chat if path == CHAT else shapes.completion
        r = vllm_client.post(path, make(vllm_model, **edit), timeout=ERROR_TIMEOUT_S)
    errors.rejected(r, errors.Invalid(statuses=statuses, what=case))
    errors.error_body(r, errors.Profile(profile=vllm_profile))


@pytest.mark.parametrize("how", ["no-key", "wrong-key"])
def test_the_api_key_is_enforced(
    vllm_client: Client, vllm_settings: Settings, vllm_target: Target, vllm_profile: str, how: str
) -> None:
    if vllm_settings.api_key is None:
        pytest.skip("no --vllm-api-key given: the server is taken to run without a key")
    body = shapes.chat(vllm_target.model, max_tokens=1)
    headers = {"Authorization": "Bearer not-the-key"} if how == "wrong-key" else None
    r = vllm_client.post(CHAT, body, auth=False, headers=headers, timeout=ERROR_TIMEOUT_S)
    errors.rejected(r, errors.Invalid(statuses=(401, 403), what=f"request with {how}"))
    errors.error_body(r, errors.Profile(profile=vllm_profile))
