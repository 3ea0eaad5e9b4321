"""Idle means zero: a running gauge stuck above 0 fails, and is only a note on a shared server.

The cancellation test used to compare with an "idle" level read beforehand, so a constant
leaked slot looked idle. Each of these runs costs one or two settle windows (10 s).
"""

from __future__ import annotations

import json

import pytest

from tests.fault_server import FaultServer

NODE = "test_cancellation.py::test_dropped_streams_are_freed"


def _properties(pytester: pytest.Pytester) -> dict[str, object]:
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    (test,) = doc["tests"]
    return dict(test["properties"])


def test_a_stuck_gauge_is_a_failure_that_names_the_option(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"running_stuck"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", NODE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*The running gauge is not 0 when idle*",
            "*expected: 0 with nothing in flight*",
            "*received: 1 for 10 s*",
            "*If the server also serves others, pass --vllm-shared-server*",
        ]
    )
    assert _properties(pytester)["cancellation_idle_running"] == 1


@pytest.mark.parametrize("how", [["--vllm-shared-server"], ["-o", "vllm_shared_server=true"]])
def test_on_a_shared_server_a_stuck_gauge_is_a_note(
    pytester: pytest.Pytester, fault: FaultServer, how: list[str]
) -> None:
    fault.faults = {"running_stuck"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", NODE, *how)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*SharedServerNote: vllm:num_requests_running read 1 or more "
            "for 10 s with none of this run's requests in flight "
            "(--vllm-shared-server: noted, not failed)*"
        ]
    )
    assert "vllm:num_requests_running read 1" in str(_properties(pytester)["cancellation_note"])


def test_a_shared_server_still_has_to_free_dropped_streams(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    """The note moves the baseline to the level seen, never past a leak of our own."""
    fault.faults = {"running_stuck", "cancel_leak"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", NODE, "--vllm-shared-server")
    result.assert_outcomes(failed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*Dropped streams keep running*", "*expected: back to 1 within 10 s*"]
    )


def test_a_clean_server_reads_zero(pytester: pytest.Pytester, fault: FaultServer) -> None:
    result = pytester.runpytest(f"--vllm-url={fault.url}", NODE)
    result.assert_outcomes(passed=1)
    assert _properties(pytester)["cancellation_idle_running"] == 0


# issue 14 review: under -n N the other tests hold the per-server lock shared, so none of them
# keeps a request running while cancellation waits for an idle server
def test_idle_means_zero_holds_under_xdist(pytester: pytest.Pytester, fault: FaultServer) -> None:
    result = pytester.runpytest_subprocess(
        f"--vllm-url={fault.url}",
        "-n",
        "2",
        "-p",
        "xdist",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "-m",
        "cancellation or streaming or compliance",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 20 and "failed" not in outcomes, result.stdout.str()[-4000:]
    assert "errors" not in outcomes and "error" not in outcomes, result.stdout.str()[-4000:]


def test_a_compliance_test_waits_while_a_measurement_holds_the_lock(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    """The shared lock, shown directly: while another run measures (holds the lock alone), a
    compliance test does not start; it runs once the measurement is over."""
    import fcntl
    import hashlib
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    digest = hashlib.sha256(fault.url.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"vllm-conformance-{digest}.lock"
    with path.open("w") as measuring:
        fcntl.flock(measuring, fcntl.LOCK_EX)
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                f"--vllm-url={fault.url}",
                "-p",
                "no:randomly",
                "-p",
                "no:cacheprovider",
                "-k",
                "test_models_match_the_schema",
                "-q",
            ],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                run.wait(timeout=8)  # a few seconds more than the run needs unlocked
        finally:
            fcntl.flock(measuring, fcntl.LOCK_UN)
        out, _ = run.communicate(timeout=60)
    assert run.returncode == 0 and "1 passed" in out, out[-3000:]
