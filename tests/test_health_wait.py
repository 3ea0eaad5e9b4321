"""The one ``/health`` wait (target/health.py): its deadline and each probe's timeout.

A fake client records when each probe starts and the timeout it was given; no server runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pytest_vllm_conformance.client import AsyncClient, Client, ConnectError
from pytest_vllm_conformance.target import health

T = TypeVar("T")


@dataclass
class Answer:
    status: int


@dataclass
class FakeAsyncClient:
    """Answers every GET with ``status`` (None: refused) and records each probe."""

    status: int | None = 503
    started: float = field(default_factory=time.monotonic)
    probes: list[tuple[float, float | None]] = field(default_factory=list)  # (at, timeout)

    async def get(self, path: str, *, base_url: str | None, timeout: float | None) -> Answer:
        self.probes.append((time.monotonic() - self.started, timeout))
        if self.status is None:
            raise ConnectError("connection refused")
        return Answer(self.status)


@dataclass
class FakeClient:
    aio: FakeAsyncClient

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coro)


def _poll(fake: FakeAsyncClient, **kw: Any) -> health.Wait:
    wait = health.poll(cast(AsyncClient, fake), until=lambda p: p.status == 200, within_s=0.3, **kw)
    return asyncio.run(wait)


def test_one_last_probe_starts_at_the_deadline() -> None:
    """Probes at 0, 0.25 and 0.3 s: the last sleep is cut to the time left, and the wait
    ends only once a probe has finished after the deadline."""
    fake = FakeAsyncClient()
    wait = _poll(fake, interval_s=0.25)
    assert not wait.reached and wait.last.status == 503
    starts = [at for at, _ in fake.probes]
    assert len(starts) == 3, starts
    assert 0.29 <= starts[-1] < 0.45, starts
    assert wait.last.waited_s >= 0.3


def test_a_probe_is_bounded_by_the_time_left_unless_the_client_decides() -> None:
    fake = FakeAsyncClient(status=None)
    _poll(fake, interval_s=0.25)
    assert [timeout for _, timeout in fake.probes] == [0.5] * len(fake.probes)
    fake = FakeAsyncClient(status=None)
    _poll(fake, interval_s=0.25, probe_timeout_s=None)
    assert {timeout for _, timeout in fake.probes} == {None}


def test_health_until_leaves_each_probe_the_clients_timeout() -> None:
    """The topology suite's probes take --vllm-timeout, as they did before the one wait."""
    fake = FakeAsyncClient(status=200)
    status, _ = health.health_until(cast(Client, FakeClient(fake)), 200, within_s=1.0)
    assert status == 200 and fake.probes == [(fake.probes[0][0], None)]
