"""The local split topology's router reads the containers' configuration, changed only where
one machine without Docker differs: the address it listens on, its servers, no DNS."""

from __future__ import annotations

from pytest_vllm_conformance.target.launch import default_router_config
from pytest_vllm_conformance.target.router import render_loopback

BUNDLED = default_router_config().read_text()


def _render(gen: list[int]) -> str:
    return render_loopback(BUNDLED, 18000, {"embed": [18001], "gen": gen})


def test_only_the_address_server_and_resolver_lines_change() -> None:
    rendered = _render([18002]).splitlines()
    original = BUNDLED.splitlines()
    edited = {
        line
        for line in original
        if line.lstrip().startswith(("bind ", "server ", "default-server ")) or "resolvers" in line
    }
    resolvers_body = {"    nameserver dns 127.0.0.11:53", "    hold valid 1s"}
    resolvers_body |= {"    hold nx 1s", "    hold obsolete 1s"}
    kept = [line for line in original if line not in edited | resolvers_body]
    # every other line is there, in its order (the resolvers section's blank line aside)
    it = iter(rendered)
    assert all(any(line == got for got in it) for line in kept if line.strip())
    assert "    bind 127.0.0.1:18000" in rendered
    assert "    server embed 127.0.0.1:18001" in rendered
    assert "    server gen 127.0.0.1:18002" in rendered
    assert not [line for line in rendered if "resolvers" in line or "127.0.0.11" in line]
    checks = [line for line in rendered if line.lstrip().startswith("default-server")]
    assert (
        checks == ["    default-server check inter 1s fall 1 rise 1 init-addr last,libc,none"] * 2
    )
    assert len(rendered) == len(original) - 6  # the resolvers section and its blank line


def test_every_replica_is_a_server_of_the_generation_backend() -> None:
    rendered = _render([18002, 18003, 18004]).splitlines()
    gen = rendered[rendered.index("backend gen") :]
    assert [line.strip() for line in gen if line.strip().startswith("server")] == [
        "server gen 127.0.0.1:18002",
        "server gen-2 127.0.0.1:18003 backup",
        "server gen-3 127.0.0.1:18004 backup",
    ]


def test_the_health_answers_are_the_containers_own() -> None:
    """The aggregation (200 both up, 503 naming the one down) is the bundled file's, as is."""
    rendered = _render([18002])
    for line in BUNDLED.splitlines():
        if "http-request return" in line or "nbsrv" in line:
            assert line in rendered.splitlines()
