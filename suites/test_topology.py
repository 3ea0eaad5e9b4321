"""The two-instance service: one endpoint routing by path, and health that covers both engines.

These tests stop and start backends, so they run only against the topology the plugin
started itself (``--vllm-image=IMAGE --vllm-topology=split``), and last of all. That /health
is 200 with both engines up is the launcher's start condition for the router, so no test
here repeats it.
"""

from __future__ import annotations

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.failures import CheckFailure, Severity
from pytest_vllm_conformance.target.discovery import Target
from pytest_vllm_conformance.target.health import health_until
from pytest_vllm_conformance.target.launch import ContainerDeployment

pytestmark = pytest.mark.topology

#: how soon the endpoint must notice a stopped backend (the bundled router checks each second)
NOTICE_WITHIN_S = 10.0


@pytest.mark.parametrize("endpoint", ["/v1/embeddings", "/v1/completions",
                                      "/v1/chat/completions"])
def test_each_route_reaches_its_backend(vllm_topology: ContainerDeployment, vllm_client: Client,
                                        vllm_target: Target, endpoint: str) -> None:
    model = vllm_target.embedding_model if endpoint == "/v1/embeddings" else vllm_target.model
    body: dict[str, object] = {"model": model}
    if endpoint == "/v1/embeddings":
        body["input"] = "route me"
    elif endpoint == "/v1/completions":
        body.update(prompt="Route me.", max_tokens=2, temperature=0)
    else:
        body.update(messages=[{"role": "user", "content": "Route me."}], max_tokens=2,
                    temperature=0)
    r = vllm_client.post(endpoint, body)
    backend = "embedding" if endpoint == "/v1/embeddings" else "generation"
    title = f"POST {endpoint} through the endpoint did not reach the {backend} server"
    checks.status_is(r, 200, title, Severity.CRITICAL)
    # A 200 alone is not enough: an engine may serve both kinds of request (llama.cpp does),
    # so the answer must also come from the model of the intended server.
    answered = checks.json_object(r, f"POST {endpoint} is not a JSON object").get("model")
    if answered != model:
        raise CheckFailure(title, path="$.model", expected=f"an answer from {model!r}",
                           received=f"an answer from {answered!r}", curl=r.curl,
                           severity=Severity.CRITICAL)


@pytest.mark.parametrize("backend", ["embed", "gen"])
def test_health_follows_each_backend_down_and_up(vllm_topology: ContainerDeployment,
                                                 vllm_client: Client, backend: str) -> None:
    server = vllm_topology.backends[backend]
    name = "embedding" if backend == "embed" else "generation"
    server.pause()
    try:
        status, waited = health_until(vllm_client, 503, NOTICE_WITHIN_S)
        if status != 503:
            raise CheckFailure(
                f"/health stays up with the {name} server stopped", path="/health",
                expected=f"503 within {NOTICE_WITHIN_S:g} s of stopping the {name} server",
                received=f"{status or 'no answer'} after {waited:.1f} s",
                severity=Severity.HIGH, curl=f"curl -i {vllm_client.aio.base_url}/health",
                detail="a load balancer keeps sending traffic to an endpoint whose "
                       "requests fail")
    finally:
        server.resume(vllm_topology.settings.serve_timeout)
    status, waited = health_until(vllm_client, 200, NOTICE_WITHIN_S)
    if status != 200:
        raise CheckFailure(
            f"/health does not recover when the {name} server is back", path="/health",
            expected=f"200 within {NOTICE_WITHIN_S:g} s of the {name} server being healthy",
            received=f"{status or 'no answer'} after {waited:.1f} s", severity=Severity.HIGH,
            curl=f"curl -i {vllm_client.aio.base_url}/health")
