"""The bundled suites against real engines started by the test session itself.

vLLM must pass everything (with embeddings from a second, pooling vLLM); llama.cpp and
``transformers serve`` must be run to the end, their departures reported as check
failures, never as errors of the harness.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_vllm_conformance.client import AsyncClient, Client
from pytest_vllm_conformance.target.discovery import discover
from tests.engines import VLLM_DEPARTURES, harness_cpus

# Latency and memory sized for a 2-core CPU box, with SLOs a tiny CPU model meets (the
# defaults are for real deployments: 100 requests per level, 60 s of memory load).
CPU_PERF = [
    "--vllm-latency-concurrency=1,8",
    "--vllm-latency-requests=16",
    "--vllm-latency-warmup=2",
    "--vllm-latency-max-tokens=32",
    "--vllm-latency-rate=8",
    "--vllm-memory-duration=15s",
    "--vllm-memory-max-growth=500",
    "--vllm-slo=ttft_p95_ms=1000,tpot_p95_ms=100,e2e_p95_ms=5000,"
    "embeddings_p95_ms=2000,embeddings_per_s=20,error_rate=0",
]


@pytest.fixture(autouse=True)
def _off_the_engines_cpus() -> Iterator[None]:
    """Measure from the CPUs the engines do not use, as the plugin does for its own server."""
    with harness_cpus():
        yield


def _identify(url: str, model: str | None = None) -> tuple[str, str | None, str]:
    with Client(AsyncClient(url)) as c:
        t = c.run(discover(c.aio, (url,), model=model, ready_within_s=30))
    return t.engine.name, t.engine.version, t.model


def _failed(result: pytest.RunResult) -> set[str]:
    return {line.split()[1] for line in result.stdout.lines if line.startswith("FAILED ")}


def _no_harness_errors(result: pytest.RunResult) -> None:
    out = result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), out
    assert result.parseoutcomes().get("errors", 0) == 0, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out


def test_vllm_is_identified(vllm_url: str) -> None:
    assert _identify(vllm_url) == ("vllm", "0.32.0", "tiny")


def test_llamacpp_is_identified(llamacpp_url: str) -> None:
    name, _, model = _identify(llamacpp_url)
    assert (name, model) == ("llama.cpp", "smollm2")


def test_every_bundled_suite_passes_against_vllm(
    pytester: pytest.Pytester, vllm_url: str, vllm_embed_url: str
) -> None:
    result = pytester.runpytest(
        f"--vllm-url={vllm_url}",
        f"--vllm-embedding-url={vllm_embed_url}",
        "--vllm-embedding-model=tiny-embed",
        "-rfEs",
        "-p",
        "no:randomly",
        *CPU_PERF,
        # the exact set of failures is the point here, not the harness self-check (held by
        # test_selfcheck): on 2 cores its event loop ran 2.07 ms late at p99 once in CI
        "--vllm-latency-harness-tolerance=50",
    )
    result.stdout.fnmatch_lines(["*vllm-conformance: * (vllm 0.32.0), model tiny, profile vllm"])
    _no_harness_errors(result)
    assert _failed(result) == VLLM_DEPARTURES, result.stdout.str()
    skipped = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    reasons = (
        "the vllm profile allows this",
        "no --vllm-api-key given",
        "one server: pass --vllm-url once per replica",
        "needs the two-instance service started by the plugin",
        "no --vllm-baseline given",
    )
    assert all(any(r in line for r in reasons) for line in skipped), skipped


def test_determinism_raises_no_false_alarm_on_vllm(
    pytester: pytest.Pytester, vllm_url: str
) -> None:
    """Twice more, the replica mode included (two spellings of one server)."""
    for _ in range(2):
        result = pytester.runpytest(
            f"--vllm-url={vllm_url}",
            f"--vllm-url={vllm_url}/v1",
            "-m",
            "determinism",
            "-p",
            "no:randomly",
            "-W",
            "error::UserWarning",
        )
        result.assert_outcomes(passed=11)  # 10 modes and the tool-call burst


def test_the_suites_give_the_same_results_under_xdist(
    pytester: pytest.Pytester, vllm_url: str
) -> None:
    # Three processes (controller, two workers) share the harness's one core here, so the
    # self-check may rightly call a 0.4 s latency level client-limited (one CI run: loop lag
    # p99 2.5 ms against 2 ms). This test is about equal outcomes; test_selfcheck holds the
    # self-check, so its tolerance is widened here as in test_certify.
    result = pytester.runpytest_subprocess(
        f"--vllm-url={vllm_url}",
        "-n",
        "2",
        "-p",
        "xdist",
        "-m",
        "not embeddings",
        *CPU_PERF,
        "--vllm-latency-harness-tolerance=50",
    )
    _no_harness_errors(result)
    assert _failed(result) == VLLM_DEPARTURES, result.stdout.str()


def test_the_suites_run_to_the_end_against_llamacpp(
    pytester: pytest.Pytester, llamacpp_url: str, llamacpp_embed_url: str
) -> None:
    result = pytester.runpytest(
        f"--vllm-url={llamacpp_url}",
        "-p",
        "no:randomly",
        f"--vllm-embedding-url={llamacpp_embed_url}",
        "--vllm-embedding-model=smollm2-embed",
        "--vllm-timeout=30",
        "--vllm-determinism-requests=10",
        *CPU_PERF,
    )
    result.stdout.fnmatch_lines(["*(llama.cpp *), model smollm2, profile openai"])
    _no_harness_errors(result)
    # Its real departures, each caught by the check meant for it.
    result.stdout.fnmatch_lines_random(
        [
            "FAILED *test_an_invalid_request_is_rejected[[]unknown-model]*",
            "FAILED *test_usage_chunk_is_last_with_empty_choices[[]completions-usage]*",
            # with jinja, SmolLM2's template has no tools: tool_choice is ignored, text answers
            "FAILED *test_required_gives_at_least_one_call*",
            "FAILED *test_a_named_function_gives_exactly_one_call_to_it*",
            # its Response objects lack required fields; its events carry no sequence_number
            "FAILED *test_a_response_matches_the_schema*",
            "FAILED *test_sequence_numbers_strictly_increase[[]plain]*",
        ]
    )
    # Determinism holds on llama.cpp but for its prompt cache, which changes greedy answers
    # now and then (seen in 5 of 7 runs here): a real finding, so either outcome is accepted.
    failed = [
        line
        for line in result.stdout.lines
        if line.startswith("FAILED") and "test_determinism" in line
    ]
    # The tool-call burst has no calls to compare (tools are ignored): its text answers
    # differ now and then for the same cache.
    allowed = ("test_prefix_cache_cold_and_warm", "tool_call_requests_gives_one_set_of_calls")
    assert all(any(a in line for a in allowed) for line in failed), failed


def test_llamacpp_without_jinja_declares_tool_calling_not_supported(
    pytester: pytest.Pytester, llamacpp_nojinja_url: str
) -> None:
    """Its 500 "tools param requires --jinja flag" is a declared gap, not a failure."""
    result = pytester.runpytest(
        f"--vllm-url={llamacpp_nojinja_url}",
        "-m",
        "tools or structured_outputs or responses",
        "--vllm-timeout=30",
        "-p",
        "no:randomly",
    )
    _no_harness_errors(result)
    result.stdout.fnmatch_lines_random(
        [
            "tools * 8 not supported (tool calling)",
            "structured_outputs 10 passed",
            "not supported: tool calling (8 tests): tools param requires --jinja flag",
        ]
    )


def test_transformers_serve_is_reported_for_its_missing_done(
    pytester: pytest.Pytester, transformers_url: tuple[str, str]
) -> None:
    url, model = transformers_url
    result = pytester.runpytest(
        f"--vllm-url={url}",
        f"--vllm-model={model}",
        "-m",
        "streaming",
        "--vllm-timeout=60",
        "-p",
        "no:randomly",
    )
    _no_harness_errors(result)
    result.stdout.fnmatch_lines(["*Stream does not end with [[]DONE]*"])


def test_replicas_are_all_checked_for_readiness(pytester: pytest.Pytester, vllm_url: str) -> None:
    result = pytester.runpytest(
        f"--vllm-url={vllm_url}", f"--vllm-url={vllm_url}/v1", "-m", "health"
    )
    result.stdout.fnmatch_lines(["vllm-conformance: replicas *"])
    assert result.ret == pytest.ExitCode.OK
