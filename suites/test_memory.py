"""Server memory stays flat under sustained load (a leak fails; a warm-up plateau does not).

For --vllm-memory-duration the server gets --vllm-memory-concurrency streamed completions
in flight while its memory is sampled ~150 times; the first 20% is warm-up (caches and
pools filling). The Theil-Sen slope of the rest, with its 95% interval, must not lie wholly
above --vllm-memory-max-growth MB/hour, unless the fitted growth over the measured window is
below --vllm-memory-min-growth MB: allocators grow in steps of several MB, and in a one-minute
window one such step is no evidence of a leak (over hours the floor stops mattering). The
samples (CSV) and a plot go to the output dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable

import pytest

from pytest_vllm_conformance.checks import memory as judge
from pytest_vllm_conformance.checks.registry import NO_CONTEXT
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.perf import latency, memory
from pytest_vllm_conformance.perf.loadtest import LoadRunner
from pytest_vllm_conformance.report import measurements
from pytest_vllm_conformance.target import StartedServer

pytestmark = pytest.mark.memory

WARMUP_SHARE = 0.2
SAMPLES = 150


def _source(
    client: Client, request: pytest.FixtureRequest
) -> tuple[str, Callable[[], Awaitable[float | None]]]:
    """How this server's memory can be read, best first; skip (with why) when it cannot."""
    started: StartedServer | None = request.getfixturevalue("vllm_started_server")
    if started is not None:
        read_tree = memory.process_tree_rss(started.pid)

        async def tree() -> float | None:
            return read_tree()

        what = "container's" if started.in_container else "started server's"
        return f"RSS of the {what} process tree", tree
    r = client.get("/metrics")
    if (
        r.status == 200
        and memory.metrics_rss(r.body.decode("utf-8", "replace"), r.curl) is not None
    ):

        async def scrape() -> float | None:
            got = await client.aio.get("/metrics")
            return (
                memory.metrics_rss(got.body.decode("utf-8", "replace"), got.curl)
                if (got.status == 200)
                else None
            )

        return "process_resident_memory_bytes from /metrics", scrape
    pytest.skip(
        "no way to read this server's memory: it was not started by the plugin and "
        "its /metrics has no process_resident_memory_bytes"
    )


def test_server_memory_is_stable_under_sustained_load(
    vllm_client: Client, vllm_load: LoadRunner, request: pytest.FixtureRequest
) -> None:
    perf = vllm_load.perf
    duration = perf.memory_duration_s
    source, read = _source(vllm_client, request)
    run = memory.MemoryRun(source, warmup_s=duration * WARMUP_SHARE)
    interval = min(60.0, max(0.1, duration / SAMPLES))
    send = vllm_load.completion_sender(32)

    async def window() -> latency.Level:
        load = asyncio.ensure_future(
            latency.closed_loop(
                "memory load", send, perf.memory_concurrency, 10**9, duration, keep=0
            )
        )
        started = time.perf_counter()
        while not load.done():
            try:
                value = await read()
            except CheckFailure:  # unparseable or non-finite: no verdict can rest on it
                load.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await load
                raise
            if value is not None:
                run.samples.append((time.perf_counter() - started, value, memory.own_rss()))
            await asyncio.sleep(interval)
        return await load

    level = vllm_client.run(window())
    fit, own = run.server_fit(), run.harness_fit()
    out = vllm_load.settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = "memory-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    run.write_csv(out / f"{stem}.csv")
    plotted = run.plot(out / f"{stem}.png", perf.memory_max_growth)
    measurements.record(
        request,
        memory.MemoryGrowth.of(
            run,
            len(level.samples),
            level.error_rate,
            out / f"{stem}.csv",
            out / f"{stem}.png" if plotted else None,
        ),
    )
    summary = (
        f"{source}: {len(run.samples)} samples over {duration:g} s "
        f"(first {run.warmup_s:g} s warm-up), {len(level.ok)} requests served; "
        f"server {fit.slope:+.1f} MB/h [95%: {fit.low:+.1f}, {fit.high:+.1f}], "
        f"harness {own.slope:+.1f} MB/h; samples in {out / stem}.csv"
        + (f", plot {out / stem}.png" if plotted else "")
    )
    request.node.add_report_section("call", "memory", summary)
    budget = judge.Budget(
        max_growth=perf.memory_max_growth,
        min_growth=perf.memory_min_growth,
        measured_s=duration - run.warmup_s,
        summary=summary,
    )
    judge.sampled(run, budget)
    judge.load_served(level, NO_CONTEXT)
    judge.memory_flat(run, budget)
