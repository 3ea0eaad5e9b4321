"""The --vllm-image launcher against a real Docker engine, with images built offline here.

The engine image is llama.cpp on SmolLM2 (containers/cpu-engine): a real CPU server with the
same start-up contract as the GPU image. The router of the split topology is real HAProxy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vllm_conformance.target.launch import default_router_config
from tests.docker_engine import (
    BASE_IMAGE,
    ENGINE_IMAGE,
    docker_host,
    ensure_images,
    labelled,
    remove,
)
from tests.test_local_lifecycle import ctrl_c_as_in_a_terminal
from tests.test_real_engines import CPU_PERF

IMAGE_ARGS = (
    f"--vllm-image={ENGINE_IMAGE}",
    "--vllm-model=smollm2",
    "--vllm-hf-cache=none",
    "--vllm-serve-timeout=120",
    "-p",
    "no:randomly",
)
SPLIT_ARGS = (
    *IMAGE_ARGS,
    "--vllm-topology=split",
    "--vllm-embedding-model=smollm2-embed",
    f"--vllm-router-image={BASE_IMAGE}",
)


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker engine with the base and CPU engine images; the DOCKER_HOST to reach it."""
    with docker_host() as host:
        ensure_images(host)
        yield host


@pytest.fixture
def env(docker: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DOCKER_HOST", docker)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    yield docker
    # a test that failed with a container left must not fail the next ones for it too
    remove(docker, *labelled(docker))


def ours(host: str) -> list[str]:
    """Containers and networks the plugin started that still exist."""
    containers, networks = labelled(host)
    return containers + networks


def _clean_usage_error(result: pytest.RunResult, *patterns: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(["ERROR: *", *patterns])
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text, text


def test_the_suites_run_end_to_end_through_the_launcher(
    pytester: pytest.Pytester, env: str
) -> None:
    result = pytester.runpytest(
        *IMAGE_ARGS,
        "--vllm-embedding-model=smollm2",
        "--vllm-determinism-requests=10",
        "--vllm-timeout=30",
        "--junitxml=junit.xml",
        *CPU_PERF,
    )
    out = result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), out
    assert result.parseoutcomes().get("errors", 0) == 0, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    result.stdout.fnmatch_lines(
        [
            "*server container * (pvc-cpu-engine:test) started on http://*; waiting for /health",
            "*(llama.cpp *), model smollm2, profile openai",
            "*containers removed; their logs are in *reports",
        ]
    )
    # Every suite ran; llama.cpp's own departures (extra fields, lax input checks, streams
    # that end before any text) fail through the container as they do directly.
    result.stdout.fnmatch_lines_random(
        [
            "health *4 passed",
            "determinism *passed*",
            "memory *1 passed",
            "FAILED *test_an_invalid_request_is_rejected?unknown-model?*",
        ]
    )
    assert result.parseoutcomes()["passed"] >= 50, out
    junit = (pytester.path / "junit.xml").read_text()
    assert f'name="vllm_image" value="{ENGINE_IMAGE}"' in junit
    assert 'name="vllm_image_id" value="sha256:' in junit
    assert "RSS of the container's process tree" in junit  # memory read through its PID
    assert (
        "serve_llamacpp: server started"
        in (pytester.path / "reports" / "vllm-container-server.log").read_text()
    )
    assert ours(env) == []


def test_split_topology_routes_and_aggregates_health(pytester: pytest.Pytester, env: str) -> None:
    result = pytester.runpytest(*SPLIT_ARGS, "-m", "topology or health", "-v")
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines_random(
        [
            "*embed container * started on *",
            "*gen container * started on *",
            "*router container * started on *",
            "*test_health_follows_each_backend_down_and_up?embed? PASSED*",
            "*test_health_follows_each_backend_down_and_up?gen? PASSED*",
            "*test_each_route_reaches_its_backend?/v1/embeddings? PASSED*",
        ]
    )
    assert ours(env) == []


def _router_variant(tmp: Path, *edits: tuple[str, str]) -> Path:
    """The bundled router configuration with each line holding ``find`` replaced by
    ``replace`` (dropped when that is empty), for each (find, replace) edit."""
    lines = default_router_config().read_text().splitlines()
    edited = lines
    for find, replace in edits:
        edited = [replace if find in line else line for line in edited]
        edited = [line for line in edited if line]
    assert edited != lines
    path = tmp / "haproxy.cfg"
    path.write_text("\n".join(edited) + "\n")
    return path


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(
            [("http-request return", "")],  # /health proxied to gen's own
            [
                "*[[]HIGH[]] /health stays up with the embedding server stopped",
                "*expected: 503 within 10 s of stopping the embedding server",
                "*received: 200 after *",
            ],
            id="health-from-gen",
        ),
        pytest.param(
            [
                ("http-request return", ""),
                (
                    "use_backend embed",
                    "use_backend embed if { path_beg /v1/embeddings } || { path /health }",
                ),
            ],
            [
                "*[[]HIGH[]] /health stays up with the generation server stopped",
                "*received: 200 after *",
            ],
            id="health-from-embed",
        ),
        pytest.param(
            [
                (
                    "rise 1",
                    "    default-server check inter 1s fall 1 rise 100 "
                    "resolvers docker init-addr last,libc,none",
                )
            ],
            [
                "*[[]HIGH[]] /health does not recover when the embedding server is back",
                "*[[]HIGH[]] /health does not recover when the generation server is back",
            ],
            id="slow-recovery",
        ),
    ],
)
def test_health_check_fails_on_a_router_that_does_not_aggregate(
    pytester: pytest.Pytester, env: str, edits: list[tuple[str, str]], expected: list[str]
) -> None:
    config = _router_variant(pytester.path, *edits)
    result = pytester.runpytest(
        *SPLIT_ARGS, f"--vllm-router-config={config}", "-m", "topology", "-k", "follows"
    )
    failed = 2 if "recover" in expected[0] else 1
    result.assert_outcomes(passed=2 - failed, failed=failed)
    result.stdout.fnmatch_lines(expected)
    assert ours(env) == []


@pytest.mark.parametrize(
    ("edit", "failing"),
    [
        (("use_backend embed", ""), ["/v1/embeddings"]),  # everything to generation
        # one generation route to the embedding server (the rest, /v1/models included, stays)
        (
            (
                "use_backend embed",
                "use_backend embed if { path_beg /v1/embeddings /v1/completions }",
            ),
            ["/v1/completions"],
        ),
        (
            ("use_backend embed", "use_backend embed if { path_beg /v1/embeddings /v1/chat/ }"),
            ["/v1/chat/completions"],
        ),
    ],
    ids=["embeddings-to-gen", "completions-to-embed", "chat-to-embed"],
)
def test_route_check_fails_on_a_router_that_misroutes(
    pytester: pytest.Pytester, env: str, edit: tuple[str, str], failing: list[str]
) -> None:
    config = _router_variant(pytester.path, edit)
    result = pytester.runpytest(
        *SPLIT_ARGS, f"--vllm-router-config={config}", "-m", "topology", "-k", "route"
    )
    result.assert_outcomes(passed=3 - len(failing), failed=len(failing))
    result.stdout.fnmatch_lines_random(
        [f"*POST {path} through the endpoint did not reach the * server" for path in failing]
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--vllm-image=pvc-no-such-image:1"],
            [
                "ERROR: image 'pvc-no-such-image:1' is not on the Docker engine and pulling "
                "it failed (*); build it first (make -C containers image) or check the name."
            ],
            id="missing-image",
        ),
        pytest.param(
            [f"--vllm-image={ENGINE_IMAGE}", "--vllm-container-env=MODEL=no-such-model"],
            [
                "ERROR: the server container (pvc-cpu-engine:test) exited with code * before "
                "it was healthy; its last log lines (all of it in *vllm-container-server.log):",
                "*no-such-model*",
            ],
            id="exits-at-once",
        ),
        pytest.param(
            [
                f"--vllm-image={ENGINE_IMAGE}",
                "--vllm-container-env=PORT=9000",
                "--vllm-serve-timeout=4",
            ],
            [
                "ERROR: the server container (pvc-cpu-engine:test) at http://*:* was not "
                "healthy within 4 s (raise --vllm-serve-timeout); its last log lines*",
                "*port 9000*",
            ],
            id="never-healthy",
        ),
        pytest.param(
            [f"--vllm-image={ENGINE_IMAGE}", "--vllm-gpus=all"],
            [
                "ERROR: the Docker engine cannot give the server container a GPU (it has no "
                "NVIDIA runtime: *); install the NVIDIA Container Toolkit and restart dockerd, "
                "or pass --vllm-gpus=none for an image that runs on the CPU."
            ],
            id="no-gpu",
        ),
    ],
)
def test_a_failed_start_is_one_clear_error_and_leaves_nothing(
    pytester: pytest.Pytester, env: str, args: list[str], expected: list[str]
) -> None:
    result = pytester.runpytest("--vllm-model=smollm2", "--vllm-hf-cache=none", *args)
    _clean_usage_error(result, *expected[1:])
    result.stderr.fnmatch_lines([expected[0]])
    assert ours(env) == []


def test_no_docker_engine_is_one_clear_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = pytester.runpytest(f"--vllm-image={ENGINE_IMAGE}", "--vllm-model=smollm2")
    _clean_usage_error(result)
    result.stderr.fnmatch_lines(
        [
            "ERROR: cannot reach a Docker engine at "
            "unix:///nonexistent/docker.sock (*); start dockerd or set "
            "DOCKER_HOST."
        ]
    )


def test_secrets_in_the_environment_never_reach_the_error(
    pytester: pytest.Pytester, env: str
) -> None:
    """A container that prints its environment and dies: the error quotes it, redacted."""
    result = pytester.runpytest(
        f"--vllm-image={BASE_IMAGE}",
        "--vllm-model=m",
        "--vllm-hf-cache=none",
        "--vllm-api-key=sk-pvc-distinct-1234",
        "--vllm-container-env=HF_TOKEN=hf_pvc_distinct",
        "--vllm-container-env=MY_SECRET=s3cr3t-pvc",
        "--vllm-serve-arg=sh",
        "--vllm-serve-arg=-c",
        "--vllm-serve-arg=env; exit 3",
    )
    _clean_usage_error(result)
    result.stderr.fnmatch_lines_random(
        ["*VLLM_API_KEY=[*][*][*]", "*HF_TOKEN=[*][*][*]", "*MY_SECRET=[*][*][*]"]
    )
    text = result.stdout.str() + result.stderr.str()
    log = (pytester.path / "reports" / "vllm-container-server.log").read_text()
    for secret in ("sk-pvc-distinct-1234", "hf_pvc_distinct", "s3cr3t-pvc"):
        assert secret not in text and secret not in log
    assert "MODEL=m" in log  # ordinary values are left alone


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_start_removes_the_container(
    pytester: pytest.Pytester, env: str, sig: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            f"--vllm-image={ENGINE_IMAGE}",
            "--vllm-model=smollm2",
            "--vllm-hf-cache=none",
            "--vllm-container-env=PORT=9000",
            "--vllm-serve-timeout=300",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DOCKER_HOST": env, "TESTCONTAINERS_RYUK_DISABLED": "true"},
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    deadline = time.monotonic() + 60
    while not ours(env):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    time.sleep(1)  # inside the wait for /health
    proc.send_signal(sig)
    try:
        out = proc.communicate(timeout=120)[0].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0].decode()
        pytest.fail(f"still running 120 s after {sig.name}:\n{out}", pytrace=False)
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    assert ours(env) == []


def test_with_ryuk_on_an_unavailable_reaper_is_one_clear_line(
    pytester: pytest.Pytester, env: str
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"--vllm-image={ENGINE_IMAGE}",
            "--vllm-model=smollm2",
            "--vllm-hf-cache=none",
        ],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "DOCKER_HOST": env,
            "TESTCONTAINERS_RYUK_DISABLED": "false",
            "RYUK_CONTAINER_IMAGE": "pvc-no-such-ryuk:1",
        },
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (
        "ERROR: testcontainers' reaper (Ryuk, image pvc-no-such-ryuk:1) could not start"
        in proc.stderr
    ), proc.stderr
    assert ours(env) == []
