"""The request shapes the compliance suites send, named so a failure says which one broke."""

from __future__ import annotations

from typing import Any

PROMPT = "The quick brown fox jumps over the lazy dog and then"
PROMPT_2 = "Once upon a time in a land far away there lived"
TOKEN_IDS = [100, 101, 102, 103, 104, 105]
TURNS = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another one."},
]

COMPLETION_SHAPES: dict[str, dict[str, Any]] = {
    "prompt-string": {},
    "prompt-list": {"prompt": [PROMPT, PROMPT_2]},
    "prompt-token-ids": {"prompt": TOKEN_IDS},
    "n-2": {"n": 2, "temperature": 0.8, "seed": 7},
    "stop-string": {"stop": "zqzq"},
    "stop-list": {"stop": ["zqzq", "qzqz"]},
    "max-tokens-1": {"max_tokens": 1},
    "temperature-top-p-seed": {"temperature": 0.7, "top_p": 0.9, "seed": 11},
    "logprobs-2": {"logprobs": 2},
    "echo": {"echo": True},
    "stream": {"stream": True},
    "stream-usage": {"stream": True, "stream_options": {"include_usage": True}},
}
CHAT_SHAPES: dict[str, dict[str, Any]] = {
    "user-turn": {},
    "system-user-assistant-turns": {"messages": TURNS},
    "n-2": {"n": 2, "temperature": 0.8, "seed": 7},
    "stop-string": {"stop": "zqzq"},
    "stop-list": {"stop": ["zqzq", "qzqz"]},
    "max-completion-tokens": {"max_tokens": None, "max_completion_tokens": 8},
    "temperature-top-p-seed": {"temperature": 0.7, "top_p": 0.9, "seed": 11},
    "logprobs-top-logprobs": {"logprobs": True, "top_logprobs": 2},
    "stream": {"stream": True},
    "stream-usage": {"stream": True, "stream_options": {"include_usage": True}},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {**base, **extra}
    return {k: v for k, v in out.items() if v is not None}


def completion(model: str, /, **extra: Any) -> dict[str, Any]:
    """A greedy /v1/completions body; ``extra`` overrides (None removes a field)."""
    return _merge({"model": model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}, extra)


def chat(model: str, /, **extra: Any) -> dict[str, Any]:
    """A greedy /v1/chat/completions body; ``extra`` overrides (None removes a field)."""
    return _merge(
        {
            "model": model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 8,
            "temperature": 0,
        },
        extra,
    )


def expected_choices(body: dict[str, Any]) -> int:
    prompt = body.get("prompt")
    prompts = (
        len(prompt) if isinstance(prompt, list) and prompt and isinstance(prompt[0], str) else 1
    )
    return prompts * int(body.get("n") or 1)
