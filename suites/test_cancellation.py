"""Dropped streams: the server must notice, free the request, and keep serving."""

from __future__ import annotations

import asyncio
import time

import pytest

from pytest_vllm_conformance import checks, shapes
from pytest_vllm_conformance.checks import metrics
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.failures import CheckFailure, Severity
from pytest_vllm_conformance.target import Target

pytestmark = pytest.mark.cancellation
STREAMS = 4
SETTLE_S = 10.0
ATTEMPTS = 3  # a busy client may read a whole short answer at once: then nothing is dropped
# Drop each stream at its first event. vLLM merges the tokens a slow reader has not taken
# yet into one chunk, so on a busy machine the second event can already be the whole answer.
DROP_AFTER = 1


def _running(client: Client, gauge: str) -> float:
    return metrics.parse(client.get("/metrics")).value(gauge)


def test_dropped_streams_are_freed(vllm_client: Client, vllm_target: Target) -> None:
    gauge = metrics.RUNNING_GAUGE.get(vllm_target.engine.name)
    if gauge is None or not vllm_target.has("/metrics"):
        pytest.skip(f"engine {vllm_target.engine.name!r} exposes no running-requests gauge")
    idle = _running(vllm_client, gauge)
    body = shapes.chat(vllm_target.model, max_tokens=400, stream=True,
                       messages=[{"role": "user", "content": "Tell a very long story."}])

    async def drop_all() -> bool:
        rs = await asyncio.gather(*(vllm_client.aio.stream(
            "/v1/chat/completions", body, abort_after=DROP_AFTER) for _ in range(STREAMS)))
        return all(r.aborted and not r.done_seen for r in rs)

    if not any(vllm_client.run(drop_all()) for _ in range(ATTEMPTS)):
        pytest.skip(f"in {ATTEMPTS} attempts the streams ended before they could be dropped "
                    "(the model stopped early, or the answers arrived whole)")
    deadline = time.monotonic() + SETTLE_S
    while (now := _running(vllm_client, gauge)) > idle:
        if time.monotonic() > deadline:
            raise CheckFailure("Dropped streams keep running", path=gauge,
                               expected=f"back to {idle:g} within {SETTLE_S:g} s",
                               received=f"{now:g} after {SETTLE_S:g} s",
                               severity=Severity.HIGH,
                               detail=f"{STREAMS} streams closed after their first event")
        time.sleep(0.2)
    r = vllm_client.post("/v1/chat/completions", shapes.chat(vllm_target.model, max_tokens=2))
    checks.status_is(r, 200, "A request after dropped streams failed", Severity.CRITICAL)
