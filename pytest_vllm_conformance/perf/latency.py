"""Load shapes and latency measurement: concurrency levels, open-loop arrivals, server histograms.

Definitions (tools disagree, so they are written down; the README repeats them):

- queue: the request's intended start (its arrival time, or when a worker became free) to
  its send stamp; connection set-up is part of it.
- TTFT: send stamp -> the first chunk carrying non-empty generated text (in a Responses
  stream, the first ``response.output_text.delta``).
- ITL: the gaps between consecutive chunks carrying text: chunks, not tokens; chunks that
  arrive in one read share its timestamp, so a 0 gap means "arrived together".
- TPOT: (E2E - TTFT) / (output tokens - 1), output tokens from the server's ``usage``.
- E2E: send stamp -> the last byte of the answer.
- Throughput: successful requests and output tokens per second of the level's wall time;
  goodput: requests per second that met every per-request limit of the SLO.

Stamps: user-space ``time.perf_counter()``. The send stamp is taken just before the request
is handed to the socket (``transport.write``; how long the write held the harness is kept
as ``Timings.write_s``); a chunk's stamp is that of the read that completed its event. No
kernel receive stamps (``SO_TIMESTAMPNS``): they are exact only while the reader keeps up,
and a descheduled reader's merged segments all carry the newest segment's stamp. Whether the
harness kept up is what :mod:`selfcheck` measures per level (``Level.client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_vllm_conformance.client import ClientError, Response
from pytest_vllm_conformance.client.events import text_times
from pytest_vllm_conformance.client.records import loads
from pytest_vllm_conformance.client.sse import SSEEvent
from pytest_vllm_conformance.perf.selfcheck import ClientHealth
from pytest_vllm_conformance.perf.stats import Summary
from pytest_vllm_conformance.report.measurements import measurement

NAN = math.nan
METRICS = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "queue_ms")
SERVER_HISTOGRAMS = {
    "ttft_ms": "vllm:time_to_first_token_seconds",
    "itl_ms": "vllm:inter_token_latency_seconds",
    "e2e_ms": "vllm:e2e_request_latency_seconds",
}


@dataclass(slots=True)
class Sample:
    """One request's measurements (ms); NaN where a figure does not apply."""

    ok: bool
    error: str = ""
    queue_ms: float = NAN
    ttft_ms: float = NAN
    tpot_ms: float = NAN
    e2e_ms: float = NAN
    itl_ms: tuple[float, ...] = ()
    server_tokens: int | None = None
    client_chunks: int = 0
    items: int = 1  # inputs answered (embeddings in a batch)
    merged_chunks: int = 0  # text chunks that shared their read (and stamp) with another
    write_ms: float = 0.0  # send stamp -> the write call returned (what the harness waited)
    write_pending: int = 0  # bytes left to the transport's buffer: flow control, recorded only


#: A finished stream's text chunk times, its server-counted output tokens, and its problem.
Reader = Callable[[list[SSEEvent]], tuple[list[float], int | None, str]]


def _failed(r: Response) -> str:
    if r.status != 200:
        return f"HTTP {r.status}: {r.error_message()}"
    if r.sse_problems:
        return f"malformed stream: {r.sse_problems[0]}"
    return ""


def stream_sample(
    r: Response, intended: float, reader: Reader = text_times, done: bool = True
) -> Sample:
    """Measure a finished SSE response whose request was meant to start at ``intended``
    (``reader`` finds its text chunks' times; ``done``: it must end with ``[DONE]``)."""
    queue = (r.timings.sent - intended) * 1000
    if problem := _failed(r) or (
        "" if r.done_seen or not done else "the stream ended without [DONE]"
    ):
        return Sample(False, problem, queue)
    times, tokens, problem = reader(r.events)
    if problem:
        return Sample(False, problem, queue)
    sent = r.timings.sent
    e2e = (r.timings.done - sent) * 1000
    ttft = (times[0] - sent) * 1000
    count = tokens if tokens is not None else len(times)
    tpot = (e2e - ttft) / (count - 1) if count > 1 else NAN
    itl = tuple((b - a) * 1000 for a, b in itertools.pairwise(times))
    return Sample(
        True,
        "",
        queue,
        ttft,
        tpot,
        e2e,
        itl,
        tokens,
        len(times),
        merged_chunks=merged(times),
        write_ms=write_ms(r),
        write_pending=r.timings.write_pending,
    )


def write_ms(r: Response) -> float:
    """How long the request's write held the harness: the measured write time only. Bytes the
    socket did not take at once (``write_pending``: a body larger than the send buffer) are
    flow control, sent by the event loop as the server reads, not a blocked write."""
    return r.timings.write_s * 1000


def merged(times: list[float]) -> int:
    """Text chunks stamped by a read that completed another one too (equal stamps)."""
    n = len(times)
    return sum(
        1
        for i, t in enumerate(times)
        if (i and times[i - 1] == t) or (i + 1 < n and times[i + 1] == t)
    )


def plain_sample(r: Response, intended: float, items: int = 1) -> Sample:
    """Measure a non-streamed answer (embeddings): E2E and queue only."""
    queue = (r.timings.sent - intended) * 1000
    if problem := _failed(r):
        return Sample(False, problem, queue)
    return Sample(
        True,
        "",
        queue,
        e2e_ms=(r.timings.done - r.timings.sent) * 1000,
        items=items,
        write_ms=write_ms(r),
        write_pending=r.timings.write_pending,
    )


#: Turns a finished exchange into its Sample. Called after the level, not when the stream
#: ends: parsing every chunk's JSON as streams finish together would stall the event loop
#: (256 streams x 66 chunks ~ 80 ms) and delay the chunks of the streams still running.
Finish = Callable[[], Sample]
Send = Callable[[float], Awaitable[Finish]]  # takes the intended start time
MAX_PENDING = 4096  # beyond this (long runs), finish the oldest at once to bound memory


@dataclass(slots=True, eq=False)
class Exchange:
    """A finished exchange: measured once, when first called; until then its response's
    status and stamps are there to glimpse cheaply (see :mod:`early_stop`)."""

    response: Response | None  # None: the request failed before any answer (a ClientError)
    intended: float
    measure: Finish
    measured: Sample | None = None

    def __call__(self) -> Sample:
        if self.measured is None:
            self.measured = self.measure()
        return self.measured


class StopRule(Protocol):
    """Told of each finished request as it finishes; answers why the level should stop
    now ("" to go on). It must stay cheap: it runs on the clock, between chunks."""

    def observe(self, finish: Finish) -> str: ...


def streamed(r: Response, intended: float) -> Finish:
    return Exchange(r, intended, functools.partial(stream_sample, r, intended))


# issue 17: responses
def streamed_response(r: Response, intended: float) -> Finish:
    """A Responses stream: TTFT at its first ``response.output_text.delta``, no ``[DONE]``."""
    measure = functools.partial(stream_sample, r, intended, response_text_times, False)
    return Exchange(r, intended, measure)


RESPONSE_END = ("response.completed", "response.incomplete", "response.failed")


def response_text_times(events: list[SSEEvent]) -> tuple[list[float], int | None, str]:
    """A Responses stream read as :func:`text_times` reads a chat stream: the times of the
    events carrying text (``response.output_text.delta``), the output tokens of the final
    Response's usage, and the problem ("" for a stream that ended with its terminal event)."""
    times: list[float] = []
    tokens, ended = None, ""
    for ev in events:
        try:
            event = loads(ev.data)
        except ValueError:
            return [], None, "a streamed data: line is not JSON"
        if not isinstance(event, dict):
            return [], None, "a streamed data: line is not a JSON object"
        kind = event.get("type")
        if kind == "error":
            return [], None, f"error inside the stream: {str(event.get('message'))[:300]}"
        if kind == "response.output_text.delta":
            if event.get("delta") and isinstance(event["delta"], str):
                times.append(ev.t)
        elif kind in RESPONSE_END:
            ended = str(kind)
            response = event.get("response")
            usage = response.get("usage") if isinstance(response, dict) else None
            tokens = usage.get("output_tokens") if isinstance(usage, dict) else None
            if tokens is not None and (
                not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0
            ):
                return [], None, f"usage.output_tokens is {str(tokens)[:40]!r}, not a count"
    if ended != "response.completed" and ended != "response.incomplete":
        return [], None, f"the stream ended with {ended or 'no terminal event'}"
    if not times:
        return [], None, "the stream carried no text"
    return times, tokens, ""


def plain(r: Response, intended: float, items: int = 1) -> Finish:
    return Exchange(r, intended, functools.partial(plain_sample, r, intended, items))


async def guarded(send: Send, intended: float) -> Finish:
    try:
        return await send(intended)
    except ClientError as exc:
        failed = Sample(False, getattr(exc, "reason", "") or exc.message)
        return Exchange(None, intended, lambda: failed)


class _Collected:
    """Finishers of a level, resolved into Samples at its end (or early past MAX_PENDING)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.done: list[Sample] = []
        self.pending: list[Finish] = []

    def add(self, finish: Finish) -> None:
        self.pending.append(finish)
        if len(self.pending) > self.keep:
            self.resolve()

    def resolve(self) -> list[Sample]:
        self.done += [f() for f in self.pending]
        self.pending = []
        return self.done


@dataclass
class Level:
    """The measured requests of one load level (warm-up excluded) and its wall time."""

    name: str
    samples: list[Sample]
    wall_s: float
    server: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> p50/p95/p99
    server_note: str = ""  # why the server's own view is missing, when its /metrics broke
    stopped_early: str = ""  # why the level ended before its planned requests (a sure miss)
    client: ClientHealth | None = None  # the harness's own scheduling over the level
    server_floor: dict[str, float] = field(default_factory=dict)  # metric -> median bucket's low
    server_inconsistent: str = ""  # why the client's figures are impossible against the server

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    @property
    def error_rate(self) -> float:
        return 1 - len(self.ok) / len(self.samples) if self.samples else 1.0

    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.samples:
            if not s.ok:
                out[s.error] = out.get(s.error, 0) + 1
        return out

    def summary(self, metric: str) -> Summary:
        if metric == "itl_ms":
            return Summary.of(x for s in self.ok for x in s.itl_ms)
        return Summary.of(v for s in self.ok if not math.isnan(v := getattr(s, metric)))

    def rates(self) -> dict[str, float]:
        wall = max(self.wall_s, 1e-9)
        ok = self.ok
        return {
            "requests_per_s": len(ok) / wall,
            "output_tokens_per_s": sum(s.server_tokens or 0 for s in ok) / wall,
            "items_per_s": sum(s.items for s in ok) / wall,
        }

    def goodput(self, limits: dict[str, float]) -> float:
        """Requests/s whose own ttft_ms, tpot_ms and e2e_ms are all within ``limits``."""
        good = [
            s
            for s in self.ok
            if all(
                math.isnan(getattr(s, m)) or getattr(s, m) <= limit for m, limit in limits.items()
            )
        ]
        return len(good) / max(self.wall_s, 1e-9)

    def token_counts(self) -> tuple[int, int, int]:
        """(server tokens, client chunks, requests where they differ): reported, not judged."""
        ok = [s for s in self.ok if s.server_tokens is not None]
        return (
            sum(s.server_tokens or 0 for s in ok),
            sum(s.client_chunks for s in ok),
            sum(1 for s in ok if s.server_tokens != s.client_chunks),
        )


@contextlib.contextmanager
def _quiet_gc(pause: bool) -> Iterator[None]:
    """Keep garbage collection off the clock: what exists now is frozen (never garbage), and
    a short level runs with the collector off (its pause would be a gap no stream had)."""
    gc.freeze()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause:
            gc.enable()
        gc.unfreeze()


async def _warm(send: Send, n: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one() -> None:
        async with gate:
            await guarded(send, time.perf_counter())

    await asyncio.gather(*(one() for _ in range(n)))


async def _settle(tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for every task, some of them cancelled on purpose (an early stop); the first
    exception is raised once all are over, and cancelling the caller cancels them all."""
    if not tasks:
        return
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    errors = [exc for t in tasks if not t.cancelled() and (exc := t.exception())]
    if errors:
        raise errors[0]


def _halt(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the level's other requests: their connections close, nothing is measured."""
    me = asyncio.current_task()
    for task in tasks:
        if task is not me:
            task.cancel()


async def closed_loop(
    name: str,
    send: Send,
    concurrency: int,
    requests: int,
    duration_s: float | None = None,
    warmup: int = 0,
    keep: int = MAX_PENDING,
    stop: StopRule | None = None,
) -> Level:
    """``concurrency`` workers, each sending its next request when the last one ends.

    ``keep``: finished exchanges held unparsed until the level ends (0: parse each at once,
    for loads whose timing does not matter and whose memory does). ``stop``: ends the
    level, requests in flight cancelled, as soon as it names a reason (an early verdict)."""
    await _warm(send, warmup, concurrency)
    collected = _Collected(keep)
    issued = 0
    stopped = ""
    workers: list[asyncio.Task[None]] = []

    async def worker() -> None:
        nonlocal issued, stopped
        while issued < requests and time.perf_counter() < deadline and not stopped:
            issued += 1
            finish = await guarded(send, time.perf_counter())
            collected.add(finish)
            if stop is not None and not stopped and (reason := stop.observe(finish)):
                stopped = reason
                _halt(workers)

    with _quiet_gc(pause=requests <= keep):
        started = time.perf_counter()
        deadline = started + duration_s if duration_s else math.inf
        workers += [asyncio.ensure_future(worker()) for _ in range(concurrency)]
        await _settle(workers)
        wall = time.perf_counter() - started
    return Level(name, collected.resolve(), wall, stopped_early=stopped)


def arrivals(rate: float, burstiness: float, seed: int) -> Callable[[], float]:
    """Gaps between arrivals: gamma with mean 1/rate; burstiness 1 is Poisson, < 1 burstier."""
    rng = random.Random(seed)
    return lambda: rng.gammavariate(burstiness, 1.0 / (rate * burstiness))


async def open_loop(
    name: str,
    send: Send,
    rate: float,
    burstiness: float,
    requests: int,
    duration_s: float | None = None,
    warmup: int = 0,
    seed: int = 0,
    stop: StopRule | None = None,
) -> Level:
    """Requests start at their arrival times whatever is in flight (no concurrency cap).

    ``stop``: as in :func:`closed_loop`; arrivals still to come are not sent."""
    await _warm(send, warmup, 1)
    gap = arrivals(rate, burstiness, seed)
    tasks: list[asyncio.Task[Finish]] = []
    stopped = ""

    async def one(at: float) -> Finish:
        nonlocal stopped
        finish = await guarded(send, at)
        if stop is not None and not stopped and (reason := stop.observe(finish)):
            stopped = reason
            _halt([*tasks, arriving])
        return finish

    async def arrive() -> None:
        at = started
        for _ in range(requests):
            at += gap()
            if duration_s and at - started > duration_s:
                break
            if (delay := at - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(at)))

    with _quiet_gc(pause=requests <= MAX_PENDING):
        started = time.perf_counter()
        arriving = asyncio.ensure_future(arrive())
        try:
            await _settle([arriving])
        except BaseException:  # cancelled from outside, or a failure: no request outlives it
            _halt(tasks)
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        await _settle(tasks)
        wall = time.perf_counter() - started
    finished = [t.result() for t in tasks if not t.cancelled()]
    return Level(name, [f() for f in finished], wall, stopped_early=stopped)


def histogram_buckets(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of one histogram, summed over its label sets.

    Through the project's one validated parser: unparseable text or a NaN count is a
    :class:`CheckFailure`, which :class:`LoadRunner` turns into a note."""
    from pytest_vllm_conformance.checks.metrics import prometheus_text

    return prometheus_text(text).buckets(name)


def bucket_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Prometheus' histogram_quantile over the counts added between two scrapes (seconds)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return NAN
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all that is known
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return NAN


def server_view(before: str, after: str) -> dict[str, dict[str, float]]:
    """The server's own p50/p95/p99 (ms) per metric over the level, from its histograms.

    Raises :class:`CheckFailure` when either scrape is unparseable or carries a
    non-finite count; a quantile that comes out NaN (no request counted) is left out."""
    from pytest_vllm_conformance.checks.metrics import prometheus_text

    first, last = prometheus_text(before), prometheus_text(after)
    out: dict[str, dict[str, float]] = {}
    for metric, name in SERVER_HISTOGRAMS.items():
        b, a = first.buckets(name), last.buckets(name)
        if a:
            quantiles = {
                f"p{round(q * 100)}": bucket_quantile(q, b, a) * 1000 for q in (0.5, 0.95, 0.99)
            }
            if all(math.isfinite(v) for v in quantiles.values()):
                out[metric] = quantiles
    return out


def bucket_floor(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """The lower bound (seconds) of the bucket holding the ``q`` quantile; NaN if none counted."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return NAN
    lower = 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= q * counts[-1]:
            return lower
        lower = bound
    return NAN


def server_floors(before: str, after: str) -> dict[str, float]:
    """Per metric (ms), the lower bound of the server histogram's bucket holding its median.

    vLLM starts these clocks after the request arrived and stops them before the answer
    left, so a client p50 below this floor is impossible (:func:`selfcheck.against_server`)."""
    from pytest_vllm_conformance.checks.metrics import prometheus_text

    first, last = prometheus_text(before), prometheus_text(after)
    out: dict[str, float] = {}
    for metric, name in SERVER_HISTOGRAMS.items():
        b, a = first.buckets(name), last.buckets(name)
        if a and math.isfinite(floor := bucket_floor(0.5, b, a)):
            out[metric] = floor * 1000
    return out


#: One SLO verdict row: (key, measured, allowed, met), as :func:`slo.judge` gives it.
SloRow = tuple[str, float, float, bool]

# issue 18: baseline
#: At most this many requests' samples are kept per level (a seeded uniform reservoir).
SAMPLES_KEPT = 20_000
SAMPLES_SEED = 18


@dataclass(frozen=True)
class LevelSamples:
    """The raw per-request figures of a level's successful requests (ms, rounded to the
    microsecond), what a later run's comparison tests against (:mod:`report.compare`).

    A level of more than :data:`SAMPLES_KEPT` requests keeps a uniform random subset of
    them, drawn with the seeded ``random.Random(seed)`` (``seen`` requests, ``kept`` kept,
    in their order): every request had the same chance, so percentiles of the subset
    estimate the level's with the sampling error of ``kept`` draws. NaN (no text: an
    embeddings request's TTFT) is written as null. ``itl_mean_ms``: each request's mean gap
    between text chunks (its ITL summary); NaN for a request of fewer than two chunks."""

    seen: int
    kept: int
    seed: int
    ttft_ms: tuple[float, ...] = ()
    e2e_ms: tuple[float, ...] = ()
    itl_mean_ms: tuple[float, ...] = ()

    @classmethod
    def of(cls, samples: list[Sample], cap: int = SAMPLES_KEPT) -> LevelSamples:
        ok = [s for s in samples if s.ok]
        if len(ok) > cap:
            chosen = sorted(random.Random(SAMPLES_SEED).sample(range(len(ok)), cap))
            kept = [ok[i] for i in chosen]
        else:
            kept = ok

        def r(v: float) -> float:
            return round(v, 3) if math.isfinite(v) else NAN

        return cls(
            len(ok),
            len(kept),
            SAMPLES_SEED,
            tuple(r(s.ttft_ms) for s in kept),
            tuple(r(s.e2e_ms) for s in kept),
            tuple(r(math.fsum(s.itl_ms) / len(s.itl_ms)) if s.itl_ms else NAN for s in kept),
        )

    def metric(self, name: str) -> list[float]:
        """One metric's finite values (``ttft``, ``e2e`` or ``itl``)."""
        values = {"ttft": self.ttft_ms, "e2e": self.e2e_ms, "itl": self.itl_mean_ms}[name]
        return [v for v in values if math.isfinite(v)]


#: A level's prompt texts are kept in its workload up to this many characters in all.
WORKLOAD_TEXT_KEPT = 64_000


@dataclass(frozen=True)
class LevelWorkload:
    """What a level's requests asked for, so a later comparison measures and judges like
    with like (:mod:`report.compare`): ``max_tokens`` (None where requests have none:
    embeddings), the SHA-256 of the prompt (or input) texts in order, and the texts
    themselves while they fit in :data:`WORKLOAD_TEXT_KEPT` characters (else empty), which
    ``--vllm-baseline`` sends again; and its ``place`` in the run (:mod:`perf.place`: a
    digest of the test files and levels this process ran before it; "" where not recorded)."""

    max_tokens: int | None
    prompts_sha256: str
    prompts: tuple[str, ...] = ()
    place: str = ""

    @classmethod
    def of(cls, max_tokens: int | None, texts: Iterable[str]) -> LevelWorkload:
        import hashlib
        import json

        texts = tuple(texts)
        digest = hashlib.sha256(json.dumps(texts).encode("utf-8", "surrogatepass")).hexdigest()
        kept = texts if sum(map(len, texts)) <= WORKLOAD_TEXT_KEPT else ()
        return cls(max_tokens, digest, kept)

    @property
    def replayable(self) -> bool:
        """The texts are kept and unaltered (a results file escapes and cuts odd or long
        strings): they hash to ``prompts_sha256``."""
        return bool(self.prompts) and self.of(None, self.prompts).prompts_sha256 == (
            self.prompts_sha256
        )


@measurement("latency_level")
@dataclass(frozen=True)
class LevelFigures:
    """One load level as every report shows it: the client's figures per metric, the
    server's own view, rates, the harness self-check and the SLO verdict rows.

    A frozen summary of :class:`Level` (whose samples stay on the worker)."""

    name: str
    requests: int
    error_rate: float
    stats: dict[str, Summary]  # metric (ttft_ms, ...) -> client summary; metrics with samples
    rates: dict[str, float]  # requests_per_s, output_tokens_per_s, items_per_s
    tokens_server: int
    tokens_client_chunks: int
    token_count_mismatches: int
    server: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> p50/p95/p99
    server_floor: dict[str, float] = field(default_factory=dict)
    server_note: str = ""
    server_inconsistent: str = ""
    stopped_early: str = ""
    client: ClientHealth | None = None
    slo: tuple[SloRow, ...] = ()
    harness: str = ""  # the self-check's sentence; "" when the figures can be trusted
    samples: LevelSamples | None = None  # issue 18: the raw samples (None: an older file)
    workload: LevelWorkload | None = None  # issue 18: None in an older file
    #: the baseline suite's second measurement of a level, which a comparison holds a
    #: regression against (``report.compare.measured_twice``); not a figure of the run's own
    second: bool = False

    @classmethod
    def of(cls, level: Level, slo_rows: Iterable[SloRow] = ()) -> LevelFigures:
        from pytest_vllm_conformance.perf.selfcheck import limited_sentence

        stats = {m: s for m in METRICS if (s := level.summary(m)).count}
        tokens, chunks, differ = level.token_counts()
        return cls(
            level.name,
            len(level.samples),
            level.error_rate,
            stats,
            level.rates(),
            tokens,
            chunks,
            differ,
            dict(level.server),
            dict(level.server_floor),
            level.server_note,
            level.server_inconsistent,
            level.stopped_early,
            level.client,
            tuple(slo_rows),
            limited_sentence(level),
            LevelSamples.of(level.samples),
        )

    def level_properties(self) -> list[tuple[str, Any]]:
        """The level's own (name, value) pairs, unprefixed (``ttft_p95_ms``, ...)."""
        out: list[tuple[str, Any]] = [
            ("level", self.name),
            ("requests", self.requests),
            ("error_rate", round(self.error_rate, 4)),
        ]
        for metric, s in self.stats.items():
            out += [
                (f"{metric[:-3]}_{k}_ms", round(v, 3))
                for k, v in s.as_dict().items()
                if k != "count"
            ]
        out += [(k, round(v, 3)) for k, v in self.rates.items()]
        out += [
            ("tokens_server", self.tokens_server),
            ("tokens_client_chunks", self.tokens_client_chunks),
            ("token_count_mismatches", self.token_count_mismatches),
        ]
        for metric, quantiles in self.server.items():
            out += [(f"server_{metric[:-3]}_{k}_ms", round(v, 3)) for k, v in quantiles.items()]
        out += [("stopped_early", self.stopped_early)] if self.stopped_early else []
        if self.client is not None:
            out += self.client.properties()
        if self.server_floor:
            out += [
                ("server_inconsistent", bool(self.server_inconsistent)),
                ("server_inconsistent_reason", self.server_inconsistent),
            ]
        return out

    def properties(self) -> list[tuple[str, Any]]:
        """JUnit/JSON pairs named ``<level>: <what>``, the SLO rows as ``measured vs allowed``."""
        out = [(f"{self.name}: {k}", v) for k, v in self.level_properties()]
        out += [(f"{self.name}: slo {k}", f"{m:.4g} vs {a:g}") for k, m, a, _ in self.slo]
        if self.server_note:
            out.append((f"{self.name}: server view", self.server_note))
        if self.harness:
            out.append((f"{self.name}: harness", self.harness))
        return out


def properties(level: Level) -> list[tuple[str, Any]]:
    """Flat (name, value) pairs of one level, unprefixed (:meth:`LevelFigures.level_properties`)."""
    return LevelFigures.of(level).level_properties()
