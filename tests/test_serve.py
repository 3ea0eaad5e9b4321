"""--vllm-serve: the launcher starts, waits for, stops and logs a local server.

The real vLLM of the test session is started by the same launcher (tests/engines.py);
here a stand-in interpreter plays vLLM so that each failure path is cheap to reach.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

FAKE_VLLM = f"""#!{sys.executable}
import os, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
print("fake vllm argv:", sys.argv[1:], flush=True)
print("key in env:", "VLLM_API_KEY" in os.environ, flush=True)
mode = os.environ.get("FAKE_VLLM_MODE", "ok")
if mode == "crash":
    print("CUDA error: no kernel image is available", flush=True)
    sys.exit(3)
from tests.fault_server import FaultServer
server = FaultServer()
if mode == "never_healthy":
    server.faults = {{"health_503"}}
server.start(int(sys.argv[sys.argv.index("--port") + 1]))
while True:
    time.sleep(1)
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_runs_the_suites_and_keeps_the_log(
    pytester: pytest.Pytester, fake_python: str
) -> None:
    result = pytester.runpytest(
        "--vllm-serve=/models/some-dir",
        "--vllm-model=fault-model",
        f"--vllm-serve-python={fake_python}",
        "--vllm-serve-arg=--max-num-seqs=4",
        "-s",
        "-m",
        "health",
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "vllm-conformance: starting vLLM server for fault-model on http*",
            "vllm-conformance: vLLM server ready after * s",
            "*vllm-conformance: vLLM server stopped; its log is *vllm-server.log",
        ]
    )
    log = (pytester.path / "reports" / "vllm-server.log").read_text()
    assert "'--model', '/models/some-dir'" in log
    assert "'--served-model-name', 'fault-model'" in log and "'--max-num-seqs=4'" in log


def test_the_key_reaches_the_server_by_environment_only(
    pytester: pytest.Pytester, fake_python: str
) -> None:
    key = "sk-DISTINCTIVE-serve-key-99"
    result = pytester.runpytest(
        "--vllm-serve=m",
        "--vllm-model=fault-model",
        f"--vllm-serve-python={fake_python}",
        f"--vllm-api-key={key}",
        "-m",
        "health",
    )
    log = (pytester.path / "reports" / "vllm-server.log").read_text()
    assert "key in env: True" in log and key not in log
    assert key not in result.stdout.str() + result.stderr.str()


def test_a_server_that_dies_shows_its_log(
    pytester: pytest.Pytester, fake_python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "crash")
    result = pytester.runpytest("--vllm-serve=m", f"--vllm-serve-python={fake_python}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: the vLLM server exited with code 3 before it was healthy; last lines of *",
            "*CUDA error: no kernel image is available",
        ]
    )


def test_a_server_that_never_gets_healthy_is_stopped(
    pytester: pytest.Pytester, fake_python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "never_healthy")
    started = time.monotonic()
    result = pytester.runpytest(
        "--vllm-serve=m", f"--vllm-serve-python={fake_python}", "--vllm-serve-timeout=3"
    )
    assert time.monotonic() - started < 30
    result.stderr.fnmatch_lines(
        [
            "ERROR: the vLLM server at http://127.0.0.1:* was not healthy "
            "within 3 s (raise --vllm-serve-timeout)*"
        ]
    )
    pid_line = next(line for line in result.stdout.lines if "starting vLLM" in line)
    assert "127.0.0.1" in pid_line


def test_a_missing_interpreter_is_one_line(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--vllm-serve=m", "--vllm-serve-python=/nonexistent/python")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: cannot run /nonexistent/python: No such file or "
            "directory; install vLLM or point --vllm-serve-python at it."
        ]
    )
