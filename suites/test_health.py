"""Liveness and readiness: the endpoints an orchestrator and a load balancer rely on."""

from __future__ import annotations

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import health, streaming
from pytest_vllm_conformance.checks.registry import Context
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.failures import Severity
from pytest_vllm_conformance.target.discovery import Target

pytestmark = pytest.mark.health


def test_health_endpoint_answers_200(vllm_client: Client, vllm_target: Target) -> None:
    if vllm_target.engine.name == "other" and vllm_target.endpoints.get("/health") == 404:
        pytest.skip("the server has no /health (it is not part of the OpenAI API)")
    checks.request_succeeded(
        vllm_client.get("/health"), checks.Status(title="/health is not 200 on a ready server")
    )


def test_models_lists_the_model_under_test(vllm_client: Client, vllm_model: str) -> None:
    r = vllm_client.get("/v1/models")
    checks.request_succeeded(
        r, checks.Status(title="GET /v1/models failed", severity=Severity.CRITICAL)
    )
    body = checks.json_object(r, checks.Titled(title="GET /v1/models is not a JSON object"))
    health.lists_model(body, health.Model(model=vllm_model, curl=r.curl))


@pytest.mark.parametrize("endpoint", ["/v1/completions", "/v1/chat/completions"])
def test_canary_request_with_one_token(vllm_client: Client, vllm_model: str, endpoint: str) -> None:
    body: dict[str, object] = {"model": vllm_model, "max_tokens": 1, "temperature": 0}
    if endpoint.endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": "Say hello."}]
    else:
        body["prompt"] = "Say hello."
    r = vllm_client.post(endpoint, body)
    checks.request_succeeded(
        r, checks.Status(title=f"POST {endpoint} canary failed", severity=Severity.CRITICAL)
    )
    data = checks.json_object(r, checks.Titled(title=f"POST {endpoint} is not a JSON object"))
    health.one_token(data, Context(curl=r.curl))


@pytest.mark.streaming
def test_canary_stream_ends_with_done(vllm_client: Client, vllm_model: str) -> None:
    r = vllm_client.stream(
        "/v1/chat/completions",
        {
            "model": vllm_model,
            "max_tokens": 4,
            "temperature": 0,
            "stream": True,
            "messages": [{"role": "user", "content": "Count to three."}],
        },
    )
    checks.request_succeeded(
        r, checks.Status(title="streaming canary failed", severity=Severity.CRITICAL)
    )
    streaming.well_formed(r)
