"""Semantic checks: the answer means what the request asked for, not only has the shape."""

from __future__ import annotations

from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.failures import CheckFailure, Severity

FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "function_call")


def usage_adds_up(body: dict[str, Any], curl: str = "") -> None:
    """usage.prompt_tokens + usage.completion_tokens == usage.total_tokens."""
    usage = values.usage(body, curl)
    if usage is None:
        raise CheckFailure("Response has no usage", path="$.usage", expected="a usage object",
                           received="none", curl=curl, severity=Severity.MEDIUM)
    p, c, t = (values.usage_count(body, k, curl)
               for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if p is None or c is None or t is None or p + c != t:
        raise CheckFailure("Usage does not add up", path="$.usage.total_tokens",
                           expected=f"prompt_tokens + completion_tokens = {p} + {c}",
                           received=repr(t), curl=curl, severity=Severity.MEDIUM)


def finish_reasons_set(body: dict[str, Any], curl: str = "") -> None:
    """Every choice of a finished (non-streamed) answer says why it stopped."""
    for i, choice in enumerate(values.choices(body, curl)):
        reason = choice.get("finish_reason")
        if reason not in FINISH_REASONS:
            raise CheckFailure("Finished choice has no finish_reason",
                               path=f"$.choices[{i}].finish_reason",
                               expected=" or ".join(FINISH_REASONS[:3]), received=repr(reason),
                               curl=curl, severity=Severity.HIGH)


def max_tokens_respected(body: dict[str, Any], max_tokens: int, curl: str = "") -> None:
    """completion_tokens <= max_tokens, and finish_reason is 'length' exactly when it is hit."""
    used = values.usage_count(body, "completion_tokens", curl)
    choices = values.choices(body, curl)
    if used is None or used > max_tokens * max(1, len(choices)):
        raise CheckFailure("max_tokens not respected", path="$.usage.completion_tokens",
                           expected=f"<= {max_tokens}", received=repr(used), curl=curl,
                           severity=Severity.HIGH)
    if len(choices) == 1:
        reason = choices[0].get("finish_reason")
        if (used == max_tokens) != (reason == "length") and reason != "stop":
            raise CheckFailure("finish_reason disagrees with max_tokens",
                               path="$.choices[0].finish_reason",
                               expected=f"'length' when {max_tokens} tokens were generated",
                               received=f"{reason!r} after {used} tokens", curl=curl)
        if reason == "length" and used != max_tokens:
            raise CheckFailure("finish_reason disagrees with max_tokens",
                               path="$.choices[0].finish_reason",
                               expected=f"'length' only after {max_tokens} tokens",
                               received=f"'length' after {used} tokens", curl=curl)


def n_choices_indexed(body: dict[str, Any], n: int, curl: str = "") -> None:
    """n choices come back, indexed 0..n-1."""
    indices = sorted(values.count(c.get("index"), f"$.choices[{i}].index", curl)
                     for i, c in enumerate(values.choices(body, curl)))
    if indices != list(range(n)):
        raise CheckFailure("n choices not returned with indices 0..n-1", path="$.choices[*].index",
                           expected=repr(list(range(n))), received=repr(indices), curl=curl,
                           severity=Severity.HIGH)


def logprob(value: Any, path: str, curl: str = "") -> float | None:
    """A log-probability: a finite number no greater than 0 (NaN is a finding, not a pass).

    None (JSON null, which some engines send for an impossible token) is passed through:
    the schema check judges nulls."""
    if value is None:
        return None
    number = values.finite(value, path, curl)
    if number > 1e-3:  # float noise around 0 is fine; a positive log-probability is not
        raise CheckFailure("Log-probability above 0", path=path, expected="a number <= 0",
                           received=repr(number), curl=curl, severity=Severity.HIGH)
    return number


def echo_returns_prompt(text: str, prompt: str, curl: str = "") -> None:
    """With echo, the text starts with the prompt."""
    if not text.startswith(prompt):
        raise CheckFailure("echo does not return the prompt", path="$.choices[0].text",
                           expected=f"text starting with {prompt!r}", received=repr(text[:80]),
                           curl=curl)


def completion_logprobs_count(body: dict[str, Any], k: int, curl: str = "") -> None:
    """/v1/completions logprobs=k: one entry per token, k (or k+1 with the sampled) each."""
    choice = values.element(values.choices(body, curl), 0, dict, "$.choices", curl)
    lp = choice.get("logprobs")
    used = values.usage_count(body, "completion_tokens", curl)
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        raise CheckFailure("logprobs missing", path="$.choices[0].logprobs",
                           expected="tokens, token_logprobs, top_logprobs, text_offset",
                           received=repr(lp)[:100], curl=curl, severity=Severity.HIGH)
    if isinstance(used, int) and len(lp["tokens"]) != used:
        raise CheckFailure("logprobs do not cover every token", path="$.choices[0].logprobs.tokens",
                           expected=f"{used} entries", received=f"{len(lp['tokens'])}", curl=curl)
    for i, value in enumerate(values.maybe_field(lp, "token_logprobs", list,
                                                 "$.choices[0].logprobs", curl) or []):
        logprob(value, f"$.choices[0].logprobs.token_logprobs[{i}]", curl)
    for i, top in enumerate(values.maybe_field(lp, "top_logprobs", list,
                                               "$.choices[0].logprobs", curl) or []):
        if isinstance(top, dict):
            for token, value in top.items():
                logprob(value, f"$.choices[0].logprobs.top_logprobs[{i}][{token!r}]", curl)
        if not isinstance(top, dict) or not k <= len(top) <= k + 1:
            raise CheckFailure("Wrong number of top logprobs",
                               path=f"$.choices[0].logprobs.top_logprobs[{i}]",
                               expected=f"{k} (or {k + 1} with the sampled token)",
                               received=repr(len(top)) if isinstance(top, dict) else repr(top),
                               curl=curl)


def chat_logprobs_count(body: dict[str, Any], k: int, curl: str = "") -> None:
    """Chat logprobs with top_logprobs=k: one entry per token, exactly k alternatives each."""
    choice = values.element(values.choices(body, curl), 0, dict, "$.choices", curl)
    lp = choice.get("logprobs")
    content = lp.get("content") if isinstance(lp, dict) else None
    if not isinstance(content, list) or not content:
        raise CheckFailure("logprobs missing", path="$.choices[0].logprobs.content",
                           expected="one entry per generated token", received=repr(lp)[:100],
                           curl=curl, severity=Severity.HIGH)
    for i, entry in enumerate(content):
        where = f"$.choices[0].logprobs.content[{i}]"
        logprob(values.maybe_field(entry, "logprob", float, where, curl), f"{where}.logprob",
                curl)
        top = entry.get("top_logprobs") if isinstance(entry, dict) else None
        for j, alt in enumerate(top if isinstance(top, list) else []):
            logprob(values.maybe_field(alt, "logprob", float, f"{where}.top_logprobs[{j}]",
                                       curl), f"{where}.top_logprobs[{j}].logprob", curl)
        if not isinstance(top, list) or len(top) != k:
            raise CheckFailure("Wrong number of top logprobs",
                               path=f"$.choices[0].logprobs.content[{i}].top_logprobs",
                               expected=f"{k} entries",
                               received=repr(len(top)) if isinstance(top, list) else repr(top),
                               curl=curl)


def stop_applied(text: str, reason: Any, stop: str, expected: str, curl: str = "") -> None:
    """The text ends where the stop sequence began, without it, with finish_reason 'stop'."""
    if stop in text:
        raise CheckFailure("Stop sequence left in the text", path="$.choices[0]",
                           expected=f"text without {stop!r}", received=repr(text[-80:]),
                           curl=curl, severity=Severity.HIGH)
    if text != expected or reason != "stop":
        raise CheckFailure("Stop sequence did not end the text", path="$.choices[0]",
                           expected=f"{expected!r} with finish_reason 'stop'",
                           received=f"{text!r} with finish_reason {reason!r}", curl=curl,
                           severity=Severity.HIGH)


def same_text(streamed: str, plain: str, curl: str = "") -> None:
    """A greedy request gives the same text streamed and not streamed."""
    if streamed != plain:
        at = next((i for i, (a, b) in enumerate(zip(streamed, plain, strict=False)) if a != b),
                  min(len(streamed), len(plain)))
        raise CheckFailure("Streamed text differs from the non-streamed text",
                           path="$.choices[0]", expected=repr(plain[max(0, at - 20):at + 40]),
                           received=repr(streamed[max(0, at - 20):at + 40]), curl=curl,
                           severity=Severity.HIGH, detail=f"first difference at character {at}")
