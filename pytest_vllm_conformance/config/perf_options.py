"""Options of the latency and memory suites, validated as they are read (one UsageError line)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_vllm_conformance.config.validate import choice
from pytest_vllm_conformance.perf import slo
from pytest_vllm_conformance.perf.memory import parse_duration

DEFAULT_CONCURRENCY = (1, 8, 50)
DEFAULT_REQUESTS = 100
DEFAULT_RATE = 4.0
DEFAULT_WARMUP = 4
DEFAULT_MAX_TOKENS = 100
DEFAULT_MEMORY_DURATION = "60s"
DEFAULT_MEMORY_GROWTH = 100.0
DEFAULT_MEMORY_MIN_GROWTH = 32.0
DEFAULT_MEMORY_CONCURRENCY = 4

_OPTIONS = (
    ("latency-concurrency", "LEVELS",
     "comma-separated concurrency levels of the closed-loop sweep",
     ",".join(map(str, DEFAULT_CONCURRENCY))),
    ("latency-requests", "N", "measured requests per load level", DEFAULT_REQUESTS),
    ("latency-duration", "SECONDS", "also end a load level after this long", "none"),
    ("latency-rate", "RPS", "open-loop arrival rate, requests per second", f"{DEFAULT_RATE:g}"),
    ("latency-burstiness", "F", "gamma shape of the arrivals: 1 is Poisson, below 1 burstier",
     1),
    ("latency-warmup", "N", "requests sent and not counted before each level", DEFAULT_WARMUP),
    ("latency-max-tokens", "N", "max_tokens of each measured completion", DEFAULT_MAX_TOKENS),
    ("slo", "KEY=VALUE,...", "latency and throughput limits, e.g. ttft_p95_ms=500,"
     "e2e_p99_ms=8000 ('none' drops the defaults: e2e_p95_ms=5000, embeddings_p95_ms=500, "
     "embeddings_per_s=100, error_rate=0)", "the defaults"),
    ("memory-duration", "DURATION", "how long the memory test loads the server (90s, 10m, 24h)",
     DEFAULT_MEMORY_DURATION),
    ("memory-max-growth", "MB_PER_HOUR", "memory growth that fails the memory test when the "
     "fitted slope's whole 95%% interval is above it", f"{DEFAULT_MEMORY_GROWTH:g}"),
    ("memory-min-growth", "MB", "growth over the measured window below which no leak is "
     "reported, whatever the rate (allocators grow in steps)", f"{DEFAULT_MEMORY_MIN_GROWTH:g}"),
    ("memory-concurrency", "C", "requests in flight during the memory test",
     DEFAULT_MEMORY_CONCURRENCY),
    # issue 15: the harness checks itself
    ("latency-harness-tolerance", "MS", "the least tolerance of the harness's timing "
     "self-check: a level is client-limited when its CPU wait per wake-up, event-loop lag "
     "p99 or blocked writes pass max(this, 5%% of the level's smallest TTFT/E2E p50)", 2),
    # issue 14 review: early verdicts can be turned off
    ("latency-early-stop", "on|off", "end a load level as soon as its SLO verdict is a sure "
     "miss (off: every planned request is sent)", "on"),
)


def add_options(group: Any, parser: pytest.Parser) -> None:
    add_rows(group, parser, _OPTIONS)


def add_rows(group: Any, parser: pytest.Parser,
             rows: tuple[tuple[str, str, str, Any], ...]) -> None:
    """One ``--vllm-NAME`` option and its ``vllm_NAME`` ini twin per (name, metavar, text,
    default) row; the help ends in the default, as every option's does."""
    for name, metavar, text, default in rows:
        ini = "vllm_" + name.replace("-", "_")
        group.addoption(f"--vllm-{name}", default=None, metavar=metavar,
                        help=f"{text}. Default: {default} (ini: {ini}).")
        parser.addini(ini, text, default="")


@dataclass(frozen=True)
class PerfSettings:
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    requests: int = DEFAULT_REQUESTS
    duration_s: float | None = None
    rate: float = DEFAULT_RATE
    burstiness: float = 1.0
    warmup: int = DEFAULT_WARMUP
    max_tokens: int = DEFAULT_MAX_TOKENS
    slo: dict[str, float] | None = field(default_factory=dict)  # None: 'none' was given
    memory_duration_s: float = 60.0
    memory_max_growth: float = DEFAULT_MEMORY_GROWTH
    memory_min_growth: float = DEFAULT_MEMORY_MIN_GROWTH
    memory_concurrency: int = DEFAULT_MEMORY_CONCURRENCY
    harness_tolerance_ms: float | None = None  # None: selfcheck.MIN_TOLERANCE_MS
    early_stop: bool = True  # end a level at a sure SLO miss (early_stop.EarlyStop)

    @classmethod
    def read(cls, pick: Callable[[str, str], Any]) -> PerfSettings:
        def get(name: str) -> Any:
            key = "vllm_" + name.replace("-", "_")
            return pick(key, key)

        levels = get("latency-concurrency")
        duration = get("latency-duration")
        slo_text = get("slo")
        memory = get("memory-duration")
        tolerance = get("latency-harness-tolerance")
        return cls(
            concurrency=_levels(levels) if levels else DEFAULT_CONCURRENCY,
            requests=_number(get("latency-requests"), "--vllm-latency-requests",
                             DEFAULT_REQUESTS, whole=True),
            duration_s=_number(duration, "--vllm-latency-duration", 0) if duration else None,
            rate=_number(get("latency-rate"), "--vllm-latency-rate", DEFAULT_RATE),
            burstiness=_number(get("latency-burstiness"), "--vllm-latency-burstiness", 1.0),
            warmup=_number(get("latency-warmup"), "--vllm-latency-warmup", DEFAULT_WARMUP,
                           whole=True, zero=True),
            max_tokens=_number(get("latency-max-tokens"), "--vllm-latency-max-tokens",
                               DEFAULT_MAX_TOKENS, whole=True),
            slo=slo.parse(slo_text) if slo_text else {},
            memory_duration_s=_duration(memory) if memory else 60.0,
            memory_max_growth=_number(get("memory-max-growth"), "--vllm-memory-max-growth",
                                      DEFAULT_MEMORY_GROWTH, zero=True),
            memory_min_growth=_number(get("memory-min-growth"), "--vllm-memory-min-growth",
                                      DEFAULT_MEMORY_MIN_GROWTH, zero=True),
            memory_concurrency=_number(get("memory-concurrency"), "--vllm-memory-concurrency",
                                       DEFAULT_MEMORY_CONCURRENCY, whole=True),
            harness_tolerance_ms=_number(tolerance, "--vllm-latency-harness-tolerance", None)
            if tolerance else None,
            early_stop=choice(get("latency-early-stop"), "--vllm-latency-early-stop",
                              ("on", "off")) == "on",
        )


def _levels(raw: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in str(raw).split(","))
    except ValueError:
        levels = ()
    if not levels or min(levels) < 1:
        raise pytest.UsageError(
            f"--vllm-latency-concurrency must be whole numbers >= 1 like 1,8,50, got {raw!r}.")
    return levels


def _number(raw: Any, option: str, default: Any, whole: bool = False, zero: bool = False) -> Any:
    if raw is None:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        kind = "whole number" if whole else "number"
        least = "0 or more" if zero else "above 0"
        raise pytest.UsageError(f"{option} must be a {kind} {least}, got {raw!r}.")
    return value


def _duration(raw: Any) -> float:
    try:
        seconds = parse_duration(str(raw))
    except ValueError:
        seconds = math.nan
    if not 5 <= seconds <= 7 * 24 * 3600:
        raise pytest.UsageError("--vllm-memory-duration must be a duration from 5s to 168h such "
                                f"as 90s, 10m or 24h, got {raw!r}.")
    return seconds
