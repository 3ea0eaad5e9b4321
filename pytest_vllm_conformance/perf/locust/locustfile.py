"""Locust users for OpenAI-compatible servers: completions, streaming chat and embeddings.

Run it with ``locust -f "$(vllm-conformance load --path)" --host URL``.
Every request is one entry in locust's statistics; a stream adds its own entries,
named after the endpoint, whose "response time" columns hold:

- ``TTFT``: ms from the request being sent to the first chunk carrying text;
- ``ITL``: ms between consecutive text-carrying chunks (chunks, not tokens: one sample
  per gap, so a server that batches tokens into chunks shows fewer, longer gaps);
- ``TPOT``: (end-to-end - TTFT) / (output tokens - 1), output tokens from ``usage``;
- ``TOKENS``: the output-token count itself (a count in a time column, not ms).

Options (locust's command line, a locust.conf, or the environment variable named):
``--vllm-api-key`` ($VLLM_API_KEY), ``--vllm-model`` ($VLLM_MODEL, default: the first
of /v1/models), ``--vllm-embedding-model``, ``--vllm-prompts`` (a JSONL file),
``--vllm-max-tokens``, ``--vllm-embedding-batch``, ``--vllm-request-timeout``. Master
and workers share them, so ``--master``/``--worker`` runs need nothing more.

Each user class fits the server: its first user in a process sends one probe (its own
request with max_tokens=1, or one embedding input), outside the statistics. A class
whose probe is refused as it is (a 4xx other than 408/429, or 501: the endpoint or
model is not served, the key is wrong) does not run: its users only wait, one log line
says why, and one ``NOT RUN`` entry named after the class carries the reason as its
failure. Every user pauses while the same failure repeats (see :class:`fit.Backoff`).
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.lock
import pytest
import requests
from locust import HttpUser, events, task
from locust.argument_parser import LocustArgumentParser
from locust.clients import ResponseContextManager
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from pytest_vllm_conformance import untrusted
from pytest_vllm_conformance.client.events import text_times
from pytest_vllm_conformance.client.sse import SSEDecoder
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.perf.locust import fit
from pytest_vllm_conformance.perf.locust.fit import Backoff, refused_as_is, server_message
from pytest_vllm_conformance.perf.locust.report import NOT_RUN
from pytest_vllm_conformance.secrets import Secret
from pytest_vllm_conformance.workload.prompts import BUILT_IN, Prompt, load

_EMBED_TEXT = "The quick brown fox jumps over the lazy dog."
_IDLE_S = 3600.0  # what a user of a class that cannot run waits, again and again
_PROBE_BODY_MAX = 64 * 1024  # of a refusal, read for its message
_log = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def _add_options(parser: LocustArgumentParser) -> None:
    # straight on the parser: locust's web-UI flags (is_secret) exist only there
    group = parser
    group.add_argument(
        "--vllm-api-key",
        env_var="VLLM_API_KEY",
        default="",
        is_secret=True,
        help="Bearer key for the server. Default: $VLLM_API_KEY, else none.",
    )
    group.add_argument(
        "--vllm-model",
        env_var="VLLM_MODEL",
        default="",
        help="Model for completions and chat. Default: the first of /v1/models.",
    )
    group.add_argument(
        "--vllm-embedding-model",
        env_var="VLLM_EMBEDDING_MODEL",
        default="",
        help="Model for embeddings. Default: the first of /v1/models.",
    )
    group.add_argument(
        "--vllm-prompts",
        env_var="VLLM_PROMPTS",
        default="",
        help='JSONL file of {"prompt": ..., "max_tokens"?: N}. '
        "Default: the built-in set of varied lengths.",
    )
    group.add_argument(
        "--vllm-max-tokens",
        env_var="VLLM_MAX_TOKENS",
        type=int,
        default=0,
        help="max_tokens for every request. Default: 0 (each prompt's own).",
    )
    group.add_argument(
        "--vllm-embedding-batch",
        env_var="VLLM_EMBEDDING_BATCH",
        type=int,
        default=1,
        help="Inputs per embeddings request. Default: 1.",
    )
    group.add_argument(
        "--vllm-request-timeout",
        env_var="VLLM_REQUEST_TIMEOUT",
        type=float,
        default=60.0,
        help="Seconds a request may take. Default: 60.",
    )


class _Target:
    """What every user of this process sends: read once from the parsed options."""

    def __init__(self, environment: Environment) -> None:
        opts = environment.parsed_options
        get = (
            (lambda name, default: getattr(opts, name, default))
            if opts
            else (lambda name, default: default)
        )
        self.key: str = get("vllm_api_key", "")
        if self.key:  # redacted from every failure message and NOT RUN reason (fit.said)
            untrusted.register(Secret(self.key))
        self.model: str = get("vllm_model", "")
        self.embedding_model: str = get("vllm_embedding_model", "")
        prompts_path: str = get("vllm_prompts", "")
        self.prompts: tuple[Prompt, ...] = load(Path(prompts_path)) if prompts_path else BUILT_IN
        self.max_tokens: int = get("vllm_max_tokens", 0)
        self.batch: int = max(1, get("vllm_embedding_batch", 1))
        self.timeout: float = get("vllm_request_timeout", 60.0)
        self.discovered = ""  # the model /v1/models named, once asked
        self.verdicts: dict[str, _Verdict] = {}  # by user class name
        self._next = itertools.cycle(self.prompts)

    def prompt(self) -> tuple[str, int]:
        p = next(self._next)
        return p.text, self.max_tokens or p.max_tokens


class _Verdict:
    """Whether one user class can run in this process: decided once, by its first user."""

    def __init__(self) -> None:
        self.lock = gevent.lock.Semaphore()
        self.decided = False
        self.reason = ""  # why the class cannot run; "" when it can


class NotRun(Exception):
    """The failure of a class's NOT RUN entry: why its users send nothing."""


_targets: dict[int, _Target] = {}


@events.init.add_listener
def _check_options(environment: Environment, **_: Any) -> None:
    """Read the options when the process starts, so a bad prompt file is one line, not N."""
    try:
        _target(environment)
    except pytest.UsageError as exc:
        raise SystemExit(f"locust: {exc}") from None


def _target(environment: Environment) -> _Target:
    key = id(environment)
    if key not in _targets:
        _targets[key] = _Target(environment)
    return _targets[key]


@events.quitting.add_listener
def _let_the_csv_catch_up(environment: Environment, **_: Any) -> None:
    """Locust rewrites its --csv files once a second and not at exit, so they would miss the
    run's last second; one more interval here makes them final (users have stopped by now)."""
    opts = environment.parsed_options
    if (
        opts is not None
        and getattr(opts, "csv_prefix", None)
        and not isinstance(environment.runner, WorkerRunner)
    ):
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


def _server_message(response: requests.Response) -> str:
    """The error's own words: OpenAI's error.message, or a short piece of the body."""
    return server_message(response.text, response.reason or "")


class _OpenAIUser(HttpUser):
    """Shared plumbing: auth, model discovery, the probe, error reporting, back-off."""

    abstract = True

    def on_start(self) -> None:
        self.target = _target(self.environment)
        if self.target.key:
            self.client.headers["Authorization"] = f"Bearer {self.target.key}"
        self._backoff = Backoff()
        self._failure: str | None = None  # of the task now running
        self._idle = False

    def wait_time(self) -> float:
        """Closed loop: the next request at once, unless the same failure keeps repeating."""
        if self._idle:
            return _IDLE_S
        failure, self._failure = self._failure, None
        return self._backoff.after(failure)

    def probe_request(self, model: str) -> tuple[str, dict[str, Any]]:
        """(path, body) of the smallest request of this class's kind."""
        raise NotImplementedError

    def _runs(self, model: str) -> bool:
        """Whether this class can run against the server; the first user asks, the rest wait."""
        name = type(self).__name__
        verdict = self.target.verdicts.setdefault(name, _Verdict())
        with verdict.lock:
            if not verdict.decided:
                verdict.reason = fit.said(self._probe(model))
                verdict.decided = True
                if verdict.reason:
                    _log.warning("%s does not run: %s", name, verdict.reason)
                    self.environment.events.request.fire(
                        request_type=NOT_RUN,
                        name=name,
                        response_time=0,
                        response_length=0,
                        exception=NotRun(verdict.reason),
                        context={},
                    )
        self._idle = bool(verdict.reason)
        return not self._idle

    def _probe(self, model: str) -> str:
        """Why the server refuses this class's request as it is, or "" (also when nothing
        answers: that says nothing of the endpoint, and the class's own requests report it)."""
        path, body = self.probe_request(model)
        headers = {"Authorization": f"Bearer {self.target.key}"} if self.target.key else {}
        try:
            with requests.post(
                f"{(self.host or '').rstrip('/')}{path}",
                json=body,
                headers=headers,
                timeout=self.target.timeout,
                stream=True,
            ) as r:
                if not refused_as_is(r.status_code):
                    return ""
                text = r.raw.read(_PROBE_BODY_MAX, decode_content=True)
        except requests.RequestException:
            return ""
        message = server_message(text.decode("utf-8", "replace"), r.reason or "")
        return f"POST {path} answered HTTP {r.status_code}: {message}"

    def _model(self, wanted: str) -> str | None:
        """The model to ask for; discovered from /v1/models (once per process) if not given."""
        if wanted:
            return wanted
        if self.target.discovered:
            return self.target.discovered
        with self._send("GET", "/v1/models", "/v1/models") as r:
            if not self._ok(r):
                return None
            try:
                found = fit.first_model_id(r.content)
            except CheckFailure as exc:
                self._fail(
                    r, f"/v1/models lists no model (pass --vllm-model): {fit.malformed(exc)}"
                )
                return None
        self.target.discovered = found
        return self.target.discovered

    def _send(self, method: str, path: str, name: str, **kwargs: Any) -> ResponseContextManager:
        """One request, reported when its ``with`` block ends. A pooled keep-alive connection
        the server closed while idle (llama.cpp does after a few requests) fails before any
        byte of an answer: that request never reached the server, so it is sent once more, on
        a fresh connection, and only the second attempt is reported."""
        r = self.client.request(
            method, path, name=name, catch_response=True, timeout=self.target.timeout, **kwargs
        )
        if r.status_code == 0 and _closed_unanswered(r.error):
            r = self.client.request(
                method, path, name=name, catch_response=True, timeout=self.target.timeout, **kwargs
            )
        return r

    def _ok(self, r: ResponseContextManager) -> bool:
        """Mark a failed exchange with a readable reason."""
        if r.status_code == 0:  # no HTTP exchange happened
            err = r.error
            if isinstance(err, requests.Timeout):
                self._fail(r, f"no answer from {self.host} within {self.target.timeout:g} s")
            elif _closed_unanswered(err):
                self._fail(r, f"{self.host} closed the connection without answering")
            else:
                reason = (
                    "connection refused"
                    if "refused" in str(err).lower()
                    else (type(err).__name__ if err is not None else "no response")
                )
                self._fail(r, f"cannot connect to {self.host}: {reason}")
            return False
        if r.status_code >= 400:
            self._fail(r, f"HTTP {r.status_code}: {_server_message(r)}")
            return False
        return True

    def _fail(self, r: ResponseContextManager, message: str) -> None:
        """Report the exchange as failed; the same message again makes the user pause. The
        message may carry server text (a streamed error's words): it is made safe here."""
        message = fit.said(message)
        r.failure(message)
        self._failure = message

    def _record(self, kind: str, name: str, value: float) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=value,
            response_length=0,
            exception=None,
            context={},
        )


def _closed_unanswered(err: BaseException | None) -> bool:
    """http.client's RemoteDisconnected: the peer closed the socket before any answer."""
    return isinstance(err, requests.ConnectionError) and "RemoteDisconnected" in repr(err)


class CompletionsUser(_OpenAIUser):
    """Non-streamed POST /v1/completions, prompts in turn; records output tokens per request."""

    def probe_request(self, model: str) -> tuple[str, dict[str, Any]]:
        return "/v1/completions", {
            "model": model,
            "prompt": "Hello",
            "max_tokens": 1,
            "temperature": 0,
        }

    @task
    def completion(self) -> None:
        model = self._model(self.target.model)
        if model is None or not self._runs(model):
            return
        prompt, max_tokens = self.target.prompt()
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        with self._send("POST", "/v1/completions", "/v1/completions", json=body) as r:
            if not self._ok(r):
                return
            try:
                tokens = fit.completion_tokens(r.content)
            except CheckFailure as exc:
                self._fail(r, fit.malformed(exc))
                return
        self._record("TOKENS", "/v1/completions", tokens)


class StreamingChatUser(_OpenAIUser):
    """Streamed POST /v1/chat/completions with usage; TTFT, ITL, TPOT and TOKENS entries."""

    name = "/v1/chat/completions (stream)"

    def probe_request(self, model: str) -> tuple[str, dict[str, Any]]:
        return "/v1/chat/completions", {
            "model": model,
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 1,
            "temperature": 0,
            "stream": True,
        }

    @task
    def chat_stream(self) -> None:
        model = self._model(self.target.model)
        if model is None or not self._runs(model):
            return
        prompt, max_tokens = self.target.prompt()
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        sent = time.perf_counter()
        with self._send("POST", "/v1/chat/completions", self.name, json=body, stream=True) as r:
            if not self._ok(r):
                return
            decoder = SSEDecoder()
            try:
                for piece in r.iter_content(chunk_size=None):
                    decoder.feed(piece, time.perf_counter())
            except requests.RequestException as exc:
                self._fail(r, f"the stream broke off: {type(exc).__name__}")
                return
            decoder.close()
            ended = time.perf_counter()
            times, tokens, problem = _read_stream(decoder)
            if problem:
                self._fail(r, problem)
                return
            r.request_meta["response_time"] = (ended - sent) * 1000  # the whole stream
        name = "/v1/chat/completions"
        self._record("TTFT", name, (times[0] - sent) * 1000)
        for a, b in itertools.pairwise(times):
            self._record("ITL", name, (b - a) * 1000)
        if tokens > 1:
            self._record("TPOT", name, (ended - times[0]) * 1000 / (tokens - 1))
        self._record("TOKENS", name, tokens)


def _read_stream(decoder: SSEDecoder) -> tuple[list[float], int, str]:
    """(arrival times of text chunks, output tokens, the problem or "") of a finished stream."""
    if decoder.problems:
        return [], 0, f"malformed SSE: {decoder.problems[0]}"
    if not decoder.done_seen:
        return [], 0, "the stream ended without data: [DONE]"
    times, tokens, problem = text_times(decoder.events)
    return times, tokens if tokens is not None else len(times), problem


class EmbeddingsUser(_OpenAIUser):
    """POST /v1/embeddings with ``--vllm-embedding-batch`` inputs; checks one vector each."""

    def probe_request(self, model: str) -> tuple[str, dict[str, Any]]:
        return "/v1/embeddings", {"model": model, "input": _EMBED_TEXT}

    @task
    def embed(self) -> None:
        model = self._model(self.target.embedding_model)
        if model is None or not self._runs(model):
            return
        inputs = [f"{_EMBED_TEXT} ({i})" for i in range(self.target.batch)]
        body = {"model": model, "input": inputs if len(inputs) > 1 else inputs[0]}
        with self._send("POST", "/v1/embeddings", "/v1/embeddings", json=body) as r:
            if not self._ok(r):
                return
            try:
                data = fit.embeddings_data(r.content)
            except CheckFailure as exc:
                self._fail(r, fit.malformed(exc))
                return
            if len(data) != len(inputs):
                self._fail(r, f"asked for {len(inputs)} embeddings, got {len(data)}")
