"""The harness checks its own timing, level by level: it says when its figures cannot be trusted.

A client that shares CPUs with a busy engine can be descheduled between a chunk landing in
its socket and the read that stamps it; every chunk read after such a gap gets the same late
stamp, and no percentile shows it. So around each level a :class:`Monitor` records:

- the time the harness waited for a CPU: on Linux the run-queue delay (field 2 of
  ``/proc/self/task/<tid>/schedstat``) of the client's event-loop thread, the one that takes
  every stamp, divided by the timeslices it ran (field 3): the mean delay per wake-up (all
  the process's threads summed if the loop thread is unknown). Elsewhere only involuntary
  context switches (``getrusage`` ``ru_nivcsw``, the whole process) are known;
- the event loop's lag: a timer every 5 ms on the client's loop records how late it fires;
- text chunks that arrived in a read completing several of them (they share one stamp);
- writes that blocked (from the send stamp to ``transport.write`` returning, or the
  transport keeping bytes it could not hand to the socket at once);
- the harness's own CPU use: the loop thread's CPU time (schedstat field 1; elsewhere the
  process's) over wall time; 100% is one core.

The rule. tolerance = max(2 ms, 5% of the level's smallest client p50 among TTFT and E2E).
The level is **client-limited** when any of these could move a reported percentile beyond it:

- the mean run-queue delay per wake-up is above the tolerance;
- the event loop's lag p99 is above the tolerance;
- more than 10% of text chunks arrived in multi-event reads, on streams whose median gap
  between reads is above the tolerance (chunks meant to be that far apart, stamped
  together; a server that sends chunks 1 ms apart merges them harmlessly);
- more than 1% of requests had a write that blocked longer than the tolerance;
- the harness used more than 90% of a core;
- (no schedstat) more than 50 involuntary context switches per second of the level.

Standalone use (the benchmark does this)::

    with selfcheck.Monitor(loop) as m:
        level = ...  # run requests on ``loop``
    health = m.result(level.samples)
    health.client_limited, health.reason

:func:`against_server` is the other self-check: a client p50 below the lower bound of the
server histogram's bucket holding the server's median is physically impossible (the server
starts its clock after the client sent), so it is a harness fault, never a pass.
"""

from __future__ import annotations

import array
import asyncio
import math
import resource
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pytest_vllm_conformance.failures import CheckFailure

if TYPE_CHECKING:
    from pytest_vllm_conformance.perf.latency import Level, Sample

TICK_S = 0.005
MIN_TOLERANCE_MS = 2.0
TOLERANCE_SHARE = 0.05
MAX_MERGED_SHARE = 0.10
MAX_SLOW_WRITE_SHARE = 0.01
MAX_CPU_PERCENT = 90.0
MAX_INVOLUNTARY_PER_S = 50.0
MAX_TICKS = 1_000_000  # 5 ms ticks for 83 minutes; beyond that the oldest are kept
HARNESS_LIMITED = "Latency figures unreliable: the harness was client-limited"
HARNESS_IMPOSSIBLE = "Latency figures impossible against the server's own histograms"


@dataclass(frozen=True, slots=True)
class ClientHealth:
    """What the harness's own scheduling did to one level, and the verdict on it."""

    wall_s: float
    source: str  # "schedstat" (Linux) or "rusage": where the CPU wait comes from
    runqueue_delay_ms: float  # total time the harness's threads waited for a CPU
    timeslices: int
    runqueue_per_wakeup_ms: float  # NaN without schedstat
    involuntary_switches: int
    loop_lag_p99_ms: float
    loop_lag_max_ms: float
    cpu_percent: float  # of one core
    text_chunks: int
    merged_chunks: int  # text chunks that shared their read with another text chunk
    read_gap_p50_ms: float  # the streams' cadence: median gap between reads carrying text
    requests: int
    slow_writes: int  # requests whose write blocked beyond the tolerance
    write_max_ms: float
    tolerance_ms: float
    client_limited: bool
    reason: str  # a sentence naming every figure beyond its limit; "" when not limited

    def properties(self) -> list[tuple[str, Any]]:
        """Flat (name, value) pairs for JUnit properties and the JSON report."""

        def r(v: float) -> float | None:
            return round(v, 3) if math.isfinite(v) else None

        return [
            ("client_limited", self.client_limited),
            ("client_limited_reason", self.reason),
            ("harness_tolerance_ms", r(self.tolerance_ms)),
            ("harness_runqueue_delay_ms", r(self.runqueue_per_wakeup_ms)),
            ("harness_runqueue_total_ms", r(self.runqueue_delay_ms)),
            ("harness_involuntary_switches", self.involuntary_switches),
            ("harness_loop_lag_p99_ms", r(self.loop_lag_p99_ms)),
            ("harness_loop_lag_max_ms", r(self.loop_lag_max_ms)),
            ("harness_multi_event_reads", self.merged_chunks),
            ("harness_text_chunks", self.text_chunks),
            ("harness_read_gap_p50_ms", r(self.read_gap_p50_ms)),
            ("harness_slow_writes", self.slow_writes),
            ("harness_write_max_ms", r(self.write_max_ms)),
            ("harness_cpu_percent", r(self.cpu_percent)),
            ("harness_timing_source", self.source),
        ]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schedstat() -> dict[int, tuple[int, int, int]] | None:
    """tid -> (ns on a CPU, ns waiting in the run queue, timeslices) per thread; None off Linux."""
    tasks = Path("/proc/self/task")
    if not sys.platform.startswith("linux") or not tasks.is_dir():
        return None
    out: dict[int, tuple[int, int, int]] = {}
    for task in tasks.iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
            out[int(task.name)] = (int(fields[0]), int(fields[1]), int(fields[2]))
        except (OSError, ValueError, IndexError):
            continue  # the thread ended while being read
    return out or None


class _Ticker:
    """A timer on the client's loop that records how late it fires (the loop's lag)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lags = array.array("d")
        self.stopped = False
        self.handle: asyncio.TimerHandle | None = None
        self.due = 0.0
        self.tid = 0  # the loop thread's kernel id, known once the ticker ran

    def start(self) -> None:
        self.tid = threading.get_native_id()
        if not self.stopped:
            self.due = self.loop.time() + TICK_S
            self.handle = self.loop.call_at(self.due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        if len(self.lags) < MAX_TICKS:
            self.lags.append(max(0.0, now - self.due))
        if not self.stopped:
            self.due = now + TICK_S
            self.handle = self.loop.call_at(self.due, self._tick)

    def stop(self) -> None:
        self.stopped = True
        if self.handle is not None:
            self.handle.cancel()


class Monitor:
    """Records the harness's CPU wait, loop lag and CPU use while a level runs on ``loop``.

    Safe to enter from another thread than the loop's (the plugin's case) or from a
    coroutine on the loop itself (the ticker then starts at the next await)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ticker = _Ticker(loop)
        self._sched0: dict[int, tuple[int, int, int]] | None = None
        self._sched1: dict[int, tuple[int, int, int]] | None = None
        self._t = (0.0, 0.0)
        self._cpu = (0.0, 0.0)
        self._nivcsw = (0, 0)

    def __enter__(self) -> Monitor:
        self._sched0 = _schedstat()
        self._nivcsw = (resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw, 0)
        self._cpu = (time.process_time(), 0.0)
        self._t = (time.perf_counter(), 0.0)
        self.loop.call_soon_threadsafe(self._ticker.start)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.loop.is_closed():
            self._ticker.stopped = True
        elif _on_loop_thread(self.loop):
            self._ticker.stop()
        else:
            self.loop.call_soon_threadsafe(self._ticker.stop)
        self._t = (self._t[0], time.perf_counter())
        self._cpu = (self._cpu[0], time.process_time())
        self._nivcsw = (self._nivcsw[0], resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)
        self._sched1 = _schedstat()

    def result(
        self, samples: Iterable[Sample] = (), min_tolerance_ms: float | None = None
    ) -> ClientHealth:
        """The figures over the monitored span and the verdict, judged with ``samples``.

        ``min_tolerance_ms``: the tolerance's floor (default :data:`MIN_TOLERANCE_MS`)."""
        from pytest_vllm_conformance.perf.stats import Summary

        floor = MIN_TOLERANCE_MS if min_tolerance_ms is None else min_tolerance_ms

        ok = [s for s in samples if s.ok]
        wall = max(self._t[1] - self._t[0], 1e-9)
        delay_ns, slices, source = 0, 0, "rusage"
        cpu_s = self._cpu[1] - self._cpu[0]
        if self._sched0 is not None and self._sched1 is not None:
            source = "schedstat"
            tids = [self._ticker.tid] if self._ticker.tid in self._sched1 else list(self._sched1)
            on_cpu_ns = 0
            for tid in tids:
                c1, d1, s1 = self._sched1[tid]
                c0, d0, s0 = self._sched0.get(tid, (0, 0, 0))
                on_cpu_ns += max(0, c1 - c0)
                delay_ns += max(0, d1 - d0)
                slices += max(0, s1 - s0)
            cpu_s = on_cpu_ns / 1e9
        per_wakeup = (
            delay_ns / 1e6 / slices if slices else (0.0 if source == "schedstat" else math.nan)
        )
        lags = Summary.of(x * 1000 for x in self._ticker.lags)
        p50s = [
            v
            for m in ("ttft_ms", "e2e_ms")
            if (v := Summary.of(x for s in ok if math.isfinite(x := getattr(s, m))).p50)
            and math.isfinite(v)
        ]
        tolerance = max(floor, TOLERANCE_SHARE * min(p50s)) if p50s else floor
        cadence = Summary.of(x for s in ok for x in s.itl_ms if x > 0).p50
        writes = [s.write_ms for s in ok]
        figures: dict[str, Any] = dict(
            wall_s=wall,
            source=source,
            runqueue_delay_ms=delay_ns / 1e6,
            timeslices=slices,
            runqueue_per_wakeup_ms=per_wakeup,
            involuntary_switches=self._nivcsw[1] - self._nivcsw[0],
            loop_lag_p99_ms=lags.p99 if lags.count else 0.0,
            loop_lag_max_ms=lags.max if lags.count else 0.0,
            cpu_percent=100.0 * cpu_s / wall,
            text_chunks=sum(s.client_chunks for s in ok),
            merged_chunks=sum(s.merged_chunks for s in ok),
            read_gap_p50_ms=cadence,
            requests=len(ok),
            slow_writes=sum(1 for w in writes if w > tolerance),
            write_max_ms=max(writes, default=0.0),
            tolerance_ms=tolerance,
        )
        reasons = judge(**figures)
        return ClientHealth(**figures, client_limited=bool(reasons), reason="; ".join(reasons))


def judge(
    *,
    wall_s: float,
    source: str,
    runqueue_per_wakeup_ms: float,
    involuntary_switches: int,
    loop_lag_p99_ms: float,
    cpu_percent: float,
    text_chunks: int,
    merged_chunks: int,
    read_gap_p50_ms: float,
    requests: int,
    slow_writes: int,
    tolerance_ms: float,
    **_: Any,
) -> list[str]:
    """The rule (module docstring): one clause per figure beyond its limit."""
    tol = f"(tolerance {tolerance_ms:.3g} ms)"
    out: list[str] = []
    if math.isfinite(runqueue_per_wakeup_ms) and runqueue_per_wakeup_ms > tolerance_ms:
        out.append(
            f"the harness waited {runqueue_per_wakeup_ms:.3g} ms per wake-up for a CPU {tol}"
        )
    if source != "schedstat" and involuntary_switches / max(wall_s, 1e-9) > MAX_INVOLUNTARY_PER_S:
        out.append(
            f"the harness was preempted {involuntary_switches} times in "
            f"{wall_s:.3g} s (limit {MAX_INVOLUNTARY_PER_S:g}/s)"
        )
    if loop_lag_p99_ms > tolerance_ms:
        out.append(f"its event loop ran {loop_lag_p99_ms:.3g} ms late at p99 {tol}")
    if (
        text_chunks
        and merged_chunks > MAX_MERGED_SHARE * text_chunks
        and read_gap_p50_ms > tolerance_ms
    ):
        out.append(
            f"{merged_chunks} of {text_chunks} text chunks arrived several to a read "
            f"and share one timestamp (limit {MAX_MERGED_SHARE:.0%})"
        )
    if requests and slow_writes > MAX_SLOW_WRITE_SHARE * requests:
        out.append(
            f"{slow_writes} of {requests} requests blocked in their write longer than "
            f"the tolerance {tol} (limit {MAX_SLOW_WRITE_SHARE:.0%})"
        )
    if cpu_percent > MAX_CPU_PERCENT:
        out.append(f"the harness used {cpu_percent:.0f}% of a core (limit {MAX_CPU_PERCENT:.0f}%)")
    return out


def against_server(level: Level) -> str:
    """A sentence when a client p50 lies below the server's median bucket; "" when possible."""
    out = []
    for metric in ("ttft_ms", "e2e_ms"):
        floor = level.server_floor.get(metric)
        client = level.summary(metric)
        if floor is None or not client.count or not floor > 0:
            continue
        if client.p50 < floor:
            out.append(
                f"client {metric[:-3].upper()} p50 {client.p50:.3g} ms is below "
                f"{floor:.3g} ms, the lower bound of the server histogram's bucket "
                f"holding its median"
            )
    return "; ".join(out)


class HarnessLimited(CheckFailure):
    """The level's figures cannot be vouched for: an error whatever the SLO verdict."""


def limited_sentence(level: Level) -> str:
    """The one sentence the terminal, JUnit, JSON and HTML carry; "" for a sound level."""
    parts = []
    if level.client is not None and level.client.client_limited:
        parts.append(
            f"{level.name}: the harness was client-limited, so its latency figures "
            f"are not the server's: {level.client.reason}."
        )
    if level.server_inconsistent:
        parts.append(
            f"{level.name}: the client's figures are impossible against the server's "
            f"own histograms (a harness fault): {level.server_inconsistent}."
        )
    return " ".join(parts)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


__all__ = [
    "HARNESS_IMPOSSIBLE",
    "HARNESS_LIMITED",
    "ClientHealth",
    "HarnessLimited",
    "Monitor",
    "against_server",
    "judge",
    "limited_sentence",
]
