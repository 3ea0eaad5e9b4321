"""Readiness: a server that cannot be tested stops the run with ONE clear line, fast."""

from __future__ import annotations

import time

import pytest

from pytest_vllm_conformance.target.local import free_port
from tests.fault_server import FaultServer

KEY = "sk-DISTINCTIVE-7f3a9c-do-not-leak"


def _one_error_line(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, out
    return errors[0]


def test_nothing_listening_ends_fast(pytester: pytest.Pytester) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = pytester.runpytest(f"--vllm-url={url}")
    line = _one_error_line(result)
    assert time.monotonic() - started < 6
    assert line.startswith(f"ERROR: nothing answers at {url} (connection refused)")


def test_a_server_that_never_gets_ready_times_out(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"health_503"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", "--vllm-ready-timeout=1")
    line = _one_error_line(result)
    assert f"{fault.url} is not ready after 1 s (GET /health answered HTTP 503)" in line


def test_a_refused_key_is_named_but_never_shown(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.api_key = "the-right-key"
    fault.faults = {"echo_key"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"--vllm-api-key={KEY}")
    line = _one_error_line(result)
    assert f"{fault.url} refused the API key (HTTP 401 on /v1/models)" in line
    assert KEY not in result.stdout.str() + result.stderr.str()


def test_a_missing_key_says_how_to_give_one(
    pytester: pytest.Pytester, fault: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("VLLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    fault.api_key = "the-right-key"
    line = _one_error_line(pytester.runpytest(f"--vllm-url={fault.url}"))
    assert "requires an API key (HTTP 401 on /v1/models); pass one with --vllm-api-key" in line


def test_the_right_key_from_the_environment_works(
    pytester: pytest.Pytester, fault: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault.api_key = KEY
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    result = pytester.runpytest(f"--vllm-url={fault.url}", "-m", "health")
    result.assert_outcomes(passed=5)
    assert KEY not in result.stdout.str()


def test_a_failing_canary_stops_the_run(pytester: pytest.Pytester, fault: FaultServer) -> None:
    fault.faults = {"completions_500"}
    line = _one_error_line(pytester.runpytest(f"--vllm-url={fault.url}"))
    assert "the canary request (max_tokens=1)" in line
    assert "HTTP 500: internal failure" in line


def test_a_hanging_server_is_cut_off_by_the_timeout(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"hang"}
    started = time.monotonic()
    line = _one_error_line(pytester.runpytest(f"--vllm-url={fault.url}", "--vllm-timeout=1"))
    assert time.monotonic() - started < 10
    assert "no complete answer within 1 s" in line


def test_an_unknown_model_lists_the_served_ones(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    line = _one_error_line(pytester.runpytest(f"--vllm-url={fault.url}", "--vllm-model=gpt-9"))
    assert "does not serve model 'gpt-9'; it serves fault-model" in line


def test_a_non_openai_server_is_named(pytester: pytest.Pytester, fault: FaultServer) -> None:
    fault.faults = {"models_401"}
    fault.api_key = None
    line = _one_error_line(pytester.runpytest(f"--vllm-url={fault.url}"))
    assert "HTTP 401 on /v1/models" in line
