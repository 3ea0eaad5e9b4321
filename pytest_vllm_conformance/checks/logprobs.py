"""Logprob checks: the logprob tokens spell the text the user receives.

A user who reads the logprobs (to score, to highlight, to align) relies on their tokens
being the pieces of the text. Some tokens cannot be spelled one by one: a token that
holds only part of a multi-byte character decodes to U+FFFD, and engines may render a
token as ``bytes:...``, ``byte:...`` or ``token_id:N``. Those match any short stretch of
text, and the result counts them. An answer that ended on ``finish_reason`` 'stop' may
carry, in its last tokens, an end-of-text token or stop sequence that its text leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance.checks.registry import NO_CONTEXT, Context, Verdict, check
from pytest_vllm_conformance.failures import CheckFailure, Severity
from pytest_vllm_conformance.report.measurements import measurement

MISSPELLED = Verdict("Logprob tokens do not spell the text", Severity.MEDIUM)
MALFORMED = Verdict("logprobs malformed", Severity.MEDIUM)
TEXT_MALFORMED = Verdict("Text malformed", Severity.MEDIUM)
NO_CHOICES = Verdict("Response has no choices", Severity.MEDIUM)

#: Prefixes of tokens an engine renders as something other than their text.
UNSPELLABLE_PREFIXES = ("bytes:", "byte:", "token_id:")
REPLACEMENT = "\ufffd"
#: After finish_reason 'stop', the text may end inside one of this many last tokens.
STOP_TAIL_TOKENS = 2
#: A larger answer is not compared (a conformance request asks for a few tokens), nor one
#: with more unspellable tokens than this: each widens the search.
MAX_CHARS, MAX_TOKENS, MAX_UNSPELLABLE = 65_536, 4_096, 64


@measurement("logprob_spelling")
@dataclass(frozen=True)
class Spelling:
    """What one check compared: tokens in all, and how many could only be matched loosely."""

    tokens: int
    unspellable: int

    def __add__(self, other: Spelling) -> Spelling:
        return Spelling(self.tokens + other.tokens, self.unspellable + other.unspellable)

    def properties(self) -> list[tuple[str, Any]]:
        return [
            ("logprob_tokens_compared", self.tokens),
            ("logprob_tokens_unspellable", self.unspellable),
        ]


def unspellable(token: str) -> bool:
    """True for a token whose text is not its piece of the answer."""
    return REPLACEMENT in token or token.startswith(UNSPELLABLE_PREFIXES)


def _fail(
    path: str,
    expected: str,
    received: str,
    curl: str,
    detail: str = "",
    verdict: Verdict = MISSPELLED,
) -> CheckFailure:
    return verdict.failure(
        path=path, expected=expected, received=received, curl=curl, detail=detail
    )


def _tokens(choice: dict[str, Any], where: str, curl: str) -> list[str] | None:
    """The logprob tokens of a choice, completions-style or chat-style; None when absent."""
    lp = choice.get("logprobs")
    if lp is None:
        return None
    if not isinstance(lp, dict):
        raise _fail(f"{where}.logprobs", "an object", repr(lp)[:100], curl, verdict=MALFORMED)
    content = lp.get("content")
    tokens: Any = (
        [e.get("token") if isinstance(e, dict) else e for e in content]
        if isinstance(content, list)
        else lp.get("tokens")
    )
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise _fail(
            f"{where}.logprobs",
            "tokens (or content[].token) as strings",
            repr(tokens)[:100],
            curl,
            verdict=MALFORMED,
        )
    return tokens


def _text(choice: dict[str, Any], where: str, curl: str) -> tuple[str, str] | None:
    """(the text a user receives, its path); None when the message has more than text."""
    message = choice.get("message")
    if isinstance(message, dict):
        if (
            message.get("tool_calls")
            or message.get("reasoning_content")
            or message.get("reasoning")
        ):
            return None  # the logprob tokens spell those too, in an engine's own markup
        text, path = message.get("content"), f"{where}.message.content"
        text = "" if text is None else text
    else:
        text, path = choice.get("text"), f"{where}.text"
    if not isinstance(text, str):
        raise _fail(path, "a string", repr(text)[:100], curl, verdict=TEXT_MALFORMED)
    return text, path


def spelled(tokens: list[str], text: str, tail_ok: bool) -> tuple[bool, int, int]:
    """(tokens spell text, how far they got in the text, the token that stopped them).

    Positions in the text reachable after each token; an unspellable token reaches any of
    the next ``len(token) + 2`` characters. With ``tail_ok`` the text may end inside one of
    the last :data:`STOP_TAIL_TOKENS` tokens (an unspellable one only within that reach).
    """
    reach, best, stuck = {0}, 0, 0
    for i, token in enumerate(tokens):
        in_tail = tail_ok and i >= len(tokens) - STOP_TAIL_TOKENS
        if in_tail and any(
            token.startswith(text[p:]) or (unspellable(token) and len(text) - p <= len(token) + 2)
            for p in reach
        ):
            return True, len(text), i
        nxt: set[int] = set()
        for p in reach:
            if unspellable(token):
                nxt.update(range(p, min(len(text), p + len(token) + 2) + 1))
            elif text.startswith(token, p):
                nxt.add(p + len(token))
        if not nxt:
            return False, best, i
        reach, best, stuck = nxt, max(nxt), i + 1
    return len(text) in reach, best, stuck


@check(MISSPELLED, MALFORMED, TEXT_MALFORMED, NO_CHOICES)
def tokens_spell_text(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> Spelling:
    """Each choice's logprob tokens, joined, are its text (``text`` or ``message.content``).

    Completions-style (``logprobs.tokens``) and chat-style (``logprobs.content[].token``,
    which llama.cpp also sends on /v1/completions) alike. Returns what was compared; a
    choice without logprobs, or whose message also carries tool calls or reasoning, is not.
    """
    total, curl = Spelling(0, 0), ctx.curl
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise _fail("$.choices", "a list of choices", repr(choices)[:100], curl, verdict=NO_CHOICES)
    for i, choice in enumerate(choices):
        where = f"$.choices[{i}]"
        if not isinstance(choice, dict):
            raise _fail(where, "a choice object", repr(choice)[:100], curl, verdict=NO_CHOICES)
        tokens, found = _tokens(choice, where, curl), _text(choice, where, curl)
        if tokens is None or found is None:
            continue
        text, path = found
        loose = sum(map(unspellable, tokens))
        if (
            len(text) + sum(map(len, tokens)) > MAX_CHARS
            or len(tokens) > MAX_TOKENS
            or loose > MAX_UNSPELLABLE
        ):
            total += Spelling(len(tokens), len(tokens))
            continue
        ok, at, k = spelled(tokens, text, choice.get("finish_reason") == "stop")
        if not ok:
            token = repr(tokens[k]) if k < len(tokens) else "<no more tokens>"
            raise _fail(
                f"{where}.logprobs",
                f"tokens that join to {path}",
                f"token {k} {token} where the text has {text[at : at + 20]!r}",
                curl,
                detail=f"the tokens spell the text up to character {at} of {len(text)}",
            )
        total += Spelling(len(tokens), loose)
    return total
