"""Send the same request many ways, group the answers, and explain any divergence.

An answer is judged by everything its user receives: the visible text, the token ids (when
the server returns them: vLLM does with ``return_token_ids``) and the logprob tokens with
their logprobs. A difference in any of them is a divergence. The evidence is what a user
needs to chase it: how many distinct outputs and how often each came, which parts differ
and where (character offset in the text, token position in the ids and logprob tokens),
the logprobs there, which requests (ids, times, what else was in flight) and a
reproduction line.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.client import AsyncClient, Response
from pytest_vllm_conformance.report.measurements import measurement

#: The parts of an answer a user receives, in the order evidence names them.
PARTS = ("text", "token ids", "logprob tokens")
Key = tuple[str, tuple[int, ...] | None, tuple[str, ...]]


@dataclass
class Outcome:
    """One answer: its text, token ids, logprob tokens and logprobs, and when it ran."""

    rid: int
    tokens: tuple[str, ...]  # the logprob tokens
    logprobs: tuple[float, ...]
    started: float
    finished: float
    curl: str = ""
    in_flight: tuple[int, ...] = ()
    text: str = ""  # the visible text
    token_ids: tuple[int, ...] | None = None  # None: the server gave none

    @property
    def key(self) -> Key:
        """What two answers must share to be the same output."""
        return (self.text, self.token_ids, self.tokens)

    def text_before(self, k: int, width: int = 40) -> str:
        return "".join(self.tokens[:k])[-width:]

    def token(self, k: int) -> str:
        return self.tokens[k] if k < len(self.tokens) else "<end>"

    def token_id(self, k: int) -> str:
        ids = self.token_ids or ()
        return str(ids[k]) if k < len(ids) else "<end>"

    def logprob(self, k: int) -> str:
        return f"{self.logprobs[k]:.6g}" if k < len(self.logprobs) else "n/a"


def _logprob_tokens(r: Response, lp: Any, where: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """(tokens, logprobs) from completions-style or chat-style (llama.cpp) logprobs, each
    read through the typed accessors: a NaN logprob is a finding, never a value to compare
    (a drift of NaN is below every limit, so it would pass)."""
    if lp is None:
        return (), ()
    path, curl = f"{where}.logprobs", r.curl
    found = values.as_kind(lp, dict, path, curl)
    tokens: list[str] = []
    numbers: list[tuple[Any, str]] = []  # (logprob, its JSON path); None: not given
    if found.get("content") is not None:  # chat-style logprobs (llama.cpp sends these)
        entries = values.field(found, "content", list, path, curl)
        for k in range(len(entries)):
            entry = values.element(entries, k, dict, f"{path}.content", curl)
            at = f"{path}.content[{k}]"
            tokens.append(values.field(entry, "token", str, at, curl))
            numbers.append((entry.get("logprob"), f"{at}.logprob"))
    else:
        listed = values.maybe_field(found, "tokens", list, path, curl) or []
        tokens = [
            values.element(listed, k, str, f"{path}.tokens", curl) for k in range(len(listed))
        ]
        given = values.maybe_field(found, "token_logprobs", list, path, curl) or []
        numbers = [(x, f"{path}.token_logprobs[{k}]") for k, x in enumerate(given)]
    logprobs = tuple(values.finite(x, at, curl) for x, at in numbers if x is not None)
    return tuple(tokens), logprobs


def token_ids_of(r: Response, choice: dict[str, Any], where: str) -> tuple[int, ...] | None:
    """A choice's ``token_ids`` (vLLM's ``return_token_ids``), None when it has none."""
    ids = values.maybe_field(choice, "token_ids", list, where, r.curl)
    if ids is None:
        return None
    return tuple(values.count(x, f"{where}.token_ids[{k}]", r.curl) for k, x in enumerate(ids))


def parse_completion(r: Response, rid: int, t0: float, index: int = 0) -> Outcome:
    """An Outcome from a /v1/completions answer that asked for ``logprobs``; every value is
    read through :mod:`~pytest_vllm_conformance.checks.values`, so a malformed answer is a
    titled finding ("Response body has the wrong shape", "Non-finite number ...")."""
    listed = values.choices(r.json(), r.curl)
    indexed: list[tuple[int, dict[str, Any]]] = []
    for k, choice in enumerate(listed):
        number = values.maybe_field(choice, "index", int, f"$.choices[{k}]", r.curl)
        indexed.append(
            (values.count(0 if number is None else number, f"$.choices[{k}].index", r.curl), choice)
        )
    ranked = [choice for _, choice in sorted(indexed, key=lambda pair: pair[0])]
    choice = values.element(ranked, index, dict, "$.choices", r.curl)
    where = f"$.choices[{index}]"
    text = values.field(choice, "text", str, where, r.curl)
    tokens, logprobs = _logprob_tokens(r, choice.get("logprobs"), where)
    return Outcome(
        rid,
        tokens,
        logprobs,
        r.timings.sent - t0,
        r.timings.done - t0,
        r.curl,
        text=text,
        token_ids=token_ids_of(r, choice, where),
    )


# issue 17: tools
def parse_tool_calls(r: Response, rid: int, t0: float) -> Outcome:
    """An Outcome from a chat answer with tool calls: what an agent acts on, the calls'
    names and argument strings, one call a line as ``name(arguments)`` (the Outcome's text).
    Call ids are left out: a server draws a fresh id per call, and an agent only echoes it."""
    from pytest_vllm_conformance.checks import tools

    turn = tools.read_turn(r.json(), r.curl)
    shown = "\n".join(f"{c.name}({c.arguments})" for c in turn.calls)
    return Outcome(rid, (), (), r.timings.sent - t0, r.timings.done - t0, r.curl, text=shown)


async def burst(
    client: AsyncClient,
    body: dict[str, Any],
    n: int,
    concurrency: int,
    path: str = "/v1/completions",
    parse: Callable[[Response, int, float], Outcome] = parse_completion,
) -> list[Outcome]:
    """``n`` copies of one request (a /v1/completions one unless ``path`` and ``parse`` say
    otherwise), ``concurrency`` in flight at a time."""
    gate = asyncio.Semaphore(concurrency)
    running: set[int] = set()
    t0 = time.perf_counter()

    async def one(rid: int) -> Outcome:
        async with gate:
            neighbours = tuple(sorted(running))
            running.add(rid)
            try:
                r = await client.post(path, body)
            finally:
                running.discard(rid)
        if r.status != 200:
            raise RequestFailed(r)
        out = parse(r, rid, t0)
        out.in_flight = neighbours
        return out

    return list(await asyncio.gather(*(one(i) for i in range(n))))


class RequestFailed(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}: {response.error_message()}")
        self.response = response


def miss_probability(n: int, fraction: float) -> float:
    """Chance that ``n`` independent requests all miss a fault hitting ``fraction`` of them."""
    return (1.0 - fraction) ** n


def requests_for(detect: float, fraction: float) -> int:
    """How many requests detect a ``fraction`` fault with probability ``detect``."""
    return math.ceil(math.log(1.0 - detect) / math.log(1.0 - fraction))


def power_statement(n: int) -> str:
    p = miss_probability(n, 0.01)
    return (
        f"with {n} requests, a divergence hitting 1% of requests goes unseen with "
        f"probability {p:.2%} (0.99^{n}); one hitting 5% with {miss_probability(n, 0.05):.2%}"
    )


def differing_parts(a: Outcome, b: Outcome) -> list[str]:
    """Which of :data:`PARTS` differ between two answers."""
    return [name for name, x, y in zip(PARTS, a.key, b.key, strict=True) if x != y]


def first_difference(a: str | tuple[Any, ...], b: str | tuple[Any, ...]) -> int:
    """The first index where two sequences differ (the shorter length when one is a prefix)."""
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _excerpt(text: str, at: int) -> str:
    return repr(text[at : at + 40]) + ("..." if len(text) > at + 40 else "")


@dataclass
class Divergence:
    """Distinct outputs of one request and where the minority departs from the majority."""

    counts: list[tuple[Key, int]]  # distinct outputs, most common first
    majority: Outcome
    odd: Outcome
    others: list[Outcome] = field(default_factory=list)

    @property
    def parts(self) -> list[str]:
        """What differs between the majority and the first other output."""
        return differing_parts(self.majority, self.odd)

    @property
    def position(self) -> str:
        """Where the first other output departs, in the first part that differs."""
        a, b = self.majority, self.odd
        if "logprob tokens" in self.parts:
            return f"token {first_difference(a.tokens, b.tokens)}"
        if "token ids" in self.parts:
            return f"token id {first_difference(a.token_ids or (), b.token_ids or ())}"
        return f"text character {first_difference(a.text, b.text)}"

    def describe(self, limit: int = 3) -> str:
        total = sum(c for _, c in self.counts)
        a, b = self.majority, self.odd
        same = [
            p
            for p in PARTS
            if p not in self.parts
            and (p != "token ids" or a.token_ids is not None)
            and (p != "logprob tokens" or a.tokens or b.tokens)  # none given: not "equal"
        ]
        lines = [
            f"{len(self.counts)} distinct outputs in {total} answers: "
            + ", ".join(f"#{i + 1} x{c}" for i, (_, c) in enumerate(self.counts)),
            f"differs in: {', '.join(self.parts)}"
            + (f" ({' and '.join(same)} equal)" if same else ""),
        ]
        if "text" in self.parts:
            at = first_difference(a.text, b.text)
            lines.append(
                f"first divergence in the text at character {at}: "
                f"after {a.text[max(0, at - 40) : at]!r}"
            )
            lines.append(f"  majority: {_excerpt(a.text, at)}")
            lines.append(f"  other:    {_excerpt(b.text, at)}")
        if "token ids" in self.parts:
            if a.token_ids is None or b.token_ids is None:
                lines.append("token ids: given in one answer and not in the other")
            else:
                k = first_difference(a.token_ids, b.token_ids)
                lines.append(
                    f"first divergence in the token ids at position {k}: "
                    f"majority {a.token_id(k)}, other {b.token_id(k)}"
                )
        if "logprob tokens" in self.parts:
            k = first_difference(a.tokens, b.tokens)
            lines.append(f"first divergence at token {k}: after {a.text_before(k)!r}")
            lines.append(f"  majority: {a.token(k)!r} (logprob {a.logprob(k)})")
            lines.append(f"  other:    {b.token(k)!r} (logprob {b.logprob(k)})")
        for o in [b, *self.others][:limit]:
            lines.append(
                f"  request {o.rid}: sent at +{o.started * 1000:.0f} ms, "
                f"{len(o.in_flight)} others in flight {list(o.in_flight)[:8]}"
            )
        return "\n".join(lines)


def compare(outcomes: list[Outcome]) -> Divergence | None:
    """None when every outcome has the same text, token ids and logprob tokens; else the
    evidence."""
    counts = Counter(o.key for o in outcomes)
    if len(counts) <= 1:
        return None
    ranked = counts.most_common()
    top = ranked[0][0]
    majority = next(o for o in outcomes if o.key == top)
    odd_all = [o for o in outcomes if o.key != top]
    return Divergence(ranked, majority, odd_all[0], odd_all[1:])


def logprob_drift(a: Outcome, b: Outcome) -> float:
    """Largest absolute logprob difference of two answers with the same tokens."""
    pairs = zip(a.logprobs, b.logprobs, strict=False)
    return max((abs(x - y) for x, y in pairs), default=0.0)


@measurement("determinism_burst")
@dataclass(frozen=True)
class DeterminismVerdict:
    """What a burst of identical requests gave: how many distinct outputs, where they part,
    and (when they agree) how far their logprobs drift."""

    requests: int
    distinct_outputs: int
    divergence_position: str | None = None  # e.g. "token 3"; None when all agree
    divergence_in: tuple[str, ...] = ()  # the parts that differ (PARTS)
    logprob_drift_max: float | None = None  # None when the outputs diverge (no drift judged)

    @classmethod
    def of(cls, outcomes: list[Outcome], requests: int) -> DeterminismVerdict:
        found = compare(outcomes)
        if found is not None:
            return cls(requests, len(found.counts), found.position, tuple(found.parts))
        drift = max((logprob_drift(outcomes[0], o) for o in outcomes), default=0.0)
        return cls(requests, 1, logprob_drift_max=drift)

    def properties(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [
            ("determinism_distinct_outputs", self.distinct_outputs),
            ("determinism_requests", self.requests),
        ]
        if self.divergence_position is not None:
            out += [
                ("determinism_divergence_position", self.divergence_position),
                ("determinism_divergence_in", ", ".join(self.divergence_in)),
            ]
        if self.logprob_drift_max is not None:
            out.append(("determinism_logprob_drift_max", self.logprob_drift_max))
        return out


# issue 18: baseline
def greedy_body(
    model: str, engine: str, text: str | list[str], max_tokens: int, **extra: Any
) -> dict[str, Any]:
    """The determinism suite's greedy /v1/completions request. Every sampling parameter is
    explicit: a model's generation_config may override defaults."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": text,
        "max_tokens": max_tokens,
        "temperature": 0,
        "top_p": 1,
        "n": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "logprobs": 1,
        **extra,
    }
    if engine == "vllm":  # vLLM's own knobs that generation_config can set
        body.update(
            {"top_k": -1, "min_p": 0, "repetition_penalty": 1, "return_token_ids": True}
        )  # ...and the token ids, to compare them too
    return body


def request_hash(body: dict[str, Any]) -> str:
    """What names a greedy request across runs: the SHA-256 of its canonical JSON without
    the model name (a renamed deployment of the same weights still compares)."""
    import hashlib
    import json

    kept = {k: v for k, v in body.items() if k != "model"}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def text_hash(text: str) -> str:
    """The SHA-256 of the text as received: the results file cuts and escapes long or odd
    text, its hash stays exact."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@measurement("greedy_output")
@dataclass(frozen=True)
class GreedyOutput:
    """One determinism prompt's greedy answer, as a later run compares it
    (``--vllm-baseline``): the request's hash, the text (its exact hash too: the results file
    escapes and cuts text), and the token ids where the server gave them."""

    prompt: str  # the prompt's name
    request_sha256: str  # :func:`request_hash` of the body
    text: str
    text_sha256: str
    token_ids: tuple[int, ...] | None = None

    @classmethod
    def of(cls, prompt: str, body: dict[str, Any], outcomes: list[Outcome]) -> GreedyOutput:
        """The most common answer of ``outcomes`` (all of them, when deterministic)."""
        top = Counter(o.key for o in outcomes).most_common(1)[0][0]
        o = next(x for x in outcomes if x.key == top)
        return cls(prompt, request_hash(body), o.text, text_hash(o.text), o.token_ids)

    def properties(self) -> list[tuple[str, Any]]:
        return [(f"greedy_output {self.prompt}", self.text_sha256[:16])]
