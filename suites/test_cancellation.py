"""Dropped streams: the server must notice, free the request, and keep serving.

Idle means zero: with nothing of this run's in flight, the running-requests gauge must
read 0, before the streams are dropped and after. A gauge that never gets there is a
leaked slot (or a gauge that lies), whatever level it sat at before. A server shared with
other traffic (--vllm-shared-server) may be busy with someone else's requests: there a
non-zero idle level is a note, and the dropped streams must bring the gauge back to it.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import cancellation, metrics
from pytest_vllm_conformance.checks.cancellation import Gauge, Settled
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.config import Settings
from pytest_vllm_conformance.failures import Severity
from pytest_vllm_conformance.report import measurements
from pytest_vllm_conformance.target.discovery import Target
from pytest_vllm_conformance.workload import shapes

pytestmark = pytest.mark.cancellation
STREAMS = 4
SETTLE_S = 10.0
POLL_S = 0.2
ATTEMPTS = 3  # a busy client may read a whole short answer at once: then nothing is dropped
# Drop each stream at its first event. vLLM merges the tokens a slow reader has not taken
# yet into one chunk, so on a busy machine the second event can already be the whole answer.
DROP_AFTER = 1


class SharedServerNote(UserWarning):
    """A shared server's gauge was above 0 while this run was idle: noted, not failed."""


def _running(client: Client, gauge: str) -> float:
    """The gauge's reading (``Scrape.value`` fails a non-finite one, titled)."""
    return metrics.parse(client.get("/metrics")).value(gauge)


def _settle(client: Client, gauge: str, level: float) -> Settled:
    """Whether the gauge read ``level`` or less within SETTLE_S, and the lowest reading.

    One low reading is enough: another client's request (xdist workers, a shared server)
    only ever adds to the gauge, so a gauge that never gets down to ``level`` stays up."""
    lowest = math.inf
    deadline = time.monotonic() + SETTLE_S
    while True:
        lowest = min(lowest, _running(client, gauge))
        if lowest <= level or time.monotonic() > deadline:
            return Settled(lowest <= level, lowest)
        time.sleep(POLL_S)


def _idle_level(client: Client, gauge: str, shared: bool, request: pytest.FixtureRequest) -> float:
    """0, or on a shared server the lowest level seen; a non-zero idle gauge is a finding."""
    reading = _settle(client, gauge, 0.0)
    lowest = reading.lowest
    measurements.record(request, cancellation.IdleReading(gauge, lowest, reading.reached))
    if reading.reached:
        return 0.0
    idle = Gauge(gauge=gauge, settle_s=SETTLE_S, shared=shared)
    cancellation.idle_at_zero(reading, idle)
    what = cancellation.idle_note(reading, idle)
    request.node.user_properties.append(("cancellation_note", what))
    warnings.warn(
        SharedServerNote(f"{what} (--vllm-shared-server: noted, not failed)"), stacklevel=2
    )
    return lowest


def test_dropped_streams_are_freed(
    vllm_client: Client,
    vllm_target: Target,
    vllm_settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    gauge = metrics.RUNNING_GAUGE.get(vllm_target.engine.name)
    if gauge is None or not vllm_target.has("/metrics"):
        pytest.skip(f"engine {vllm_target.engine.name!r} exposes no running-requests gauge")
    idle = _idle_level(vllm_client, gauge, vllm_settings.shared_server, request)
    body = shapes.chat(
        vllm_target.model,
        max_tokens=400,
        stream=True,
        messages=[{"role": "user", "content": "Tell a very long story."}],
    )

    async def drop_all() -> bool:
        rs = await asyncio.gather(
            *(
                vllm_client.aio.stream("/v1/chat/completions", body, abort_after=DROP_AFTER)
                for _ in range(STREAMS)
            )
        )
        return all(r.aborted and not r.done_seen for r in rs)

    if not any(vllm_client.run(drop_all()) for _ in range(ATTEMPTS)):
        pytest.skip(
            f"in {ATTEMPTS} attempts the streams ended before they could be dropped "
            "(the model stopped early, or the answers arrived whole)"
        )
    cancellation.streams_freed(
        _settle(vllm_client, gauge, idle),
        Gauge(gauge=gauge, settle_s=SETTLE_S, level=idle, streams=STREAMS),
    )
    r = vllm_client.post("/v1/chat/completions", shapes.chat(vllm_target.model, max_tokens=2))
    checks.request_succeeded(
        r, checks.Status(title="A request after dropped streams failed", severity=Severity.CRITICAL)
    )
