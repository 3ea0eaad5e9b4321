"""The ``vllm_load`` fixture's runner: measure a load level, record it, judge it against the SLO.

The bundled latency suite is a few calls to this; a user's own test can do the same:

    @pytest.mark.latency(ttft_p95_ms=300, error_rate=0)
    def test_chat_under_16_users(vllm_load):
        vllm_load.completions(concurrency=16)
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from pytest_vllm_conformance.checks.slo import Slo, slo_met
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.config import TINY, Settings
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.perf import latency, selfcheck, slo
from pytest_vllm_conformance.perf.early_stop import EarlyStop
from pytest_vllm_conformance.perf.latency import Level, LevelWorkload
from pytest_vllm_conformance.perf.place import Measured, history
from pytest_vllm_conformance.perf.stats import table
from pytest_vllm_conformance.report import measurements
from pytest_vllm_conformance.target.discovery import Target
from pytest_vllm_conformance.workload import prompts

_EMBED_TEXT = "The quick brown fox jumps over the lazy dog"


def level_table(level: Level) -> str:
    """Client percentiles per metric, the server's own where it has histograms, rates."""
    rows = [(m[:-3], level.summary(m)) for m in latency.METRICS if level.summary(m).count]
    server = [
        " / ".join(f"{v:.1f}" for v in level.server.get(f"{name}_ms", {}).values()) or "-"
        for name, _ in rows
    ]
    out = table(rows, label=f"{level.name} (ms)", extra=[("server p50 / p95 / p99", server)])
    rates = level.rates()
    tokens, chunks, differ = level.token_counts()
    out += (
        f"\n{len(level.ok)}/{len(level.samples)} ok in {level.wall_s:.1f} s: "
        f"{rates['requests_per_s']:.2f} req/s, {rates['output_tokens_per_s']:.1f} output "
        f"tokens/s, {rates['items_per_s']:.2f} items/s"
    )
    if level.stopped_early:
        out += f"\n{level.stopped_early}"
    if level.server_note:
        out += f"\nnote: {level.server_note}"
    if sentence := selfcheck.limited_sentence(level):
        out += f"\nHARNESS: {sentence}"
    elif level.client is not None:
        out += (
            f"\nharness: not client-limited (CPU wait {level.client.runqueue_per_wakeup_ms:.3g}"
            f" ms per wake-up, loop lag p99 {level.client.loop_lag_p99_ms:.3g} ms, "
            f"{level.client.cpu_percent:.0f}% of a core; tolerance "
            f"{level.client.tolerance_ms:.3g} ms)"
        )
    if tokens:
        out += (
            f"\noutput tokens: server (usage) {tokens}, client (text chunks) {chunks}, "
            f"differing in {differ} requests"
        )
    return out


class LoadRunner:
    """Runs load levels against the target with the run's settings and the test's SLO.

    ``early_stop`` (``--vllm-latency-early-stop``): end a level as soon as its SLO verdict is
    a sure miss (:mod:`early_stop`); off, every planned request is sent whatever the first
    ones showed."""

    def __init__(
        self,
        client: Client,
        target: Target,
        settings: Settings,
        request: pytest.FixtureRequest,
        early_stop: bool = True,
    ) -> None:
        self.client, self.target, self.settings, self.request = client, target, settings, request
        self.early_stop = early_stop
        self.perf = settings.perf
        # the embeddings limits sized for the tiny embedding server the plugin starts, only
        defaults = slo.TINY_SERVE_DEFAULTS if settings.serve_embedding == TINY else slo.DEFAULTS
        self.slo = slo.limits(self.perf.slo, request.node.get_closest_marker("latency"), defaults)
        self._texts = tuple(p.text for p in prompts.load(settings.prompts))
        self._prompts = itertools.cycle(self._texts)
        #: "" (this run's own measurement), "first" (the baseline suite measures a level this
        #: process did not) or "second" (its second measurement of a level, to confirm)
        self.replaying = ""
        self.last_figures: latency.LevelFigures | None = None  # of the last level measured

    # -- senders ------------------------------------------------------------------------------
    def completion_sender(self, max_tokens: int) -> latency.Send:
        aio = self.client.aio

        async def send(intended: float) -> latency.Finish:
            body = {
                "model": self.target.model,
                "prompt": next(self._prompts),
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            return latency.streamed(await aio.stream("/v1/completions", body), intended)

        return send

    def embedding_sender(self, model: str, batch: int) -> latency.Send:
        aio = self.client.aio
        url = self.target.embedding_url
        inputs: Any = [f"{_EMBED_TEXT} ({i})" for i in range(batch)] if batch > 1 else _EMBED_TEXT

        async def send(intended: float) -> latency.Finish:
            r = await aio.post("/v1/embeddings", {"model": model, "input": inputs}, base_url=url)
            return latency.plain(r, intended, items=batch)

        return send

    # -- levels -------------------------------------------------------------------------------
    def stop_rule(self, planned: int, embeddings: bool) -> EarlyStop | None:
        """The early verdict for a level of ``planned`` requests, from the test's SLO."""
        return EarlyStop.from_slo(self.slo, planned, embeddings) if self.early_stop else None

    def _scrape(self) -> str:
        try:
            r = self.client.get("/metrics")
        except Exception:  # a missing or broken /metrics only loses the cross-check
            return ""
        return r.body.decode("utf-8", "replace") if r.status == 200 else ""

    def _run(self, level_coro: Any, embeddings: bool) -> Level:
        before = "" if embeddings else self._scrape()
        with selfcheck.Monitor(self.client.loop) as monitor:
            level: Level = self.client.run(level_coro)
        level.client = monitor.result(level.samples, self.perf.harness_tolerance_ms)
        if before:
            try:
                after = self._scrape()
                level.server = latency.server_view(before, after)
                level.server_floor = latency.server_floors(before, after)
                level.server_inconsistent = selfcheck.against_server(level)
            except CheckFailure as exc:  # the cross-check is lost; the level still stands
                level.server = {}
                level.server_note = (
                    f"the server's own view is unavailable: {exc.title} ({exc.received})"
                )
        return level

    def _judge(self, level: Level, embeddings: bool, workload: LevelWorkload) -> Level:
        text = level_table(level)
        runs = history(self.request.config)
        workload = dataclasses.replace(workload, place=runs.place())
        rows = slo.judge(level, self.slo, embeddings)
        figures = dataclasses.replace(
            latency.LevelFigures.of(level, rows),
            workload=workload,
            second=self.replaying == "second",
        )
        self.last_figures = figures
        keep = self.settings.baseline is not None and not self.replaying
        slim = dataclasses.replace(level, samples=[])  # the figures keep what is compared
        runs.level_measured(level.name, Measured(slim, figures) if keep else None)
        measurements.record(self.request, figures)
        self.request.node.add_report_section("call", "latency", text + "\n" + slo.table(rows))
        slo_met(level, Slo(limits=self.slo, embeddings=embeddings, detail=text))
        return level

    def completions(
        self,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        burstiness: float | None = None,
        requests: int | None = None,
        max_tokens: int | None = None,
    ) -> Level:
        """Streamed /v1/completions at a concurrency level, or at an open-loop rate."""
        p = self.perf
        tokens = max_tokens or p.max_tokens
        send = self.completion_sender(tokens)
        n = requests or p.requests
        if rate is not None:
            shape = burstiness or p.burstiness
            coro = latency.open_loop(
                f"rate {rate:g}/s, burstiness {shape:g}",
                send,
                rate,
                shape,
                n,
                p.duration_s,
                p.warmup,
                stop=self.stop_rule(n, embeddings=False),
            )
        else:
            c = concurrency or 1
            coro = latency.closed_loop(
                f"concurrency {c}",
                send,
                c,
                n,
                p.duration_s,
                p.warmup,
                stop=self.stop_rule(n, embeddings=False),
            )
        workload = LevelWorkload.of(tokens, self._texts)
        return self._judge(self._run(coro, embeddings=False), False, workload)

    def embeddings(
        self, *, batch: int = 1, concurrency: int = 8, requests: int | None = None
    ) -> Level:
        """/v1/embeddings with ``batch`` inputs per request at a concurrency level."""
        model = self.target.embedding_model
        if not model:
            pytest.skip("no --vllm-embedding-model given: embeddings latency not measured")
        p = self.perf
        send = self.embedding_sender(model, batch)
        n = requests or p.requests
        coro = latency.closed_loop(
            f"embeddings batch {batch}, concurrency {concurrency}",
            send,
            concurrency,
            n,
            p.duration_s,
            p.warmup,
            stop=self.stop_rule(n, embeddings=True),
        )
        inputs = [f"{_EMBED_TEXT} ({i})" for i in range(batch)] if batch > 1 else [_EMBED_TEXT]
        return self._judge(self._run(coro, embeddings=True), True, LevelWorkload.of(None, inputs))

    # issue 17: responses
    def response_sender(self, max_tokens: int) -> latency.Send:
        from pytest_vllm_conformance.workload import responses

        aio = self.client.aio

        async def send(intended: float) -> latency.Finish:
            body = responses.create(
                self.target.model,
                input=next(self._prompts),
                max_output_tokens=max_tokens,
                stream=True,
            )
            return latency.streamed_response(await aio.stream(responses.PATH, body), intended)

        return send

    def responses(
        self, *, concurrency: int = 1, requests: int | None = None, max_tokens: int | None = None
    ) -> Level:
        """Streamed /v1/responses at a concurrency level (TTFT: the first
        ``response.output_text.delta``); a server without the route skips, "not supported"."""
        from pytest_vllm_conformance.workload import responses

        p = self.perf
        probe = self.client.post(
            responses.PATH, responses.create(self.target.model, max_output_tokens=16)
        )
        if evidence := responses.not_supported(probe, f"POST {responses.PATH}"):
            from pytest_vllm_conformance.target.capabilities import not_supported

            not_supported("responses api", evidence)
        n = requests or p.requests
        tokens = max_tokens or p.max_tokens
        coro = latency.closed_loop(
            f"responses, concurrency {concurrency}",
            self.response_sender(tokens),
            concurrency,
            n,
            p.duration_s,
            p.warmup,
            stop=self.stop_rule(n, embeddings=False),
        )
        workload = LevelWorkload.of(tokens, self._texts)
        return self._judge(self._run(coro, embeddings=False), False, workload)

    # issue 18: baseline
    def replay(
        self, name: str, perf: Any, workload: LevelWorkload | None = None, second: bool = False
    ) -> Level | None:
        """Measure again the level an earlier run named ``name`` (as :meth:`completions`,
        :meth:`embeddings` and :meth:`responses` name theirs), with that run's request
        count, warm-up, duration and max_tokens (``perf``: its ``PerfSettings``), and the
        level's own max_tokens and prompt texts where its ``workload`` recorded them,
        recorded like any level (``second``: flagged as the second measurement of a level
        measured already). Not judged against this run's SLO, only for failed requests and a
        harness that could not keep up; no early stop. None: a name of no known shape."""
        import re

        shapes = {
            "closed": r"concurrency (\d+)",
            "open": r"rate ([0-9.e+-]+)/s, burstiness ([0-9.e+-]+)",
            "embeddings": r"embeddings batch (\d+), concurrency (\d+)",
            "responses": r"responses, concurrency (\d+)",
        }
        found = {k: m for k, p in shapes.items() if (m := re.fullmatch(p, name))}
        if not found:
            return None
        kind, match = next(iter(found.items()))
        saved = self.perf, self.slo, self.early_stop, self._texts, self._prompts
        self.replaying = "second" if second else "first"
        fields = perf_fields(perf)
        if workload is not None and workload.max_tokens is not None and workload.max_tokens > 0:
            fields["max_tokens"] = workload.max_tokens
        self.perf = dataclasses.replace(self.perf, **fields)
        self.slo, self.early_stop = {"error_rate": 0.0}, False
        if workload is not None and workload.replayable and kind != "embeddings":
            self._texts = tuple(str(t) for t in workload.prompts)
            self._prompts = itertools.cycle(self._texts)
        try:
            if kind == "closed":
                return self.completions(concurrency=int(match[1]))
            if kind == "open":
                return self.completions(rate=float(match[1]), burstiness=float(match[2]))
            if kind == "embeddings":
                return self.embeddings(batch=int(match[1]), concurrency=int(match[2]))
            return self.responses(concurrency=int(match[1]))
        finally:
            self.perf, self.slo, self.early_stop, self._texts, self._prompts = saved
            self.replaying = ""


def perf_fields(perf: Any) -> dict[str, Any]:
    """The load settings a replayed level takes from an earlier run's ``options.perf``
    (a JSON map): those that shape its requests, each only when it is of the right type."""
    wanted = {"requests": int, "warmup": int, "max_tokens": int, "duration_s": float}
    out: dict[str, Any] = {}
    for key, kind in wanted.items():
        value = perf.get(key) if isinstance(perf, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if kind is int and isinstance(value, int) and value >= (0 if key == "warmup" else 1):
            out[key] = value
        elif kind is float and value > 0:
            out[key] = float(value)
    return out
