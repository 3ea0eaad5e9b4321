"""Semantic checks: the answer means what the request asked for, not only has the shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.checks.registry import NO_CONTEXT, Context, Verdict, check
from pytest_vllm_conformance.failures import Severity

FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "function_call")

NO_USAGE = Verdict("Response has no usage", Severity.MEDIUM)
USAGE_SUM = Verdict("Usage does not add up", Severity.MEDIUM)
NO_FINISH_REASON = Verdict("Finished choice has no finish_reason", Severity.HIGH)
MAX_TOKENS = Verdict("max_tokens not respected", Severity.HIGH)
FINISH_VS_MAX = Verdict("finish_reason disagrees with max_tokens", Severity.MEDIUM)
N_CHOICES = Verdict("n choices not returned with indices 0..n-1", Severity.HIGH)
POSITIVE_LOGPROB = Verdict("Log-probability above 0", Severity.HIGH)
NO_ECHO = Verdict("echo does not return the prompt", Severity.MEDIUM)
NO_LOGPROBS = Verdict("logprobs missing", Severity.HIGH)
LOGPROBS_SHORT = Verdict("logprobs do not cover every token", Severity.MEDIUM)
TOP_COUNT = Verdict("Wrong number of top logprobs", Severity.MEDIUM)
STOP_LEFT = Verdict("Stop sequence left in the text", Severity.HIGH)
STOP_IGNORED = Verdict("Stop sequence did not end the text", Severity.HIGH)
STREAM_TEXT = Verdict("Streamed text differs from the non-streamed text", Severity.HIGH)


@dataclass(frozen=True, kw_only=True)
class Count(Context):
    """How many of something the request asked for (choices, top logprobs, tokens)."""

    n: int


@dataclass(frozen=True, kw_only=True)
class Text(Context):
    """A text the answer is compared with (the prompt, the non-streamed text)."""

    text: str


@dataclass(frozen=True, kw_only=True)
class Stop(Context):
    """A stop sequence, and the text the answer must be cut to (the greedy text before it)."""

    stop: str
    before: str


@check(NO_USAGE, USAGE_SUM)
def usage_adds_up(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> None:
    """usage.prompt_tokens + usage.completion_tokens == usage.total_tokens."""
    curl = ctx.curl
    usage = values.usage(body, curl)
    if usage is None:
        raise NO_USAGE.failure(
            path="$.usage", expected="a usage object", received="none", curl=curl
        )
    p, c, t = (
        values.usage_count(body, k, curl)
        for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    if p is None or c is None or t is None or p + c != t:
        raise USAGE_SUM.failure(
            path="$.usage.total_tokens",
            expected=f"prompt_tokens + completion_tokens = {p} + {c}",
            received=repr(t),
            curl=curl,
        )


@check(NO_FINISH_REASON)
def finish_reasons_set(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> None:
    """Every choice of a finished (non-streamed) answer says why it stopped."""
    curl = ctx.curl
    for i, choice in enumerate(values.choices(body, curl)):
        reason = choice.get("finish_reason")
        if reason not in FINISH_REASONS:
            raise NO_FINISH_REASON.failure(
                path=f"$.choices[{i}].finish_reason",
                expected=" or ".join(FINISH_REASONS[:3]),
                received=repr(reason),
                curl=curl,
            )


@check(MAX_TOKENS, FINISH_VS_MAX)
def max_tokens_respected(body: dict[str, Any], ctx: Count) -> None:
    """completion_tokens <= max_tokens, and finish_reason is 'length' exactly when it is hit."""
    max_tokens, curl = ctx.n, ctx.curl
    used = values.usage_count(body, "completion_tokens", curl)
    choices = values.choices(body, curl)
    if used is None or used > max_tokens * max(1, len(choices)):
        raise MAX_TOKENS.failure(
            path="$.usage.completion_tokens",
            expected=f"<= {max_tokens}",
            received=repr(used),
            curl=curl,
        )
    if len(choices) == 1:
        reason = choices[0].get("finish_reason")
        if (used == max_tokens) != (reason == "length") and reason != "stop":
            raise FINISH_VS_MAX.failure(
                path="$.choices[0].finish_reason",
                expected=f"'length' when {max_tokens} tokens were generated",
                received=f"{reason!r} after {used} tokens",
                curl=curl,
            )
        if reason == "length" and used != max_tokens:
            raise FINISH_VS_MAX.failure(
                path="$.choices[0].finish_reason",
                expected=f"'length' only after {max_tokens} tokens",
                received=f"'length' after {used} tokens",
                curl=curl,
            )


@check(N_CHOICES)
def n_choices_indexed(body: dict[str, Any], ctx: Count) -> None:
    """n choices come back, indexed 0..n-1."""
    n, curl = ctx.n, ctx.curl
    indices = sorted(
        values.count(c.get("index"), f"$.choices[{i}].index", curl)
        for i, c in enumerate(values.choices(body, curl))
    )
    if indices != list(range(n)):
        raise N_CHOICES.failure(
            path="$.choices[*].index",
            expected=repr(list(range(n))),
            received=repr(indices),
            curl=curl,
        )


@check(POSITIVE_LOGPROB, values.INFINITE)
def log_probability(value: Any, ctx: values.At) -> float | None:
    """A log-probability: a finite number no greater than 0 (NaN is a finding, not a pass).

    None (JSON null, which some engines send for an impossible token) is passed through:
    the schema check judges nulls."""
    if value is None:
        return None
    number = values.finite(value, ctx.path, ctx.curl)
    if number > 1e-3:  # float noise around 0 is fine; a positive log-probability is not
        raise POSITIVE_LOGPROB.failure(
            path=ctx.path, expected="a number <= 0", received=repr(number), curl=ctx.curl
        )
    return number


def logprob(value: Any, path: str, curl: str = "") -> float | None:
    """:func:`log_probability` of the value at ``path``."""
    return log_probability(value, values.At(path=path, curl=curl))


@check(NO_ECHO, values.SHAPE)
def echo_returns_prompt(body: dict[str, Any], ctx: Text) -> None:
    """With echo, the text starts with the prompt (``ctx.text``)."""
    text, prompt = values.choice_text(body, 0, ctx.curl), ctx.text
    if not text.startswith(prompt):
        raise NO_ECHO.failure(
            path="$.choices[0].text",
            expected=f"text starting with {prompt!r}",
            received=repr(text[:80]),
            curl=ctx.curl,
        )


@check(NO_LOGPROBS, LOGPROBS_SHORT, TOP_COUNT)
def completion_logprobs_count(body: dict[str, Any], ctx: Count) -> None:
    """/v1/completions logprobs=k: one entry per token, k (or k+1 with the sampled) each."""
    k, curl = ctx.n, ctx.curl
    choice = values.element(values.choices(body, curl), 0, dict, "$.choices", curl)
    lp = choice.get("logprobs")
    used = values.usage_count(body, "completion_tokens", curl)
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        raise NO_LOGPROBS.failure(
            path="$.choices[0].logprobs",
            expected="tokens, token_logprobs, top_logprobs, text_offset",
            received=repr(lp)[:100],
            curl=curl,
        )
    if isinstance(used, int) and len(lp["tokens"]) != used:
        raise LOGPROBS_SHORT.failure(
            path="$.choices[0].logprobs.tokens",
            expected=f"{used} entries",
            received=f"{len(lp['tokens'])}",
            curl=curl,
        )
    for i, value in enumerate(
        values.maybe_field(lp, "token_logprobs", list, "$.choices[0].logprobs", curl) or []
    ):
        logprob(value, f"$.choices[0].logprobs.token_logprobs[{i}]", curl)
    for i, top in enumerate(
        values.maybe_field(lp, "top_logprobs", list, "$.choices[0].logprobs", curl) or []
    ):
        if isinstance(top, dict):
            for token, value in top.items():
                logprob(value, f"$.choices[0].logprobs.top_logprobs[{i}][{token!r}]", curl)
        if not isinstance(top, dict) or not k <= len(top) <= k + 1:
            raise TOP_COUNT.failure(
                path=f"$.choices[0].logprobs.top_logprobs[{i}]",
                expected=f"{k} (or {k + 1} with the sampled token)",
                received=repr(len(top)) if isinstance(top, dict) else repr(top),
                curl=curl,
            )


@check(NO_LOGPROBS, TOP_COUNT)
def chat_logprobs_count(body: dict[str, Any], ctx: Count) -> None:
    """Chat logprobs with top_logprobs=k: one entry per token, exactly k alternatives each."""
    k, curl = ctx.n, ctx.curl
    choice = values.element(values.choices(body, curl), 0, dict, "$.choices", curl)
    lp = choice.get("logprobs")
    content = lp.get("content") if isinstance(lp, dict) else None
    if not isinstance(content, list) or not content:
        raise NO_LOGPROBS.failure(
            path="$.choices[0].logprobs.content",
            expected="one entry per generated token",
            received=repr(lp)[:100],
            curl=curl,
        )
    for i, entry in enumerate(content):
        where = f"$.choices[0].logprobs.content[{i}]"
        logprob(values.maybe_field(entry, "logprob", float, where, curl), f"{where}.logprob", curl)
        top = entry.get("top_logprobs") if isinstance(entry, dict) else None
        for j, alt in enumerate(top if isinstance(top, list) else []):
            logprob(
                values.maybe_field(alt, "logprob", float, f"{where}.top_logprobs[{j}]", curl),
                f"{where}.top_logprobs[{j}].logprob",
                curl,
            )
        if not isinstance(top, list) or len(top) != k:
            raise TOP_COUNT.failure(
                path=f"$.choices[0].logprobs.content[{i}].top_logprobs",
                expected=f"{k} entries",
                received=repr(len(top)) if isinstance(top, list) else repr(top),
                curl=curl,
            )


@check(STOP_LEFT, STOP_IGNORED, values.SHAPE)
def stop_applied(body: dict[str, Any], ctx: Stop) -> None:
    """The text ends where the stop sequence began, without it, with finish_reason 'stop'."""
    text, curl = values.choice_text(body, 0, ctx.curl), ctx.curl
    reason = values.choices(body, curl)[0].get("finish_reason")
    if ctx.stop in text:
        raise STOP_LEFT.failure(
            path="$.choices[0]",
            expected=f"text without {ctx.stop!r}",
            received=repr(text[-80:]),
            curl=curl,
        )
    if text != ctx.before or reason != "stop":
        raise STOP_IGNORED.failure(
            path="$.choices[0]",
            expected=f"{ctx.before!r} with finish_reason 'stop'",
            received=f"{text!r} with finish_reason {reason!r}",
            curl=curl,
        )


@check(STREAM_TEXT)
def same_text(streamed: str, ctx: Text) -> None:
    """A greedy request gives the same text streamed and not streamed (``ctx.text``)."""
    plain, curl = ctx.text, ctx.curl
    if streamed != plain:
        at = next(
            (i for i, (a, b) in enumerate(zip(streamed, plain, strict=False)) if a != b),
            min(len(streamed), len(plain)),
        )
        raise STREAM_TEXT.failure(
            path="$.choices[0]",
            expected=repr(plain[max(0, at - 20) : at + 40]),
            received=repr(streamed[max(0, at - 20) : at + 40]),
            curl=curl,
            detail=f"first difference at character {at}",
        )
