"""Prompt sets for the determinism suite: a built-in set of varied lengths, or a JSONL file."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

_LONG = (
    "In the early morning the harbour was quiet, the boats rocked gently against the pier, "
    "and the fishermen checked their nets while gulls circled overhead looking for scraps. "
    "A young apprentice carried crates of ice from the warehouse, counting each one aloud, "
    "while the old captain studied the sky and the colour of the water, deciding whether "
    "the weather would hold long enough to reach the far banks and return before dark. "
)


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    max_tokens: int = 24


BUILT_IN = (
    Prompt("short", "Hello"),
    Prompt("question", "What is the capital of France? Answer in one sentence."),
    Prompt("list", "List five colours, one per line:\n1."),
    Prompt("code", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    Prompt("long", _LONG + "Summarise the scene:", max_tokens=32),
)


@functools.cache  # read once per run, however many tests ask
def load(path: Path | None) -> tuple[Prompt, ...]:
    """The JSONL set at ``path`` (lines of {"prompt": str, "max_tokens"?: int}), or the built-in."""
    if path is None:
        return BUILT_IN
    prompts = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, limit = item["prompt"], int(item.get("max_tokens", 24))
            if not isinstance(text, str) or not text or limit < 1:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise pytest.UsageError(
                f"--vllm-prompts: line {number} of {path} is not "
                '{"prompt": "non-empty text", "max_tokens": N}.'
            ) from None
        prompts.append(Prompt(str(item.get("name", f"line{number}")), text, limit))
    if not prompts:
        raise pytest.UsageError(f"--vllm-prompts: {path} holds no prompt.")
    return tuple(prompts)
