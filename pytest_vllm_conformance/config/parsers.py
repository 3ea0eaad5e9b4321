"""Parsers of option values: text in, a checked value out, or one ``pytest.UsageError`` sentence.

Each parser takes the raw value (from the command line or the ini file) and the flag it
came from, and names that flag in its error. The grammars of the domain's settings live
here too (durations, SLO keys, CPU lists), so that the configuration depends on no domain
module: the domain imports what it needs from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pytest_vllm_conformance.secrets import Secret

# -- numbers and words -----------------------------------------------------------------------


def text(raw: object, flag: str) -> str:
    """Any text, stripped."""
    return str(raw).strip()


def seconds(raw: object, flag: str) -> float:
    """A positive, finite number of seconds."""
    value = _float(raw)
    if not math.isfinite(value) or value <= 0:
        raise pytest.UsageError(f"{flag} must be a positive number of seconds, got {raw!r}.")
    return value


def integer(raw: object, flag: str, least: int = 1) -> int:
    """A whole number of at least ``least`` in its plain spelling (no sign, no leading zero,
    no ``_``), one wording for every count option."""
    digits = str(raw).strip()
    value = int(digits) if re.fullmatch(r"0|[1-9][0-9]*", digits) else least - 1
    if value < least:
        raise pytest.UsageError(f"{flag} must be a whole number of at least {least}, got {raw!r}.")
    return value


def number(raw: object, flag: str, zero: bool = False) -> float:
    """A finite number above 0 (or of at least 0 with ``zero``)."""
    value = _float(raw)
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        least = "of at least 0" if zero else "above 0"
        raise pytest.UsageError(f"{flag} must be a number {least}, got {raw!r}.")
    return value


def choice(raw: object, flag: str, choices: Sequence[str]) -> str:
    """One of ``choices``, spelt exactly."""
    value = str(raw).strip()
    if value not in choices:
        raise pytest.UsageError(f"{flag} must be one of {', '.join(choices)}, got {raw!r}.")
    return value


def switch(raw: object, flag: str) -> bool:
    """``on`` or ``off``."""
    return choice(raw, flag, ("on", "off")) == "on"


def levels(raw: object, flag: str) -> tuple[int, ...]:
    """Comma-separated whole numbers of at least 1, like ``1,8,50``."""
    try:
        values = tuple(int(x) for x in str(raw).split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise pytest.UsageError(
            f"{flag} must be whole numbers of at least 1 like 1,8,50, got {raw!r}."
        )
    return values


def _float(raw: object) -> float:
    try:
        return float(str(raw))
    except ValueError:
        return math.nan


# -- durations -------------------------------------------------------------------------------
def duration_s(raw: str) -> float:
    """``90``, ``90s``, ``10m``, ``24h`` -> seconds; ValueError otherwise."""
    value_text = raw.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(value_text[-1:])
    value = float(value_text[:-1] if scale else value_text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(raw)
    return value * (scale or 1)


def memory_duration(raw: object, flag: str) -> float:
    """A duration from 5 s to a week, e.g. ``90s``, ``10m`` or ``24h``, in seconds."""
    try:
        value = duration_s(str(raw))
    except ValueError:
        value = math.nan
    if not 5 <= value <= 7 * 24 * 3600:
        raise pytest.UsageError(
            f"{flag} must be a duration from 5s to 168h such as 90s, 10m or 24h, got {raw!r}."
        )
    return value


# -- service-level objectives ----------------------------------------------------------------
SLO_METRICS = ("ttft", "itl", "tpot", "e2e", "queue", "embeddings")
SLO_STATS = ("p50", "p90", "p95", "p99", "mean", "max")
#: ``<metric>_<stat>_ms``: an upper limit on a latency statistic
SLO_LATENCY_KEY = re.compile(rf"({'|'.join(SLO_METRICS)})_({'|'.join(SLO_STATS)})_ms")
#: lower limits on throughput, and the level rate each one reads
SLO_RATES = {
    "min_rps": "requests_per_s",
    "min_tokens_per_s": "output_tokens_per_s",
    "embeddings_per_s": "items_per_s",
}


def valid_slo_key(key: str) -> bool:
    """Whether ``key`` names a limit the latency suite can judge."""
    return bool(SLO_LATENCY_KEY.fullmatch(key)) or key in SLO_RATES or key == "error_rate"


def slo(raw: object, flag: str = "--vllm-slo") -> dict[str, float] | None:
    """``key=value,key=value`` -> limits; ``none`` -> None (no defaults)."""
    value_text = str(raw)
    if value_text.strip().lower() == "none":
        return None
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in value_text.split(","))):
        key, sep, limit = item.partition("=")
        value = _float(limit)
        if not sep or not valid_slo_key(key.strip()) or not math.isfinite(value) or value < 0:
            raise pytest.UsageError(
                f"{flag}: {item!r} is not KEY=NUMBER with a known key (e.g. ttft_p95_ms=500, "
                "e2e_p99_ms=8000, error_rate=0.01, min_rps=2, embeddings_per_s=100)."
            )
        out[key.strip()] = value
    return out


# -- CPU lists -------------------------------------------------------------------------------
CPU_SPLIT_MODES = ("auto", "off")
_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpus(value_text: str) -> frozenset[int]:
    """'0-2,5' -> {0, 1, 2, 5}; raises ValueError on anything else."""
    value_text = value_text.strip()
    if not _CPU_LIST.match(value_text):
        raise ValueError(value_text)
    cpus: set[int] = set()
    for part in value_text.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if high < low or high > 65535:
            raise ValueError(value_text)
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpus(cpus: Iterable[int]) -> str:
    """{0, 1, 2, 5, 7, 8} -> '0-2,5,7,8': runs of three or more consecutive CPUs as ranges
    (the form vLLM's ``VLLM_CPU_OMP_THREADS_BIND`` and Docker's ``--cpuset-cpus`` read)."""
    ordered = sorted(cpus)
    parts: list[str] = []
    start = prev = -2
    for cpu in [*ordered, -2]:
        if cpu == prev + 1:
            prev = cpu
            continue
        if start >= 0:
            parts.append(
                str(start)
                if start == prev
                else f"{start},{prev}"
                if prev == start + 1
                else f"{start}-{prev}"
            )
        start = prev = cpu
    return ",".join(parts)


def cpu_split(raw: object, flag: str = "--vllm-cpu-split") -> str:
    """``auto``, ``off`` or ``SERVER_CPUS/HARNESS_CPUS`` in its canonical spelling (the CPUs
    themselves are checked at start, against the CPUs the process may use)."""
    value_text = str(raw).strip().lower()
    if value_text in CPU_SPLIT_MODES:
        return value_text
    server_text, sep, harness_text = value_text.partition("/")
    try:
        if not sep:
            raise ValueError(value_text)
        server, harness = parse_cpus(server_text), parse_cpus(harness_text)
    except ValueError:
        raise pytest.UsageError(
            f"{flag} must be auto, off or SERVER_CPUS/HARNESS_CPUS with CPU "
            f"lists like 0-5/6,7, got {raw!r}."
        ) from None
    if server & harness:
        raise pytest.UsageError(
            f"{flag} gives CPU(s) {format_cpus(server & harness)} to "
            f"both the server and the harness, got {raw!r}."
        )
    return f"{format_cpus(server)}/{format_cpus(harness)}"


# -- containers ------------------------------------------------------------------------------
_GPUS = re.compile(r"^(auto|all|none|\d+(,\d+)*)$")
_SHM = re.compile(r"^\d+[bkmg]?$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def gpus(raw: object, flag: str) -> str:
    """``auto``, ``all``, ``none`` or device ids like ``0,1``."""
    value = str(raw).strip()
    if not _GPUS.match(value):
        raise pytest.UsageError(
            f"{flag} must be auto, all, none or device ids like 0,1, got {value!r}."
        )
    return value


def shm_size(raw: object, flag: str) -> str:
    """A size like ``512m`` or ``16g``."""
    value = str(raw).strip()
    if not _SHM.match(value):
        raise pytest.UsageError(f"{flag} must be a size like 512m or 16g, got {value!r}.")
    return value


def gpu_shares(raw: object, flag: str, want: int) -> tuple[float, ...]:
    """``want`` GPU memory fractions in (0, 1], summing to at most 1."""
    try:
        values = tuple(float(v) for v in str(raw).split(","))
    except ValueError:
        values = ()
    if len(values) != want or not all(0 < v <= 1 for v in values) or sum(values) > 1:
        shape = (
            "two fractions like 0.2,0.7 (embedding, generation; sum at most 1)"
            if (want == 2)
            else "one fraction in (0, 1]"
        )
        raise pytest.UsageError(f"{flag} must be {shape}, got {raw!r}.")
    return values


def env_item(raw: object, flag: str) -> tuple[str, str | None]:
    """``NAME`` (taken from this environment) or ``NAME=VALUE``; the value is never echoed."""
    name, sep, value = str(raw).partition("=")
    if not _ENV_NAME.match(name):
        raise pytest.UsageError(
            f"{flag} must be NAME or NAME=VALUE with NAME a variable "
            f"name, got a value starting {name[:12]!r}."
        )
    return name, value if sep else None


# -- files, keys and URLs --------------------------------------------------------------------
def readable_file(raw: object, flag: str, root: Path) -> Path:
    """A file that exists, relative to where pytest was started."""
    path = root / str(raw).strip()
    if not path.is_file():
        raise pytest.UsageError(f"{flag} must name a readable file, got {raw!r}.")
    return path


def output_path(raw: object, root: Path) -> Path | None:
    """Where to write a report; ``none`` writes nothing."""
    value = str(raw).strip()
    return None if value.lower() == "none" else root / value


def secret(raw: object, flag: str) -> Secret:
    """A key, held so that it never prints."""
    return Secret(str(raw))


def normalise_url(raw: object, flag: str) -> str:
    """Return ``scheme://host[:port][/prefix]`` without a trailing ``/`` or ``/v1``."""
    value = str(raw).strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise pytest.UsageError(f"{flag} must be http(s)://host[:port], got {redact_url(value)!r}.")
    if parts.query or parts.fragment:
        raise pytest.UsageError(f"{flag} must not carry a query or fragment.")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{path}"


def redact_url(url: str) -> str:
    """Drop any user:password@ part so a URL can be printed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[-1]).geturl()


# issue 18: baseline
#: The results schema ids a baseline may carry (additive changes keep version 1).
BASELINE_SCHEMAS = ("pytest-vllm-conformance/results/1",)
#: The latency metrics a baseline comparison judges: per request TTFT, E2E, and the mean gap
#: between its text chunks (its ITL summary).
BASELINE_METRICS = ("ttft", "itl", "e2e")
BASELINE_PERCENTILES = (50, 90, 95, 99)
#: +50% on p50 and +75% on p95 of each metric, and a regression must also exceed 1 ms: two
#: runs of one unchanged server on a shared 2-core box differ by up to x1.38 at p50 and x1.67
#: at p95 (docs/baseline.md, "Between runs"); a steadier host measures and sets its own.
BASELINE_TOLERANCE_DEFAULTS: dict[str, float] = {
    **{f"{m}_p{q}": 0.50 if q == 50 else 0.75 for m in BASELINE_METRICS for q in (50, 95)},
    "abs_ms": 1.0,
}
BASELINE_ACCEPT_WORDS = ("outputs", "latency")


def baseline_file(raw: object, flag: str, root: Path) -> Path:
    """A results JSON file of an earlier run, or a certification bundle folder (its
    ``results.json``) that a comparison can use (``report.compare.load``, the same test as
    ``vllm-conformance compare``); anything else is one sentence naming what is wrong."""
    from pytest_vllm_conformance.report import compare

    path = root / str(raw).strip()
    if path.is_dir():
        path = path / "results.json"
        if not path.is_file():
            raise pytest.UsageError(
                f"{flag}: {raw!r} is a folder without results.json (not a certification bundle)."
            )
    if not path.is_file():
        raise pytest.UsageError(f"{flag} must name a results JSON file or a bundle, got {raw!r}.")
    try:
        compare.load(path)
    except ValueError as exc:
        raise pytest.UsageError(f"{flag}: {exc}.") from None
    return path


def baseline_tolerance(raw: object, flag: str = "--vllm-baseline-tolerance") -> dict[str, float]:
    """``ttft_p95=20%,e2e_p50=off,abs_ms=2`` over the defaults: KEY is METRIC_pQ (metrics
    ttft, itl, e2e; q 50, 90, 95 or 99) with a percentage (``off``: not judged), or
    ``abs_ms`` with the milliseconds a regression must also exceed."""
    out = dict(BASELINE_TOLERANCE_DEFAULTS)
    for item in filter(None, (part.strip() for part in str(raw).split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        keys = {f"{m}_p{q}" for m in BASELINE_METRICS for q in BASELINE_PERCENTILES}
        if sep and key in keys and value.lower() == "off":
            out.pop(key, None)
            continue
        number = _float(value.removesuffix("%"))
        percent = value.endswith("%") or key in keys
        if not sep or (key not in keys and key != "abs_ms") or not math.isfinite(number):
            number = -1.0
        if number < 0:
            raise pytest.UsageError(
                f"{flag}: {item!r} is not KEY=PERCENT (KEY like ttft_p50, itl_p95, e2e_p99; "
                "'off' to leave it out) or abs_ms=MILLISECONDS."
            )
        out[key] = number / 100 if percent and key != "abs_ms" else number
    return out


def baseline_accept(raw: object, flag: str = "--vllm-baseline-accept") -> tuple[str, ...]:
    """What changed on purpose: ``outputs`` (every greedy answer), ``outputs:NAME`` (one
    prompt's), ``latency`` (every latency regression), comma-separated."""
    out: list[str] = []
    for item in filter(None, (part.strip() for part in str(raw).split(","))):
        word, sep, name = item.partition(":")
        if word not in BASELINE_ACCEPT_WORDS or (sep and (word != "outputs" or not name)):
            raise pytest.UsageError(
                f"{flag}: {item!r} is not one of outputs, outputs:PROMPT_NAME, latency."
            )
        out.append(item)
    return tuple(out)
