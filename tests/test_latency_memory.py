"""The figures behind the latency and memory suites: percentiles, histograms, SLOs, Theil-Sen."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pytest_vllm_conformance.checks.slo import Slo, slo_met
from pytest_vllm_conformance.config import parsers
from pytest_vllm_conformance.perf import latency, memory, slo
from pytest_vllm_conformance.perf.latency import Level, Sample
from pytest_vllm_conformance.perf.stats import Summary, percentile


def test_percentiles_are_numpys_linear_definition() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert [percentile(values, q) for q in (0, 40, 50, 90, 100)] == [15, 29, 35, 46, 50]
    s = Summary.of([3.0, 1.0, 2.0])
    assert (s.count, s.min, s.mean, s.p50, s.max) == (3, 1, 2, 2, 3)
    assert Summary.of([]).count == 0 and math.isnan(Summary.of([]).p99)


def test_histogram_quantile_matches_prometheus() -> None:
    text = """# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} %d
vllm:time_to_first_token_seconds_bucket{le="0.2",model_name="m"} %d
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} %d
vllm:time_to_first_token_seconds_count{model_name="m"} %d
vllm:time_to_first_token_seconds_sum{model_name="m"} 1.0
"""
    before = text % (5, 5, 5, 5)
    after = text % (15, 25, 25, 25)  # +10 in (0, 0.1], +10 in (0.1, 0.2]
    view = latency.server_view(before, after)
    assert view["ttft_ms"]["p50"] == pytest.approx(100.0)  # rank 10 ends the first bucket
    assert view["ttft_ms"]["p95"] == pytest.approx(190.0)  # 9 of 10 into the second


def _level(e2e: list[float], errors: int = 0, wall: float = 1.0) -> Level:
    samples = [
        Sample(True, e2e_ms=v, ttft_ms=v / 10, server_tokens=10, client_chunks=10) for v in e2e
    ] + [Sample(False, "HTTP 503: busy")] * errors
    return Level("concurrency 4", samples, wall)


def test_slo_sources_and_judgement() -> None:
    assert parsers.slo("ttft_p95_ms=500, error_rate=0.01") == {
        "ttft_p95_ms": 500.0,
        "error_rate": 0.01,
    }
    assert parsers.slo("none") is None
    for bad in ("ttft_p95=5", "latency=3", "ttft_p95_ms=-1", "e2e_p99_ms=fast"):
        with pytest.raises(pytest.UsageError, match="KEY=NUMBER"):
            parsers.slo(bad)
    assert slo.limits({}, None) == slo.DEFAULTS
    assert slo.limits(None, None) == {}
    marker = pytest.mark.latency(ttft_p95_ms=300).mark
    assert slo.limits({"ttft_p95_ms": 900}, marker)["ttft_p95_ms"] == 300
    level = _level([100.0] * 19 + [6000.0], errors=1)
    rows = {k: met for k, _, _, met in slo.judge(level, slo.DEFAULTS)}
    assert rows == {"e2e_p95_ms": True, "error_rate": False}  # p95 of 20 is below the outlier
    with pytest.raises(AssertionError) as caught:
        slo_met(level, Slo(limits={"e2e_p99_ms": 1000.0, "error_rate": 0.0}))
    text = caught.value.render()  # type: ignore[attr-defined]
    assert "| e2e_p99_ms |" in text and "MISSED" in text and "1x HTTP 503: busy" in text


def test_goodput_throughput_and_token_counts() -> None:
    level = _level([100.0, 200.0, 300.0, 400.0], wall=2.0)
    level.samples[0].client_chunks = 9
    assert level.goodput({"e2e_ms": 250.0}) == 1.0  # 2 good requests in 2 s
    assert level.rates()["requests_per_s"] == 2.0
    assert level.token_counts() == (40, 39, 1)


@pytest.mark.parametrize("burstiness", [1.0, 0.25])
def test_arrivals_have_the_asked_rate(burstiness: float) -> None:
    draw = latency.arrivals(20.0, burstiness, seed=3)
    gaps = [draw() for _ in range(20000)]
    mean = sum(gaps) / len(gaps)
    cv = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) / mean
    assert mean == pytest.approx(0.05, rel=0.05)
    assert cv == pytest.approx(1 / math.sqrt(burstiness), rel=0.1)  # gamma: cv = 1/sqrt(k)


def test_theil_sen_is_exact_on_a_line_and_robust_to_outliers() -> None:
    ts = [float(t) for t in range(60)]
    fit = memory.theil_sen(ts, [100 + 0.5 * t for t in ts])
    assert fit.slope == fit.low == fit.high == pytest.approx(0.5 * 3600)
    spiky = [100 + 0.5 * t + (500 if t % 10 == 0 else 0) for t in ts]
    assert memory.theil_sen(ts, spiky).slope == pytest.approx(1800, rel=0.05)


def test_theil_sen_interval_covers_the_true_slope_about_95_percent() -> None:
    rng = random.Random(7)
    ts = [t * 0.5 for t in range(40)]
    covered = 0
    for _ in range(300):
        fit = memory.theil_sen(ts, [50 + 0.01 * t + rng.gauss(0, 0.2) for t in ts])
        covered += fit.low <= 36.0 <= fit.high  # 0.01 MB/s = 36 MB/h
    assert 0.90 <= covered / 300 <= 0.99


def test_durations_parse() -> None:
    assert [parsers.duration_s(x) for x in ("90", "90s", "10m", "24h")] == [90, 90, 600, 86400]
    for bad in ("", "h", "-5s", "soon"):
        with pytest.raises(ValueError):
            parsers.duration_s(bad)


def test_process_tree_rss_counts_the_children() -> None:
    code = (
        "import subprocess, sys, time; b = bytearray(60 * 2**20); "
        "c = subprocess.Popen([sys.executable, '-c', "
        "'b = bytearray(60 * 2**20); import time; time.sleep(30)']); time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        read = memory.process_tree_rss(parent.pid)
        deadline = time.monotonic() + 15
        while (value := read() or 0) < 120 * memory.MB and time.monotonic() < deadline:
            time.sleep(0.1)
        assert value >= 120 * memory.MB  # both processes' 60 MB
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert memory.process_tree_rss(parent.pid)() is None


def test_metrics_rss_sums_the_series() -> None:
    text = "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1048576.0\n"
    assert memory.metrics_rss(text) == 1048576.0
    assert memory.metrics_rss("# TYPE x counter\nx_total 1.0\n") is None


# issue 14 review: a window whose samples cannot give a finite slope is no pass
def test_a_window_without_a_finite_fit_could_not_be_sampled() -> None:
    run = memory.MemoryRun("rss", warmup_s=10.0)
    run.samples = [(t * 0.5, 100.0 * memory.MB, 50.0 * memory.MB) for t in range(21)]  # to 10 s
    assert memory.sampling_problem(run, run.server_fit()) == "1 samples after the 10 s warm-up"
    assert math.isnan(run.server_fit().low)  # what the old check compared with the limit
    run.samples += [(10.0, 101.0 * memory.MB, 0.0)] * 5  # kept, but all at one instant
    assert "no finite slope" in memory.sampling_problem(run, run.server_fit())
    run.samples += [(10.0 + t, (101.0 + t) * memory.MB, 0.0) for t in range(1, 4)]
    assert memory.sampling_problem(run, run.server_fit()) == ""
    assert (
        memory.sampling_problem(memory.MemoryRun("rss", 0.0, run.samples[:9]), run.server_fit())
        == "9 samples"
    )


def test_the_tiny_model_on_its_cpu_box_has_embeddings_limits_of_its_size() -> None:
    """--vllm-serve=tiny's embedding server (2 cores): 161 inputs/s and p95 279 ms measured."""
    tiny = slo.limits({}, None, slo.TINY_SERVE_DEFAULTS)
    assert (tiny["embeddings_p95_ms"], tiny["embeddings_per_s"]) == (1000, 50)
    assert {k: v for k, v in tiny.items() if not k.startswith("embeddings")} == {
        k: v for k, v in slo.DEFAULTS.items() if not k.startswith("embeddings")
    }
