"""Early verdicts: a latency level stops once its SLO miss is sure, and says so.

Requests are counted on the fault server (``hits_by_path``), never timed.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import warnings

import numpy as np
import pytest

from pytest_vllm_conformance.client import AsyncClient
from pytest_vllm_conformance.perf import latency
from pytest_vllm_conformance.perf.early_stop import EarlyStop, tolerated_exceeding
from pytest_vllm_conformance.perf.latency import Level, Sample
from pytest_vllm_conformance.perf.stats import Summary, percentile
from tests.fault_server import MODEL, FaultServer

C1 = "test_latency.py::test_streamed_completions_at_each_concurrency_level[c1]"
C8 = "test_latency.py::test_streamed_completions_at_each_concurrency_level[c8]"
SIZED = [
    "--vllm-latency-requests=40",
    "--vllm-latency-warmup=0",
    "--vllm-latency-max-tokens=8",
    "-p",
    "no:randomly",
]
COMPLETIONS = "/v1/completions"
PROBE = 1  # the session's readiness check sends one max_tokens=1 completion (target.py)


@pytest.mark.parametrize("q", [50.0, 90.0, 95.0, 99.0, 100.0])
@pytest.mark.parametrize("planned", [1, 2, 3, 4, 5, 10, 19, 20, 21, 40, 100, 101, 1000])
def test_tolerated_exceeding_is_exact_for_numpys_linear_percentile(planned: int, q: float) -> None:
    """k values above the limit can still pass; k + 1 cannot, whatever the others are."""
    k = tolerated_exceeding(planned, q)
    limit = 100.0
    assert 0 <= k < planned
    just_over = limit * 1.001  # interpolation fractions are multiples of 1/100 for whole q
    passing = [0.0] * (planned - k) + [just_over] * k
    assert np.percentile(passing, q) <= limit and percentile(sorted(passing), q) <= limit
    rng = random.Random(planned * 1000 + int(q))
    for _ in range(20):  # k + 1 above the limit: a miss, the others anything within it
        rest = [rng.uniform(0, limit) for _ in range(planned - k - 1)]
        over = [limit + rng.uniform(1e-9, 500) for _ in range(k + 1)]
        values = rest + over
        assert np.percentile(values, q) > limit
        assert getattr(Summary.of(values), "max" if q == 100 else f"p{q:.0f}") > limit
    for fewer in range(k + 1, planned + 1):  # failures leave fewer values: still a miss
        assert tolerated_exceeding(fewer, q) <= k


def test_tolerated_exceeding_edge_cases() -> None:
    assert tolerated_exceeding(1, 95) == 0  # one request: its own value is every percentile
    assert tolerated_exceeding(2, 50) == 1  # [0, 900] has p50 450
    assert tolerated_exceeding(101, 95) == 5  # pos 95 exactly: the sixth value decides
    assert tolerated_exceeding(100, 95) == 5  # pos 94.05
    assert tolerated_exceeding(40, 95) == 2  # pos 37.05
    assert tolerated_exceeding(100, 100) == 0  # max: the first one over decides
    assert tolerated_exceeding(0, 95) == 0


def test_error_rate_stops_once_failures_exceed_the_share_of_planned_requests() -> None:
    rule = EarlyStop.from_slo({"error_rate": 0.1}, planned=30, embeddings=False)
    assert rule is not None
    failed = latency.Exchange(None, 0.0, lambda: Sample(False, "HTTP 503: busy"))
    reasons = [rule.observe(failed) for _ in range(4)]
    assert reasons[:3] == ["", "", ""]  # 3 of 30 is exactly 0.1: still a pass
    assert reasons[3] == (
        "stopped after 4 of 30 requests: 4 failed, more than error_rate 0.1 "
        "allows of 30, so the error rate cannot come back under it"
    )
    level = Level("x", [Sample(False, "e")] * 4, 1.0)
    assert level.error_rate > 0.1


def test_lower_limits_means_and_per_chunk_figures_never_stop_a_level() -> None:
    slo = {
        "min_rps": 100.0,
        "e2e_mean_ms": 1.0,
        "tpot_p95_ms": 1.0,
        "itl_p99_ms": 1.0,
        "embeddings_per_s": 1e9,
        "embeddings_p95_ms": 1.0,
    }
    assert EarlyStop.from_slo(slo, planned=10, embeddings=False) is None
    assert EarlyStop.from_slo({"e2e_p95_ms": 1.0}, planned=10, embeddings=True) is None
    assert EarlyStop.from_slo({"e2e_p95_ms": 1.0}, planned=0, embeddings=False) is None


def _run(
    pytester: pytest.Pytester, fault: FaultServer, test: str, *options: str
) -> tuple[pytest.RunResult, dict[str, object], dict[str, int]]:
    """Run one bundled test; its result, its recorded properties, the requests it sent."""
    before = dict(fault.hits_by_path)  # the server lives for the session: count the increase
    result = pytester.runpytest(f"--vllm-url={fault.url}", test, "--vllm-json=out/r.json", *options)
    sent = {path: n - before.get(path, 0) for path, n in fault.hits_by_path.items()}
    doc = json.loads((pytester.path / "out" / "r.json").read_text())
    props: dict[str, object] = next(
        t for t in doc["tests"] if t["nodeid"].endswith(test.split("::")[1])
    )["properties"]
    return result, props, sent


def test_a_slow_server_stops_the_level_after_a_handful_of_requests(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults.add("slow_first_token")  # every answer starts 1.5 s late
    result, props, sent = _run(
        pytester, fault, C1, "--vllm-slo=e2e_p95_ms=500", "--vllm-latency-concurrency=1", *SIZED
    )
    result.assert_outcomes(failed=1)
    assert sent[COMPLETIONS] - PROBE == tolerated_exceeding(40, 95) + 1 == 3  # not 40
    result.stdout.fnmatch_lines(
        [
            "*Latency SLO missed*",
            "*stopped after 3 of 40 requests: 3 exceeded E2E 500 ms, so "
            "e2e_p95 cannot come back under it*",
        ]
    )
    assert props["concurrency 1: stopped_early"] == (
        "stopped after 3 of 40 requests: 3 exceeded E2E 500 ms, so e2e_p95 cannot come back "
        "under it"
    )
    assert props["concurrency 1: requests"] == 3


def test_errors_under_load_stop_the_level_at_the_first_failures(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults.add("errors_under_load")  # a 503 once 4 are in flight
    result, props, sent = _run(
        pytester, fault, C8, "--vllm-slo=error_rate=0", "--vllm-latency-concurrency=8", *SIZED
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Requests failed under load*",
            "*stopped after * of 40 requests: 1 failed, more than error_rate 0 allows of 40*",
        ]
    )
    assert sent[COMPLETIONS] - PROBE < 20  # the first failures come within 8 or so
    assert str(props["concurrency 8: stopped_early"]).startswith("stopped after ")


def test_a_clean_server_runs_every_request_at_the_same_settings(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    result, props, sent = _run(
        pytester,
        fault,
        C1,
        "--vllm-slo=e2e_p95_ms=500,error_rate=0",
        "--vllm-latency-concurrency=1",
        *SIZED,
    )
    result.assert_outcomes(passed=1)
    assert sent[COMPLETIONS] - PROBE == 40
    assert props["concurrency 1: requests"] == 40
    assert "concurrency 1: stopped_early" not in props
    assert "stopped after" not in result.stdout.str()


def test_an_open_loop_level_stops_too_and_sends_no_more_arrivals(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults.add("slow_first_token")
    test = "test_latency.py::test_streamed_completions_at_an_open_loop_arrival_rate"
    result, props, sent = _run(
        pytester, fault, test, "--vllm-slo=e2e_p95_ms=500", "--vllm-latency-rate=2", *SIZED
    )
    result.assert_outcomes(failed=1)
    assert sent[COMPLETIONS] - PROBE < 40
    assert "stopped after" in str(props["rate 2/s, burstiness 1: stopped_early"])


def test_an_embeddings_level_stops_on_its_own_limit(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults.add("embed_slow")  # 0.6 s each, over the default embeddings_p95_ms=500
    test = "test_latency.py::test_embeddings_latency_and_rate[single]"
    result, props, sent = _run(
        pytester,
        fault,
        test,
        f"--vllm-embedding-model={MODEL}",
        "--vllm-latency-concurrency=1",
        *SIZED,
    )
    result.assert_outcomes(failed=1)
    assert sent["/v1/embeddings"] < 40
    assert "embeddings E2E 500 ms" in str(props["embeddings batch 1, concurrency 1: stopped_early"])


def test_requests_in_flight_are_cancelled_cleanly(fault: FaultServer) -> None:
    """The level returns what finished; the cancelled streams' sockets are closed (no
    ResourceWarning) and no task is left pending."""
    fault.faults.add("slow_first_token")
    client = AsyncClient(fault.url)
    before = fault.hits_by_path[COMPLETIONS]

    async def send(intended: float) -> latency.Finish:
        body = {"model": MODEL, "prompt": "hi", "max_tokens": 4, "stream": True}
        return latency.streamed(await client.stream("/v1/completions", body), intended)

    async def level() -> Level:
        rule = EarlyStop.from_slo({"e2e_max_ms": 500.0}, planned=50, embeddings=False)
        return await latency.closed_loop("c4", send, 4, 50, stop=rule)

    loop = asyncio.new_event_loop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        measured = loop.run_until_complete(level())
        loop.run_until_complete(asyncio.sleep(0.2))  # let the closed transports finish
        pending = asyncio.all_tasks(loop)
        loop.close()
    assert not pending
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert fault.hits_by_path[COMPLETIONS] - before == 4  # the first wave; none sent after the stop
    assert len(measured.samples) >= 1 and measured.stopped_early.startswith(
        f"stopped after {len(measured.samples)} of 50 requests: 1 exceeded E2E 500 ms"
    )
    assert all(s.ok and s.e2e_ms > 500 for s in measured.samples)
    assert math.isfinite(measured.wall_s)


# issue 14 review: early verdicts can be turned off from the command line
@pytest.mark.parametrize(
    "how", [["--vllm-latency-early-stop=off"], ["-o", "vllm_latency_early_stop=off"]]
)
def test_early_stop_off_sends_every_planned_request(
    pytester: pytest.Pytester, fault: FaultServer, how: list[str]
) -> None:
    fault.faults.add("slow_first_token")  # every answer starts 1.5 s late: a sure miss
    result, props, sent = _run(
        pytester,
        fault,
        C8,
        "--vllm-slo=e2e_p95_ms=500",
        "--vllm-latency-concurrency=8",
        *SIZED,
        *how,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Latency SLO missed*"])
    assert sent[COMPLETIONS] - PROBE == 40  # all of them, not 3
    assert props["concurrency 8: requests"] == 40
    assert "concurrency 8: stopped_early" not in props


def test_early_stop_takes_only_on_or_off(pytester: pytest.Pytester, fault: FaultServer) -> None:
    result = pytester.runpytest(f"--vllm-url={fault.url}", "--vllm-latency-early-stop=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--vllm-latency-early-stop must be one of on, off, got 'maybe'.*"]
    )


def test_the_keys_that_end_a_level_early_are_the_configurations_slo_keys() -> None:
    """Early stop reads its key names from config.parsers: per-request order statistics."""
    from pytest_vllm_conformance.config.parsers import SLO_METRICS, SLO_STATS, valid_slo_key
    from pytest_vllm_conformance.perf.early_stop import _UPPER

    early = {
        f"{m}_{s}_ms" for m in SLO_METRICS for s in SLO_STATS if _UPPER.fullmatch(f"{m}_{s}_ms")
    }
    assert all(valid_slo_key(k) for k in early)
    assert {k.split("_")[0] for k in early} == {"ttft", "e2e", "queue", "embeddings"}
    assert {k.split("_")[1] for k in early} == {"p50", "p90", "p95", "p99", "max"}
