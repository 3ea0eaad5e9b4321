"""The bundled health suite: passes on a well-behaved server, fails on exactly its defect."""

from __future__ import annotations

import pytest

from tests.fault_server import FaultServer


def test_a_well_behaved_server_passes_everything(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    result = pytester.runpytest(f"--vllm-url={fault.url}", "-v", "-m", "health")
    result.assert_outcomes(passed=5, deselected=result.parseoutcomes()["deselected"])
    result.stdout.fnmatch_lines(["*vllm-conformance: http://127.0.0.1:* model fault-model*"])


@pytest.mark.parametrize(
    ("fault_name", "failing_test", "title"),
    [
        (
            "stream_no_done",
            "test_canary_stream_ends_with_done",
            "Stream does not end with [[]DONE]",
        ),
        ("stream_bad_frame", "test_canary_stream_ends_with_done", "Malformed SSE framing"),
        (
            "stream_wrong_type",
            "test_canary_stream_ends_with_done",
            "Stream is not text/event-stream",
        ),
        (
            "max_tokens_ignored",
            "test_canary_request_with_one_token*",
            "max_tokens=1 canary produced more than one token",
        ),
    ],
)
def test_each_check_fails_on_its_defect(
    pytester: pytest.Pytester, fault: FaultServer, fault_name: str, failing_test: str, title: str
) -> None:
    fault.faults = {fault_name}
    result = pytester.runpytest(f"--vllm-url={fault.url}", "-rf", "-m", "health")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1
    result.stdout.fnmatch_lines(
        [f"*{title}*", "*reproduce: curl -sS*", f"FAILED *::{failing_test}*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_marker_selection_runs_one_suite(pytester: pytest.Pytester, fault: FaultServer) -> None:
    result = pytester.runpytest(f"--vllm-url={fault.url}", "-m", "health and streaming")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 1 and outcomes["deselected"] > 50


def test_the_suites_run_under_xdist(pytester: pytest.Pytester, fault: FaultServer) -> None:
    fault.faults = {"stream_no_done"}
    result = pytester.runpytest_subprocess(
        f"--vllm-url={fault.url}", "-n", "2", "-p", "xdist", "-m", "health"
    )
    assert result.parseoutcomes()["passed"] == 4 and result.parseoutcomes()["failed"] == 1
