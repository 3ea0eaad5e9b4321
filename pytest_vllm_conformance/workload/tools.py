"""The tool-calling requests the tools suite (and the determinism suite's tool burst) send.

Two strict function tools whose parameters are bounded (enums and a boolean, every
property required, no other property allowed), so a greedy model under a grammar must end
its arguments in a few tokens. A Hermes-style call costs a small model 70-90 tokens (its
tokenizer has no merges for JSON punctuation), hence :data:`MAX_TOKENS`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pytest_vllm_conformance.workload import shapes

if TYPE_CHECKING:
    from pytest_vllm_conformance.client import Response

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["paris", "rome"]},
                "celsius": {"type": "boolean"},
            },
            "required": ["city", "celsius"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string", "enum": ["utc", "cet"]}},
            "required": ["tz"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TOOLS = (WEATHER, TIME)
QUESTION = "What is the weather in Paris right now? Use the tools."
MAX_TOKENS = 200


def named(name: str) -> dict[str, Any]:
    """The ``tool_choice`` that forces one function."""
    return {"type": "function", "function": {"name": name}}


def request(model: str, choice: str | dict[str, Any], /, **extra: Any) -> dict[str, Any]:
    """A greedy chat request offering :data:`TOOLS` with ``tool_choice`` ``choice``;
    ``extra`` overrides (None removes a field)."""
    return shapes.chat(
        model,
        **{
            "messages": [{"role": "user", "content": QUESTION}],
            "tools": list(TOOLS),
            "tool_choice": choice,
            "max_tokens": MAX_TOKENS,
            **extra,
        },
    )


#: Statuses a server without tool calling answers a tools request with: vLLM without
#: --tool-call-parser 400, llama.cpp without jinja 500 ("tools param requires --jinja flag").
#: A 500 is a server error first (a crashing tool parser says "tool" too): it counts only
#: with llama.cpp's --jinja wording.
_REFUSALS = (400, 404, 422, 501)
_JINJA = re.compile(r"--jinja\b")
_ABOUT_TOOLS = re.compile(r"tool|function", re.I)
_NOT_ON = re.compile(
    r"\brequires?\b|not (?:supported|enabled|implemented)|unsupported|--jinja|--tool-call-parser"
    r"|--enable-auto-tool-choice",
    re.I,
)


def not_supported(response: Response) -> str | None:
    """The server's words when ``response`` refuses a tools request because the server does
    not serve tool calling (the evidence of a "not supported" skip); None otherwise.

    Only a refusal that says so counts: its error message names tools (or functions) and
    a missing capability ("requires --tool-call-parser", "requires --jinja flag", "not
    supported"); a 500 only with the ``--jinja`` wording. Any other refusal of a valid
    request stays a failure."""
    if response.status not in (*_REFUSALS, 500):
        return None
    message = response.error_message()
    if response.status == 500:
        return message if _ABOUT_TOOLS.search(message) and _JINJA.search(message) else None
    if _ABOUT_TOOLS.search(message) and _NOT_ON.search(message):
        return message
    return None
