"""The server under test: wait until it is ready, then find out what it is.

Everything here runs once per session before any test. A server that is not
ready raises :class:`NotReady` with one sentence naming the URL (never the key)
and the cause, which the plugin turns into a single usage error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.client import AsyncClient, ClientError, Response
from pytest_vllm_conformance.config import redact_url
from pytest_vllm_conformance.secrets import Secret
from pytest_vllm_conformance.target import health

_POLL_S = 0.25
_PROBE_TIMEOUT_S = health.PROBE_TIMEOUT_S
PROBED_PATHS = ("/health", "/version", "/v1/models", "/metrics")


class NotReady(Exception):
    """The target cannot be tested; the message is the one line the user sees."""


class _ModelListBroken(NotReady):
    """/v1/models failed; not fatal when the model is named on the command line."""


@dataclass(frozen=True)
class EngineInfo:
    """Which engine answers, and the signals that said so."""

    name: str  # "vllm", "llama.cpp" or "other"
    version: str | None = None
    fingerprint: str | None = None
    evidence: tuple[str, ...] = ()

    def describe(self) -> str:
        return " ".join(x for x in (self.name, self.version) if x)


@dataclass(frozen=True)
class Target:
    """The session's server: where it is, what it serves, what it is, what it exposes."""

    base_url: str
    api_key: Secret | None
    models: tuple[str, ...]
    model: str
    engine: EngineInfo
    endpoints: dict[str, int] = field(default_factory=dict)  # probed path -> HTTP status
    replicas: tuple[str, ...] = ()
    embedding_url: str | None = None
    embedding_model: str | None = None
    canary_ms: float = 0.0

    @property
    def display_url(self) -> str:
        return redact_url(self.base_url)

    def has(self, path: str) -> bool:
        return self.endpoints.get(path) == 200


async def wait_ready(
    client: AsyncClient, url: str, within_s: float, refused_grace_s: float | None = None
) -> None:
    """Poll ``/health`` (or ``/v1/models`` where there is none) until it answers 200.

    A 401 or 403 also counts as alive: the key check that follows says what is wrong.
    With ``refused_grace_s``, give up early when every attempt so far was refused:
    nothing listens there, and waiting longer only delays the message.
    """

    def refused_too_long(p: health.Probe) -> bool:
        return p.only_refused and refused_grace_s is not None and p.waited_s >= refused_grace_s

    wait = await health.poll(
        client,
        base_url=url,
        paths=("/health", "/v1/models"),
        until=lambda p: p.status in (200, 401, 403),
        within_s=within_s,
        interval_s=_POLL_S,
        give_up=refused_too_long,
    )
    if wait.reached:
        return
    problem = wait.last.problem
    if refused_too_long(wait.last):
        raise NotReady(
            f"nothing answers at {redact_url(url)} ({problem}); start the server or fix "
            "--vllm-url (set --vllm-ready-timeout to wait for a server still starting)."
        )
    raise NotReady(
        f"{redact_url(url)} is not ready after {within_s:g} s ({problem}); start the "
        "server, fix --vllm-url, or allow longer with --vllm-ready-timeout."
    )


async def discover(
    client: AsyncClient,
    urls: tuple[str, ...],
    *,
    model: str | None,
    ready_within_s: float,
    refused_grace_s: float | None = None,
    embedding_url: str | None = None,
    embedding_model: str | None = None,
    replicas: tuple[str, ...] | None = None,
) -> Target:
    """Wait for every URL, check the key, pick the model, run the canary, identify the engine.

    ``replicas``: the servers the replica test compares, when not ``urls`` themselves (the
    split topology tests its router, and compares the generation servers behind it).

    Every answer read here is validated; should one still trip the harness (a shape no
    check foresaw), that is the one-line start-up error too, never INTERNALERROR."""
    try:
        return await _discover(
            client,
            urls,
            model=model,
            ready_within_s=ready_within_s,
            refused_grace_s=refused_grace_s,
            embedding_url=embedding_url,
            embedding_model=embedding_model,
            replicas=replicas,
        )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise NotReady(
            f"{redact_url(urls[0])} answered something the harness could not read "
            f"at start-up ({type(exc).__name__}: {str(exc)[:200]}); please report "
            "this with the server's answers."
        ) from None


async def _discover(
    client: AsyncClient,
    urls: tuple[str, ...],
    *,
    model: str | None,
    ready_within_s: float,
    refused_grace_s: float | None,
    embedding_url: str | None,
    embedding_model: str | None,
    replicas: tuple[str, ...] | None,
) -> Target:
    others = [u for u in (*(replicas or ()), embedding_url) if u and u not in urls]
    for url in (*urls, *others):
        await wait_ready(client, url, ready_within_s, refused_grace_s)
    url = urls[0]
    try:
        models = await _list_models(client, url)
    except _ModelListBroken:
        if model is None:
            raise
        models = [model]  # the health suite reports the broken /v1/models
    chosen = model or models[0]
    if chosen not in models:
        raise NotReady(
            f"{redact_url(url)} does not serve model {chosen!r}; it serves "
            f"{', '.join(models)}. Fix --vllm-model."
        )
    probes = await asyncio.gather(*(_probe(client, url, p) for p in PROBED_PATHS))
    endpoints = {p: (r.status if r else 0) for p, r in zip(PROBED_PATHS, probes, strict=True)}
    canary, canary_ms = await _canary(client, url, chosen)
    return Target(
        base_url=url,
        api_key=client.api_key,
        models=tuple(models),
        model=chosen,
        engine=identify_engine(dict(zip(PROBED_PATHS, probes, strict=True)), canary),
        endpoints=endpoints,
        replicas=replicas or urls,
        embedding_url=embedding_url,
        embedding_model=embedding_model,
        canary_ms=canary_ms,
    )


async def _list_models(client: AsyncClient, url: str) -> list[str]:
    try:
        r = await client.get("/v1/models", base_url=url, timeout=_PROBE_TIMEOUT_S)
        if r.status in (401, 403):
            hint = (
                "pass the right key with --vllm-api-key or $VLLM_API_KEY"
                if client.api_key
                else "pass one with --vllm-api-key or $VLLM_API_KEY"
            )
            what = "refused the API key" if client.api_key else "requires an API key"
            raise NotReady(f"{redact_url(url)} {what} (HTTP {r.status} on /v1/models); {hint}.")
        if r.status != 200:
            raise _ModelListBroken(
                f"{redact_url(url)} answered GET /v1/models with HTTP {r.status}: "
                f"{client._redact(r.error_message())}; name the model with --vllm-model to "
                "test it anyway"
            )
        body = r.json()
    except ClientError as exc:
        raise _ModelListBroken(
            f"{redact_url(url)}: {exc.message}; is it an OpenAI-compatible server?"
        ) from None
    return _model_ids(body, redact_url(url))


def _model_ids(body: Any, shown_url: str) -> list[str]:
    """The string ids of a /v1/models body; any other shape is a one-line reason."""
    from pytest_vllm_conformance.checks.values import describe

    where = f"{shown_url} answered GET /v1/models with"
    if not isinstance(body, dict):
        raise _ModelListBroken(
            f"{where} {describe(body)}, not a JSON object; is it an "
            "OpenAI-compatible server? Pass --vllm-model to test it anyway."
        )
    data = body.get("data")
    if not isinstance(data, list):
        raise _ModelListBroken(
            f"{where} data = {describe(data)}, not a list of models; pass "
            "--vllm-model to test it anyway."
        )
    ids = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    if not ids and data:
        first = data[0].get("id") if isinstance(data[0], dict) else data[0]
        raise _ModelListBroken(
            f"{where} no model that has a string id (the first: "
            f"{describe(first)}); pass --vllm-model to test it anyway."
        )
    if not ids:
        raise _ModelListBroken(f"{shown_url} lists no model at /v1/models; pass --vllm-model.")
    return ids


async def _probe(client: AsyncClient, url: str, path: str) -> Response | None:
    try:
        return await client.get(path, base_url=url, timeout=_PROBE_TIMEOUT_S)
    except ClientError:
        return None


async def _canary(client: AsyncClient, url: str, model: str) -> tuple[dict[str, Any], float]:
    """One ``max_tokens=1`` request: completions first, chat where completions are absent."""
    attempts = [
        ("/v1/completions", {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}),
        (
            "/v1/chat/completions",
            {
                "model": model,
                "max_tokens": 1,
                "temperature": 0,
                "messages": [{"role": "user", "content": "Hello"}],
            },
        ),
    ]
    failure = ""
    for path, body in attempts:
        try:
            r = await client.post(path, body, base_url=url)
        except ClientError as exc:
            raise NotReady(
                f"the canary request (max_tokens=1) to {redact_url(url)} failed: {exc.reason}"
            ) from None
        if r.status == 200:
            try:
                data = r.json()
            except ClientError as exc:
                raise NotReady(
                    f"the canary answer from {redact_url(url)} is broken: {exc.message}"
                ) from None
            return (data if isinstance(data, dict) else {}), (
                r.timings.done - r.timings.sent
            ) * 1000
        failure = f"POST {path} answered HTTP {r.status}: {client._redact(r.error_message())}"
        if r.status not in (404, 405):
            break
    raise NotReady(f"the canary request (max_tokens=1) to {redact_url(url)} failed: {failure}")


def identify_engine(probes: dict[str, Response | None], canary: dict[str, Any]) -> EngineInfo:
    """vLLM, llama.cpp or other: from /version, /metrics, headers, owned_by and fingerprint."""
    evidence: list[str] = []
    version: str | None = None
    fingerprint = canary.get("system_fingerprint")
    fingerprint = fingerprint if isinstance(fingerprint, str) else None
    votes = {"vllm": 0, "llama.cpp": 0}
    metrics = probes.get("/metrics")
    if metrics is not None and metrics.status == 200:
        if b"\nvllm:" in metrics.body or metrics.body.startswith(b"vllm:"):
            votes["vllm"] += 2
            evidence.append("/metrics has vllm: series")
        if b"llamacpp:" in metrics.body:
            votes["llama.cpp"] += 2
            evidence.append("/metrics has llamacpp: series")
    ver = probes.get("/version")
    if ver is not None and ver.status == 200:
        try:
            body = ver.json()
            if isinstance(body, dict) and isinstance(body.get("version"), str):
                version = body["version"]
                votes["vllm"] += 1
                evidence.append(f"/version says {version}")
        except ClientError:
            pass
    models = probes.get("/v1/models")
    if models is not None and models.status == 200:
        if b'"owned_by":"vllm"' in models.body.replace(b" ", b""):
            votes["vllm"] += 1
            evidence.append("/v1/models owned_by vllm")
        if b'"owned_by":"llamacpp"' in models.body.replace(b" ", b""):
            votes["llama.cpp"] += 1
            evidence.append("/v1/models owned_by llamacpp")
    if fingerprint:
        if fingerprint.startswith("vllm-"):
            votes["vllm"] += 1
            version = version or fingerprint.split("-")[1]
        elif fingerprint.startswith("b") and fingerprint[1:2].isdigit():
            votes["llama.cpp"] += 1
            version = version or fingerprint
        evidence.append(f"system_fingerprint {fingerprint}")
    for r in probes.values():
        server = r.headers.get("server", "") if r is not None else ""
        if "llama.cpp" in server:
            votes["llama.cpp"] += 1
            evidence.append(f"Server header {server!r}")
            break
    name = max(votes, key=lambda k: votes[k]) if any(votes.values()) else "other"
    if name != "vllm" and version and not (fingerprint or "").startswith("b"):
        version = None
    return EngineInfo(name, version, fingerprint, tuple(evidence))
