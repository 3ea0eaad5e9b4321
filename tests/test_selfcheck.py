"""The harness's own timing self-check (issue 15): it fires when starved and stays quiet when calm.

No timed assertions: a starved client is made so by a real-time busy loop on its CPU (or a
loop blocked on purpose), and only the verdicts are asserted; the benchmarks hold the numbers.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_conformance.checks.slo import Slo, slo_met
from pytest_vllm_conformance.client import http
from pytest_vllm_conformance.client.records import Timings
from pytest_vllm_conformance.perf import latency, selfcheck
from pytest_vllm_conformance.perf.latency import Level, Sample
from tests.fault_server import FaultServer

LATENCY_C1 = "test_latency.py::test_streamed_completions_at_each_concurrency_level[c1]"
SMALL = [
    "--vllm-latency-concurrency=1",
    "--vllm-latency-requests=12",
    "--vllm-latency-warmup=0",
    "--vllm-latency-max-tokens=16",
]
LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="schedstat is Linux's")

# -- the rule, with synthetic figures ---------------------------------------------------------
CALM: dict[str, Any] = dict(
    wall_s=1.0,
    source="schedstat",
    runqueue_per_wakeup_ms=0.05,
    involuntary_switches=3,
    loop_lag_p99_ms=0.4,
    cpu_percent=8.0,
    text_chunks=1000,
    merged_chunks=20,
    read_gap_p50_ms=10.0,
    requests=100,
    slow_writes=0,
    tolerance_ms=2.0,
)


def test_a_calm_level_is_not_client_limited() -> None:
    assert selfcheck.judge(**CALM) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"runqueue_per_wakeup_ms": 41.0}, "waited 41 ms per wake-up for a CPU (tolerance 2 ms)"),
        ({"loop_lag_p99_ms": 3.0}, "event loop ran 3 ms late at p99"),
        ({"merged_chunks": 101}, "101 of 1000 text chunks arrived several to a read"),
        ({"slow_writes": 2}, "2 of 100 requests blocked in their write"),
        ({"cpu_percent": 95.0}, "the harness used 95% of a core"),
        (
            {"source": "rusage", "runqueue_per_wakeup_ms": math.nan, "involuntary_switches": 51},
            "preempted 51 times",
        ),
    ],
)
def test_each_figure_beyond_its_limit_makes_the_level_client_limited(
    change: dict[str, Any], words: str
) -> None:
    reasons = selfcheck.judge(**(CALM | change))
    assert len(reasons) == 1 and words in reasons[0], reasons


def test_merged_reads_of_a_fast_stream_are_harmless() -> None:
    """Chunks sent 1 ms apart and read together move no stamp beyond a 2 ms tolerance."""
    assert selfcheck.judge(**(CALM | {"merged_chunks": 900, "read_gap_p50_ms": 1.0})) == []


def test_merged_counts_text_chunks_that_share_a_read() -> None:
    assert latency.merged([1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0]) == 5
    assert latency.merged([1.0, 2.0, 3.0]) == 0


def test_the_tolerance_is_five_percent_of_the_smallest_p50() -> None:
    samples = [Sample(True, ttft_ms=100.0, e2e_ms=1000.0, client_chunks=10)] * 5
    loop = asyncio.new_event_loop()
    with selfcheck.Monitor(loop) as m:
        pass
    loop.close()
    assert m.result(samples).tolerance_ms == pytest.approx(5.0)
    assert m.result([]).tolerance_ms == 2.0
    assert m.result(samples, min_tolerance_ms=50.0).tolerance_ms == 50.0


def test_a_blocked_event_loop_is_seen_standalone() -> None:
    """The benchmark's use: a loop blocked 30 ms at a time is client-limited, with a reason."""

    async def blocked() -> selfcheck.ClientHealth:
        with selfcheck.Monitor(asyncio.get_running_loop()) as m:
            for _ in range(20):
                await asyncio.sleep(0.006)
                time.sleep(0.03)  # the harness busy elsewhere: every timer waits for it
        return m.result(min_tolerance_ms=2.0)

    health = asyncio.run(blocked())
    assert health.client_limited and "event loop ran" in health.reason, health
    assert health.loop_lag_max_ms >= 20  # a blocked loop cannot fire early


# -- the send stamp precedes the write ---------------------------------------------------------
class _Transport(asyncio.Transport):
    def __init__(self, pending: int = 0, block_s: float = 0.0) -> None:
        super().__init__()
        self.written_at = 0.0
        self.pending, self.block_s = pending, block_s

    def write(self, data: Any) -> None:
        self.written_at = time.perf_counter()
        time.sleep(self.block_s)

    def get_write_buffer_size(self) -> int:
        return self.pending

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _exchange(transport: _Transport) -> Timings:
    loop = asyncio.new_event_loop()
    try:
        timings = Timings(scheduled=time.perf_counter())
        http._Exchange(b"GET / HTTP/1.1\r\n\r\n", timings, 1024, None, loop).connection_made(
            transport
        )
        return timings
    finally:
        loop.close()


def test_the_send_stamp_is_taken_before_the_write() -> None:
    transport = _Transport(block_s=0.01)
    timings = _exchange(transport)
    assert 0 < timings.sent <= transport.written_at
    assert timings.write_s >= 0.01 and timings.write_pending == 0  # the blocked write is kept


def test_a_write_the_socket_did_not_take_whole_is_recorded_not_judged_blocked() -> None:
    """A body larger than the send buffer leaves bytes pending (flow control): with a tiny
    measured write time it is no blocked write (issue 14 review: it was ``inf``)."""
    timings = _exchange(_Transport(pending=512))
    assert timings.write_pending == 512
    response: Any = type("R", (), {"timings": timings})()
    assert latency.write_ms(response) == timings.write_s * 1000 < 10
    timings.write_pending, timings.write_s = 8 << 20, 0.0002  # a 8 MiB prompt, written at once
    assert latency.write_ms(response) == pytest.approx(0.2)


# -- against the server's own histograms and the SLO verdict ----------------------------------
def _level(ttft: float, e2e: float, floor: dict[str, float] | None = None) -> Level:
    level = Level("concurrency 1", [Sample(True, ttft_ms=ttft, e2e_ms=e2e)] * 9, 1.0)
    level.server_floor = floor or {}
    level.server_inconsistent = selfcheck.against_server(level)
    return level


def test_a_client_p50_below_the_servers_median_bucket_is_impossible() -> None:
    assert selfcheck.against_server(_level(20.0, 400.0, {"ttft_ms": 10.0, "e2e_ms": 250.0})) == ""
    bad = _level(0.336, 0.377, {"ttft_ms": 5.0, "e2e_ms": 250.0})
    assert "client TTFT p50 0.336 ms is below 5 ms" in bad.server_inconsistent
    assert "client E2E p50 0.377 ms is below 250 ms" in bad.server_inconsistent
    with pytest.raises(selfcheck.HarnessLimited) as caught:
        slo_met(bad, Slo(limits={"e2e_p95_ms": 5000.0}))  # met, and still no pass
    assert caught.value.title == selfcheck.HARNESS_IMPOSSIBLE
    assert "impossible against the server's own histograms" in caught.value.received


def test_the_bucket_floor_is_the_lower_bound_of_the_medians_bucket() -> None:
    assert latency.bucket_floor(0.5, {}, {0.01: 2.0, 0.025: 10.0, math.inf: 10.0}) == 0.01
    assert latency.bucket_floor(0.5, {}, {0.01: 6.0, math.inf: 10.0}) == 0.0
    assert math.isnan(latency.bucket_floor(0.5, {}, {0.01: 0.0, math.inf: 0.0}))


def _limited(level: Level) -> Level:
    level.client = selfcheck.ClientHealth(
        wall_s=1.0,
        source="schedstat",
        runqueue_delay_ms=400.0,
        timeslices=10,
        runqueue_per_wakeup_ms=40.0,
        involuntary_switches=9,
        loop_lag_p99_ms=1.0,
        loop_lag_max_ms=1.0,
        cpu_percent=5.0,
        text_chunks=0,
        merged_chunks=0,
        read_gap_p50_ms=math.nan,
        requests=9,
        slow_writes=0,
        write_max_ms=0.1,
        tolerance_ms=2.0,
        client_limited=True,
        reason="the harness waited 40 ms per wake-up for a CPU (tolerance 2 ms)",
    )
    return level


def test_an_slo_verdict_on_a_client_limited_level_is_never_a_pass() -> None:
    level = _limited(_level(20.0, 400.0))
    with pytest.raises(selfcheck.HarnessLimited) as caught:
        slo_met(level, Slo(limits={"e2e_p95_ms": 5000.0}))
    assert caught.value.title == selfcheck.HARNESS_LIMITED
    assert "waited 40 ms per wake-up" in caught.value.received
    assert "harness_runqueue_delay_ms = 40.0" in caught.value.detail
    props = dict(latency.properties(level))
    assert props["client_limited"] is True and props["harness_runqueue_delay_ms"] == 40.0


def test_failed_requests_stay_failed_on_a_client_limited_level() -> None:
    level = _limited(_level(20.0, 400.0))
    level.samples.append(Sample(False, "HTTP 503: busy"))
    with pytest.raises(AssertionError) as caught:
        slo_met(level, Slo(limits={"error_rate": 0.0}))
    assert not isinstance(caught.value, selfcheck.HarnessLimited)


# -- the bundled latency suite, starved on purpose and calm ------------------------------------
_BUSY = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
end = time.monotonic() + float(sys.argv[2])
print("spinning", flush=True)
while time.monotonic() < end:
    spin = time.monotonic() + 0.150
    while time.monotonic() < spin:
        pass
    time.sleep(0.050)
"""
# Runs pytest pinned to one CPU; "fifo" also at real-time priority (calm whatever else runs).
_PINNED = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
if sys.argv[2] == "fifo":
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[3:]])
"""


def _cpu() -> int:
    return max(os.sched_getaffinity(0))


def _need_realtime() -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode:
        pytest.skip("real-time scheduling is not permitted here (EPERM)")


@contextmanager
def _busy_loop(cpu: int, seconds: float) -> Iterator[None]:
    """A real-time process taking ``cpu`` 150 ms of every 200, bounded to ``seconds``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _BUSY, str(cpu), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "spinning"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _suite(
    pytester: pytest.Pytester, fault: FaultServer, policy: str, *extra: str
) -> tuple[pytest.RunResult, dict[str, Any], Path]:
    args = [
        f"--vllm-url={fault.url}",
        LATENCY_C1,
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "-rf",
        *SMALL,
        "--vllm-json=r.json",
        "--vllm-html=r.html",
        "--junitxml=j.xml",
        *extra,
    ]
    result = pytester.run(sys.executable, "-c", _PINNED, str(_cpu()), policy, *args, timeout=240)
    props = json.loads((pytester.path / "r.json").read_text())["tests"][0]["properties"]
    return result, props, pytester.path


@LINUX
def test_a_starved_harness_says_so_and_gives_no_verdict(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    _need_realtime()
    with _busy_loop(_cpu(), 200):
        result, props, where = _suite(pytester, fault, "normal")
    out = result.stdout.str()
    assert props["concurrency 1: client_limited"] is True, props
    assert props["concurrency 1: client_limited_reason"]
    assert props["concurrency 1: harness_runqueue_delay_ms"] is not None
    assert result.parseoutcomes().get("failed") == 1 and "passed" not in result.parseoutcomes()
    assert selfcheck.HARNESS_LIMITED in out and "Traceback" not in out
    assert "harness: concurrency 1: the harness was client-limited" in out  # the terminal
    assert "the harness was client-limited" in (where / "r.html").read_text()
    junit = {p.get("name"): p.get("value") for p in ET.parse(where / "j.xml").iter("property")}
    assert junit["concurrency 1: client_limited"] == "True"
    assert "client-limited" in (junit["concurrency 1: harness"] or "")


@LINUX
def test_a_calm_harness_is_not_client_limited(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    """Pinned and at real-time priority, as a harness kept off the server's cores would be."""
    _need_realtime()
    result, props, _ = _suite(pytester, fault, "fifo")
    assert props["concurrency 1: client_limited"] is False, props
    assert props["concurrency 1: client_limited_reason"] == ""
    assert props["concurrency 1: server_inconsistent"] is False
    result.assert_outcomes(passed=1)
