"""The one ``/health`` wait: every caller that waits for a server polls through here.

Discovery (a server someone else started), the local ``--vllm-serve`` process, the
``--vllm-image`` containers and the topology suite (a backend stopped and started again)
all ask the same question, "has ``/health`` answered what I want yet?", with their own
interval, wanted answer and message. The loop, its deadline and the reading of a failed
probe live here once; each caller keeps its own wording.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_vllm_conformance.client import AsyncClient, Client, ClientError, ConnectError

#: the longest one probe may take: a server that accepts but never answers still ends the wait
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Probe:
    """One poll's outcome, and what the wait has seen so far."""

    path: str
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    problem: str  # why this is not (yet) the answer wanted: the error or the status seen
    only_refused: bool  # every probe so far was refused: nothing listens at the address
    waited_s: float


@dataclass(frozen=True)
class Wait:
    """How a wait ended: ``reached`` the wanted answer, or not (timed out or gave up)."""

    reached: bool
    last: Probe


def _never(_: Probe) -> bool:
    return False


async def poll(
    client: AsyncClient,
    *,
    until: Callable[[Probe], bool],
    within_s: float,
    interval_s: float,
    base_url: str | None = None,
    paths: Sequence[str] = ("/health",),
    before: Callable[[], None] | None = None,
    give_up: Callable[[Probe], bool] = _never,
    probe_timeout_s: float | None = PROBE_TIMEOUT_S,
) -> Wait:
    """Poll ``GET paths[0]`` every ``interval_s`` until ``until(probe)``, ``give_up(probe)``
    or ``within_s`` runs out. The wait uses all of ``within_s``: the last sleep is cut to the
    time left, so one last probe starts at the deadline, and the wait ends with the first
    probe that finishes after it.

    A 404 moves on to the next path at once (a server without ``/health``). ``before`` runs
    before each probe and raises to stop the wait (the process under watch has died).
    ``probe_timeout_s`` bounds one probe, cut to the time left (but at least 0.5 s); None
    leaves each probe the client's own timeout.
    """
    started = time.monotonic()
    deadline = started + within_s
    remaining_paths = list(paths)
    only_refused = True
    while True:
        if before is not None:
            before()
        path = remaining_paths[0]
        remaining = deadline - time.monotonic()
        status: int | None = None
        timeout = None if probe_timeout_s is None else max(0.5, min(probe_timeout_s, remaining))
        try:
            r = await client.get(path, base_url=base_url, timeout=timeout)
            status = r.status
            problem = f"GET {path} answered HTTP {status}"
            only_refused = False
        except ConnectError as exc:
            problem = exc.reason
        except ClientError as exc:
            problem = exc.reason
            only_refused = False
        now = time.monotonic()
        probe = Probe(path, status, problem, only_refused, now - started)
        if until(probe):
            return Wait(True, probe)
        if status == 404 and len(remaining_paths) > 1:
            remaining_paths.pop(0)
            continue
        if give_up(probe) or now > deadline:
            return Wait(False, probe)
        await asyncio.sleep(min(interval_s, deadline - now))


def wait_healthy(
    url: str, timeout_s: float, before: Callable[[], None], interval_s: float = 0.5
) -> bool:
    """Block until ``GET url/health`` answers 200 (True) or ``timeout_s`` passes (False);
    ``before`` runs before each probe and raises to stop early (the server died)."""
    with Client(AsyncClient(url, timeout=PROBE_TIMEOUT_S)) as client:
        wait = client.run(
            poll(
                client.aio,
                until=lambda p: p.status == 200,
                within_s=timeout_s,
                interval_s=interval_s,
                before=before,
                probe_timeout_s=None,  # the client's: PROBE_TIMEOUT_S, whatever time is left
            )
        )
    return wait.reached


def health_until(
    client: Client, want: int, within_s: float, interval_s: float = 0.25
) -> tuple[int, float]:
    """Poll ``/health`` until it answers ``want``; the last status (0: no answer) and the
    seconds waited. Each probe may take the client's own timeout (``--vllm-timeout``)."""
    wait = client.run(
        poll(
            client.aio,
            until=lambda p: p.status == want,
            within_s=within_s,
            interval_s=interval_s,
            probe_timeout_s=None,
        )
    )
    return wait.last.status or 0, wait.last.waited_s
