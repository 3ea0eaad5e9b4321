"""The two-instance service: one endpoint routing by path, and health that covers both engines.

These tests stop and start backends, so they run only against the topology the plugin
started itself (``--vllm-serve=tiny --vllm-topology=split``: local processes behind a local
HAProxy; ``--vllm-image=IMAGE --vllm-topology=split``: containers), and last of all. That /health
is 200 with both engines up is the launcher's start condition for the router, so no test
here repeats it.
"""

from __future__ import annotations

import pytest

from pytest_vllm_conformance.checks import topology
from pytest_vllm_conformance.checks.topology import Poll, Watch
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.target.discovery import Target
from pytest_vllm_conformance.target.health import health_until
from pytest_vllm_conformance.target.topology import Topology

pytestmark = pytest.mark.topology

#: how soon the endpoint must notice a stopped backend (the bundled router checks each second)
NOTICE_WITHIN_S = 10.0


@pytest.mark.parametrize("endpoint", ["/v1/embeddings", "/v1/completions", "/v1/chat/completions"])
def test_each_route_reaches_its_backend(
    vllm_topology: Topology, vllm_client: Client, vllm_target: Target, endpoint: str
) -> None:
    model = vllm_target.embedding_model if endpoint == "/v1/embeddings" else vllm_target.model
    body: dict[str, object] = {"model": model}
    if endpoint == "/v1/embeddings":
        body["input"] = "route me"
    elif endpoint == "/v1/completions":
        body.update(prompt="Route me.", max_tokens=2, temperature=0)
    else:
        body.update(
            messages=[{"role": "user", "content": "Route me."}], max_tokens=2, temperature=0
        )
    r = vllm_client.post(endpoint, body)
    backend = "embedding" if endpoint == "/v1/embeddings" else "generation"
    topology.reached_backend(r, topology.Route(endpoint=endpoint, backend=backend, model=model))


@pytest.mark.parametrize("backend", ["embed", "gen"])
def test_health_follows_each_backend_down_and_up(
    vllm_topology: Topology, vllm_client: Client, backend: str
) -> None:
    server = vllm_topology.backends[backend]
    name = "embedding" if backend == "embed" else "generation"
    watch = Watch(
        backend=name, within_s=NOTICE_WITHIN_S, curl=f"curl -i {vllm_client.aio.base_url}/health"
    )
    server.pause()
    try:
        topology.health_drops(Poll(*health_until(vllm_client, 503, NOTICE_WITHIN_S)), watch)
    finally:
        server.resume(vllm_topology.settings.serve_timeout)
    topology.health_recovers(Poll(*health_until(vllm_client, 200, NOTICE_WITHIN_S)), watch)
