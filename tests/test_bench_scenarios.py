"""The harness benchmark's scenario machinery: the busy loop, the self-check adapter, the
tables and the "done means" checks (issue 15, item 6). Figures here are synthetic: the
benchmark itself holds the measured ones."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_clients  # noqa: E402
import bench_report  # noqa: E402
import busy_loop  # noqa: E402


# -- the busy loop ------------------------------------------------------------------------------
def test_spin_is_bounded_by_its_duration() -> None:
    started = time.monotonic()
    cycles = busy_loop.spin(on_s=0.01, off_s=0.01, duration_s=0.1)
    assert 1 <= cycles <= 10
    assert time.monotonic() - started < 5  # generous: it ends by itself, not by a kill


def test_the_real_time_loop_starts_spins_and_ends_by_itself() -> None:
    cpu = min(os.sched_getaffinity(0))
    try:
        proc = busy_loop.start(cpu, on_ms=5, off_ms=45, duration_s=0.5)
    except PermissionError as exc:
        pytest.skip(f"SCHED_FIFO refused here: {exc}")
    try:
        assert os.sched_getscheduler(proc.pid) == os.SCHED_FIFO
        assert os.sched_getaffinity(proc.pid) == {cpu}
        assert proc.wait(timeout=20) == 0  # ended by itself
    finally:
        busy_loop.stop(proc)


def test_a_refused_loop_says_so() -> None:
    if os.geteuid() == 0:
        # root may take SCHED_FIFO: refuse it by asking for a CPU that does not exist
        done = subprocess.run(
            [sys.executable, str(BENCH / "busy_loop.py"), "--cpu", "4095", "--duration-s", "1"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    else:
        done = subprocess.run(
            [sys.executable, str(BENCH / "busy_loop.py"), "--cpu", "0", "--duration-s", "1"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert done.returncode == busy_loop.REFUSED_EXIT
    assert done.stdout.startswith("refused: ")


# -- the self-check adapter ---------------------------------------------------------------------
class _StubMonitor:
    """selfcheck.Monitor's interface: a context manager around a level, then result()."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert loop is asyncio.get_running_loop()
        self.entered = self.exited = False

    def __enter__(self) -> _StubMonitor:
        self.entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.exited = True

    def result(self, samples: Any) -> Any:
        figures = SimpleNamespace(
            as_dict=lambda: {"loop_lag_p99_ms": 151.0, "samples": list(samples)}
        )
        return SimpleNamespace(
            client_limited=True, reason="its event loop ran late", as_dict=figures.as_dict
        )


def test_monitored_carries_the_verdict_and_its_figures() -> None:
    module = SimpleNamespace(Monitor=_StubMonitor)

    async def level() -> list[int]:
        return [1, 2]

    out, health = asyncio.run(bench_clients.monitored(level, lambda x: x, module))  # type: ignore[arg-type]
    assert out == [1, 2]
    assert health == {
        "client_limited": True,
        "reason": "its event loop ran late",
        "figures": {"loop_lag_p99_ms": 151.0, "samples": [1, 2]},
    }


def test_monitored_without_the_module_gives_no_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_clients, "selfcheck_module", lambda: None)

    async def level() -> str:
        return "ran"

    out, health = asyncio.run(bench_clients.monitored(level, lambda x: []))
    assert out == "ran"
    assert health["client_limited"] is None
    assert health["reason"] == bench_clients.NO_SELFCHECK


# -- tables and checks --------------------------------------------------------------------------
def _level(client: str, streams: int, bias: float, limited: bool | None) -> dict[str, Any]:
    return {
        "client": client,
        "streams": streams,
        "requests": 20,
        "failed": {},
        "true_ttft_p50_ms": 50.2,
        "ttft_bias_p50_ms": bias,
        "ttft_bias_p99_ms": bias + 1,
        "itl_bias_p50_ms": 0.01,
        "itl_bias_p99_ms": 0.1,
        "selfcheck": None
        if client == "vllm"
        else {"client_limited": limited, "reason": "late" if limited else "", "figures": {}},
    }


def test_the_starved_checks_pass_only_when_every_level_is_flagged() -> None:
    result: dict[str, Any] = {
        "scenario": "starved",
        "command": "python benchmarks/harness_bias.py",
        "levels": [
            _level("ours", 1, 148.7, True),
            _level("vllm", 1, 145.0, None),
            _level("ours", 32, 141.8, True),
        ],
    }
    text = bench_report.render(result)
    assert "| starved | pytest-vllm-conformance | 1 | 20 | 50.2 ms | +148.70 ms |" in text
    assert "| starved | vllm bench serve | 1 |" in text and "n/a (no self-check)" in text
    assert bench_report.all_met(result)
    result["levels"][2]["selfcheck"]["client_limited"] = False
    assert not bench_report.all_met(result)
    assert "NOT MET: starved, 32 streams: the level is client_limited" in bench_report.render(
        result
    )


def test_the_unstarved_checks_hold_bias_flags_and_chunk_rate() -> None:
    result: dict[str, Any] = {
        "scenario": "unstarved",
        "levels": [_level("ours", 1, 0.31, False), _level("ours", 32, 2.8, False)],
        "chunk_rate": [
            {
                "client": "ours",
                "streams": 256,
                "requests": 2048,
                "chunks": 131072,
                "chunks_per_s": 76320.0,
                "cpu_share": 0.99,
                "selfcheck": {"client_limited": True, "reason": "cpu"},
            }
        ],
    }
    text = bench_report.render(result)
    assert "| pytest-vllm-conformance | 256 | 131072 | 76,320 | 99% | yes |" in text
    assert bench_report.all_met(result)  # the saturated chunk-rate run may be flagged
    broken: dict[str, Any]
    for broken in ({"ttft_bias_p50_ms": 0.6}, {"selfcheck": {"client_limited": True}}):
        bad = {**result, "levels": [result["levels"][0] | broken, result["levels"][1]]}
        assert not bench_report.all_met(bad)
    slow = {**result, "chunk_rate": [result["chunk_rate"][0] | {"chunks_per_s": 39_000.0}]}
    assert "NOT MET: unstarved: chunk rate" in bench_report.render(slow)
    unknown = {**result, "levels": [_level("ours", 1, 0.3, None)]}
    assert "not measured: unstarved, 1 streams: the level is not flagged" in bench_report.render(
        unknown
    )
    assert not bench_report.all_met(unknown)


def _run(split: bool, users: int, client_p50: float, limited: bool) -> dict[str, Any]:
    return {
        "split": split,
        "users": users,
        "requests": 20,
        "failed": {},
        "selfcheck": {"client_limited": limited, "reason": ""},
        "client": {
            "ttft_ms": {"p50": client_p50, "p95": 30.0},
            "e2e_ms": {"p50": 400.0, "p95": 450.0},
        },
        "server": {
            "ttft_ms": {"p50": 8.8, "p95": 20.0, "p99": 25.0},
            "e2e_ms": {"p50": 395.0, "p95": 440.0, "p99": 445.0},
        },
        "server_floor_ms": {"ttft_ms": 5.0, "e2e_ms": 300.0},
    }


def test_the_real_checks_catch_an_impossible_client_p50() -> None:
    result = {"scenario": "real", "runs": [_run(True, 1, 9.5, False), _run(False, 1, 9.1, True)]}
    text = bench_report.render(result)
    assert "| yes | 1 | 20 | 9.5 ms / 30.0 ms | 8.8 ms / 20.0 ms | 5.0 ms |" in text
    assert bench_report.all_met(result)  # the unsplit run may be client-limited
    impossible = {"scenario": "real", "runs": [_run(True, 1, 0.336, False)]}
    assert "NOT MET: real, split=yes, 1 users: client TTFT p50 not below" in bench_report.render(
        impossible
    )
    limited = {"scenario": "real", "runs": [_run(True, 1, 9.5, True)]}
    assert not bench_report.all_met(limited)


def test_a_scenario_that_could_not_run_is_not_met() -> None:
    result = {
        "scenario": "starved",
        "levels": [],
        "runs": [],
        "note": "not run: the real-time busy loop was refused",
    }
    assert "Note: not run" in bench_report.render(result)
    assert not bench_report.all_met(result)
    starved = {"scenario": "starved", "levels": [_level("ours", 1, 148.7, True)]}
    assert bench_report.all_met(starved)
    intruded = starved | {"note": "figures NOT valid: other real-time processes ran"}
    assert not bench_report.all_met(intruded)


def test_the_median_bucket_floor() -> None:
    before = {0.01: 0.0, 0.1: 0.0, 1.0: 0.0, math.inf: 0.0}
    after = {0.01: 1.0, 0.1: 2.0, 1.0: 10.0, math.inf: 10.0}
    assert bench_report.median_bucket_floor(before, after) == 0.1  # median in (0.1, 1.0]
    assert (
        bench_report.median_bucket_floor({0.01: 4.0, math.inf: 4.0}, {0.01: 5.0, math.inf: 5.0})
        == 0.0
    )
    assert math.isnan(bench_report.median_bucket_floor(after, after))


def test_another_real_time_process_is_seen() -> None:
    """A benchmark run beside someone else's busy loop must know its figures are void."""
    try:
        proc = busy_loop.start(min(os.sched_getaffinity(0)), on_ms=1, off_ms=49, duration_s=5)
    except PermissionError as exc:
        pytest.skip(f"SCHED_FIFO refused here: {exc}")
    try:
        assert any(line.startswith(f"{proc.pid} ") for line in bench_clients.other_realtime())
    finally:
        busy_loop.stop(proc)
    assert not any(line.startswith(f"{proc.pid} ") for line in bench_clients.other_realtime())
