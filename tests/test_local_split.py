"""The local split topology against real processes: HAProxy, run by the plugin's own router
class on the bundled configuration, in front of the session's real vLLM generation and
embedding servers (tests/engines.py), each paused in turn by SIGSTOP to its process group."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vllm_conformance.client import AsyncClient, Client
from pytest_vllm_conformance.target.health import health_until
from pytest_vllm_conformance.target.launch import default_router_config
from pytest_vllm_conformance.target.local import LocalVllmServer
from pytest_vllm_conformance.target.process import free_port
from pytest_vllm_conformance.target.router import LocalRouter, haproxy_problem
from tests.engines import STARTED

#: the bundled router checks each backend every second, and calls it down at the first miss
NOTICE_WITHIN_S = 10.0


def _started(url: str) -> LocalVllmServer:
    server = STARTED.get(url)
    if server is None:
        pytest.skip("a server reused from the environment (VLLM_*TEST_URL): it cannot be paused")
    return server


@pytest.fixture
def router(vllm_url: str, vllm_embed_url: str, tmp_path: Path) -> Iterator[Client]:
    """A client of HAProxy in front of the session's two vLLM servers."""
    if problem := haproxy_problem():
        pytest.fail(problem, pytrace=False)
    gen, embed = _started(vllm_url), _started(vllm_embed_url)
    local = LocalRouter(
        default_router_config(),
        tmp_path,
        free_port(),
        {"embed": [embed.port], "gen": [gen.port]},
        say=print,
    )
    local.launch()
    try:
        local.wait_healthy(30)
        with Client(AsyncClient(local.url, timeout=30)) as client:
            yield client
    finally:
        local.stop()
    assert "server embed 127.0.0.1" in (tmp_path / "haproxy.cfg").read_text()


def _down(client: Client) -> list[str]:
    r = client.get("/health")
    assert r.status == 503, r.body
    return list(json.loads(r.body)["down"])


def test_health_is_200_with_both_engines_and_503_naming_each_one_paused(
    router: Client, vllm_url: str, vllm_embed_url: str
) -> None:
    assert router.get("/health").status == 200
    for name, url in (("embed", vllm_embed_url), ("gen", vllm_url)):
        server = _started(url)
        server.pause()
        try:
            status, waited = health_until(router, 503, NOTICE_WITHIN_S)
            assert status == 503, f"/health still {status} {waited:.1f} s after {name} paused"
            assert _down(router) == [name]
        finally:
            server.resume(120)
        status, waited = health_until(router, 200, NOTICE_WITHIN_S)
        assert status == 200, f"/health {status} {waited:.1f} s after {name} resumed"


def test_each_path_reaches_its_engine(router: Client) -> None:
    r = router.post("/v1/embeddings", {"model": "tiny-embed", "input": "route me"})
    assert r.status == 200, r.body
    assert json.loads(r.body)["data"][0]["object"] == "embedding"
    r = router.post("/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 2})
    assert r.status == 200, r.body
    assert json.loads(r.body)["model"] == "tiny"
    # the generation server serves no embeddings model: only the router's path rule sends
    # the request above to the embedding server
    models = json.loads(router.get("/v1/models").body)
    assert [m["id"] for m in models["data"]] == ["tiny"]
