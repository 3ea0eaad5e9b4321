"""Keep the harness off the cores of a server it starts (``--vllm-cpu-split``).

A harness that shares CPUs with an engine is descheduled while the engine's threads hold
every core, and then stamps whole answers as if they arrived at once (issue 15). When the
plugin starts the server itself, it gives the server (and its OpenMP threads) some CPUs and
itself the rest. Linux only: elsewhere there is no affinity call and nothing is pinned.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_vllm_conformance.config.parsers import format_cpus, parse_cpus

OPTION = "--vllm-cpu-split"
#: vLLM's CPU backend binds its OpenMP threads to these CPUs ("0-5", ranks split by "|")
OMP_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
#: serve arguments that make vLLM run several ranks, each needing its own CPU list
_MULTI_RANK_ARGS = re.compile(
    r"^(--(tensor|pipeline|data)-parallel-size|-tp|-pp|-dp)"
    r"(=(\d+))?$"
)


@dataclass(frozen=True)
class CpuSplit:
    """Which CPUs the server gets and which the harness keeps."""

    server: frozenset[int]
    harness: frozenset[int]

    def describe(self) -> str:
        """e.g. 'server 0-5, harness 6,7': the header line and the JUnit property."""
        return f"server {format_cpus(self.server)}, harness {format_cpus(self.harness)}"


@dataclass(frozen=True)
class Plan:
    """What a run pins: ``split`` None means nothing, and ``note`` says why, once."""

    split: CpuSplit | None
    note: str

    def describe(self) -> str:
        return self.split.describe() if self.split is not None else self.note


def available_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on, or None where the OS has no affinity call."""
    getter: Callable[[int], set[int]] | None = getattr(os, "sched_getaffinity", None)
    return frozenset(getter(0)) if getter is not None else None


def harness_count(total: int) -> int:
    """auto: the harness keeps 1 CPU of 2-7, 2 of 8 or more (the last ones)."""
    return 2 if total >= 8 else 1


def plan(setting: str, available: frozenset[int] | None) -> Plan:
    """Resolve the option (as :func:`config.parsers.cpu_split` spells it) against the CPUs
    this process may use."""
    if setting == "off":
        return Plan(None, "off, nothing pinned")
    if available is None:
        return Plan(None, "none, this OS has no CPU affinity")
    if setting == "auto":
        if len(available) < 2:
            return Plan(None, f"none, only CPU {format_cpus(available)} is available")
        ordered = sorted(available)
        keep = harness_count(len(ordered))
        return Plan(CpuSplit(frozenset(ordered[:-keep]), frozenset(ordered[-keep:])), "auto")
    server_text, _, harness_text = setting.partition("/")
    split = CpuSplit(parse_cpus(server_text), parse_cpus(harness_text))
    outside = (split.server | split.harness) - available
    if outside:
        raise pytest.UsageError(
            f"{OPTION} names CPU(s) {format_cpus(outside)} this process may not use; "
            f"it may use {format_cpus(available)}."
        )
    return Plan(split, "as given")


def container_plan(setting: str, available: frozenset[int] | None, docker_host: str | None) -> Plan:
    """:func:`plan` for ``--vllm-image``: ``auto`` pins nothing when the Docker engine is
    another machine (its CPUs are not this process's); an explicit split is applied as given."""
    if setting == "auto" and docker_host and not docker_host.startswith("unix://"):
        return Plan(None, "none, the Docker engine (DOCKER_HOST) is not on this machine")
    return plan(setting, available)


def server_environment(
    env: dict[str, str], cpus: frozenset[int], serve_args: Iterable[str]
) -> None:
    """Tell vLLM's CPU backend the server's CPUs, keeping any value the user set.

    The process affinity alone already steers vLLM's ``auto`` binding (it reads
    ``sched_getaffinity``); the explicit list makes it visible in vLLM's log. With several
    ranks (tensor/pipeline/data parallel) one list would not fit vLLM's per-rank format, so
    only the affinity speaks there. ``OMP_NUM_THREADS`` is left alone: vLLM sets it per CPU
    worker from the bound list, and on GPUs picks its own when it is unset.
    """
    if not any(_multi_rank(arg, nxt) for arg, nxt in _pairs(list(serve_args))):
        env.setdefault(OMP_BIND_ENV, format_cpus(cpus))


def _pairs(args: list[str]) -> list[tuple[str, str]]:
    """Each argument with the one after it ('' after the last)."""
    return list(zip(args, [*args[1:], ""], strict=True)) if args else []


def _multi_rank(arg: str, following: str) -> bool:
    match = _MULTI_RANK_ARGS.match(arg)
    if match is None:
        return False
    value = match.group(4) if match.group(3) else following
    return value.strip() not in ("", "1")


def pin_process(cpus: frozenset[int]) -> None:
    """Pin every thread of this process (``sched_setaffinity(0)`` moves only the caller;
    threads started earlier keep their mask), and the threads started later inherit it."""
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            continue  # a thread that ended meanwhile


def _thread_ids() -> list[int]:
    tasks = Path("/proc/self/task")
    try:
        ids = [int(entry.name) for entry in tasks.iterdir() if entry.name.isdigit()]
    except OSError:
        ids = []
    return ids or [0]


def child_affinity(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins a started server (its children inherit the mask)."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin
