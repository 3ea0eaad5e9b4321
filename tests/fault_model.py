"""The fault server's stand-in for a model: deterministic words, token ids and logprobs.

Greedy requests (temperature 0) depend only on the prompt; sampled ones on the seed,
or on nothing reproducible when no seed is given. Good enough to exercise every
check; it never replaces a real engine.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from dataclasses import dataclass

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "red",
    "green",
    "blue",
    "cat",
    "dog",
    "sun",
]
ID_BASE = 100
CONTEXT = 512
EMBED_DIM = 16


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def ids_to_text(ids: list[int]) -> str:
    return " ".join(WORDS[(i - ID_BASE) % len(WORDS)] for i in ids)


@dataclass
class Token:
    text: str
    id: int
    logprob: float
    top: list[tuple[str, float]]  # (token text, logprob), best first


def generate(
    prompt: str, n_tokens: int, *, temperature: float, seed: int | None, choice: int, top_k: int = 0
) -> list[Token]:
    """``n_tokens`` tokens; the same greedy prompt always gives the same tokens."""
    if temperature == 0:
        key = f"greedy|{prompt}"
    elif seed is not None:
        key = f"seed|{seed}|{choice}|{prompt}"
    else:
        key = os.urandom(8).hex()
    rng = random.Random(hashlib.sha256(key.encode()).digest())
    out = []
    for _ in range(n_tokens):
        ranked = rng.sample(range(len(WORDS)), k=max(2, top_k))
        best = ranked[0]
        logprobs = [-0.05 - 0.7 * rank for rank in range(len(ranked))]
        out.append(
            Token(
                " " + WORDS[best],
                ID_BASE + best,
                logprobs[0],
                [(" " + WORDS[i], lp) for i, lp in zip(ranked, logprobs, strict=True)][:top_k],
            )
        )
    return out


def embed(text: str) -> list[float]:
    """A unit vector derived from the text."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vec = [rng.uniform(-1, 1) for _ in range(EMBED_DIM)]
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / norm for x in vec]
