"""Send the same request many ways, group the answers, and explain any divergence.

A greedy answer is compared as its token sequence (the ``tokens`` of /v1/completions
logprobs) and its per-token logprobs. The evidence for a divergence is what a user
needs to chase it: how many distinct outputs and how often each came, the first token
position where they part and the text around it, the logprobs there, which requests
(ids, times, what else was in flight) and a reproduction line.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.client import AsyncClient, Response


@dataclass
class Outcome:
    """One answer: its tokens, their logprobs, and when it ran next to what."""

    rid: int
    tokens: tuple[str, ...]
    logprobs: tuple[float, ...]
    started: float
    finished: float
    curl: str = ""
    in_flight: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def text_before(self, k: int, width: int = 40) -> str:
        return "".join(self.tokens[:k])[-width:]

    def token(self, k: int) -> str:
        return self.tokens[k] if k < len(self.tokens) else "<end>"

    def logprob(self, k: int) -> str:
        return f"{self.logprobs[k]:.6g}" if k < len(self.logprobs) else "n/a"


def parse_completion(r: Response, rid: int, t0: float, index: int = 0) -> Outcome:
    """An Outcome from a /v1/completions answer that asked for ``logprobs``."""
    body: Any = r.json()
    choice = sorted(body["choices"], key=lambda c: c.get("index", 0))[index]
    lp = choice.get("logprobs") or {}
    if isinstance(lp.get("content"), list):  # chat-style logprobs (llama.cpp sends these)
        entries = [e for e in lp["content"] if isinstance(e, dict)]
        tokens = tuple(str(e.get("token", "")) for e in entries)
        logprobs = tuple(float(e["logprob"]) for e in entries if e.get("logprob") is not None)
    else:
        tokens = tuple(lp.get("tokens") or ())
        logprobs = tuple(float(x) for x in lp.get("token_logprobs") or () if x is not None)
    tokens = tokens or (choice.get("text", ""),)
    return Outcome(rid, tokens, logprobs, r.timings.sent - t0, r.timings.done - t0, r.curl)


async def burst(client: AsyncClient, body: dict[str, Any], n: int,
                concurrency: int) -> list[Outcome]:
    """``n`` copies of one /v1/completions request, ``concurrency`` in flight at a time."""
    gate = asyncio.Semaphore(concurrency)
    running: set[int] = set()
    t0 = time.perf_counter()

    async def one(rid: int) -> Outcome:
        async with gate:
            neighbours = tuple(sorted(running))
            running.add(rid)
            try:
                r = await client.post("/v1/completions", body)
            finally:
                running.discard(rid)
        if r.status != 200:
            raise RequestFailed(r)
        out = parse_completion(r, rid, t0)
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
    return (f"with {n} requests, a divergence hitting 1% of requests goes unseen with "
            f"probability {p:.2%} (0.99^{n}); one hitting 5% with {miss_probability(n, 0.05):.2%}")


@dataclass
class Divergence:
    """Distinct outputs of one request and where the minority departs from the majority."""

    counts: list[tuple[tuple[str, ...], int]]  # distinct token sequences, most common first
    position: int  # first token index where the first minority output differs
    majority: Outcome
    odd: Outcome
    others: list[Outcome] = field(default_factory=list)

    def describe(self, limit: int = 3) -> str:
        total = sum(c for _, c in self.counts)
        lines = [f"{len(self.counts)} distinct outputs in {total} answers: "
                 + ", ".join(f"#{i + 1} x{c}" for i, (_, c) in enumerate(self.counts))]
        k, a, b = self.position, self.majority, self.odd
        lines.append(f"first divergence at token {k}: after {a.text_before(k)!r}")
        lines.append(f"  majority: {a.token(k)!r} (logprob {a.logprob(k)})")
        lines.append(f"  other:    {b.token(k)!r} (logprob {b.logprob(k)})")
        for o in [b, *self.others][:limit]:
            lines.append(f"  request {o.rid}: sent at +{o.started * 1000:.0f} ms, "
                         f"{len(o.in_flight)} others in flight {list(o.in_flight)[:8]}")
        return "\n".join(lines)


def _first_difference(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))


def compare(outcomes: list[Outcome]) -> Divergence | None:
    """None when every outcome has the same tokens; else the evidence."""
    counts = Counter(o.tokens for o in outcomes)
    if len(counts) <= 1:
        return None
    ranked = counts.most_common()
    top = ranked[0][0]
    majority = next(o for o in outcomes if o.tokens == top)
    odd_all = [o for o in outcomes if o.tokens != top]
    odd = odd_all[0]
    return Divergence(ranked, _first_difference(top, odd.tokens), majority, odd, odd_all[1:])


def logprob_drift(a: Outcome, b: Outcome) -> float:
    """Largest absolute logprob difference of two answers with the same tokens."""
    pairs = zip(a.logprobs, b.logprobs, strict=False)
    return max((abs(x - y) for x, y in pairs), default=0.0)
