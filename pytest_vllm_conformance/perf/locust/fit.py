"""Fitting a load run to the server: which user classes can run, how long to pause, and
reading its answers with every value validated.

Plain Python, no locust or gevent: the locustfile uses it, and tests use it without
locust's monkey-patching.
"""

from __future__ import annotations

from typing import Any

from pytest_vllm_conformance import untrusted
from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.client import records
from pytest_vllm_conformance.client.http import DEFAULT_MAX_BODY
from pytest_vllm_conformance.failures import CheckFailure, Severity

#: The pause after a failure repeats once; it doubles with each repeat, up to the cap.
BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 10.0
#: Statuses that say "try again", not "this request is refused as it is".
_TRANSIENT = frozenset({408, 425, 429})
#: Bodies longer than this are not parsed for their message, only quoted in part.
_MESSAGE_BODY_MAX = 1 << 20


class Backoff:
    """Exponential, capped pause between tasks while the same failure repeats.

    A single failure costs no pause (it may be a one-off); from the first repeat on the
    pause doubles, so a server answering every request with the same error sees a
    request every ``cap_s`` per user instead of a closed loop. Success, or a different
    failure, starts over.
    """

    def __init__(self, first_s: float = BACKOFF_FIRST_S, cap_s: float = BACKOFF_CAP_S) -> None:
        self.first_s, self.cap_s = first_s, cap_s
        self.last: str | None = None
        self.repeats = 0

    def after(self, failure: str | None) -> float:
        """Seconds to wait after a task that ended with ``failure`` (None: it succeeded)."""
        if failure is None or failure != self.last:
            self.last, self.repeats = failure, 0
            return 0.0
        self.repeats += 1
        return float(min(self.cap_s, self.first_s * 2 ** min(self.repeats - 1, 30)))


def refused_as_is(status: int) -> bool:
    """Whether an answer says that sending this request again cannot succeed: the endpoint
    or model is not served (404, 501), the key is refused (401, 403), the request is
    invalid (400, 422). Other 4xx say "try later"; other 5xx may pass."""
    return (400 <= status < 500 and status not in _TRANSIENT) or status == 501


def said(text: str, limit: int = untrusted.LINE_LIMIT) -> str:
    """Server-derived text made safe for one line of locust's console, CSV or report: the
    run's key (registered by the locustfile) redacted, control characters and escape
    sequences shown escaped, at most ``limit`` characters. Every failure message and NOT RUN
    reason passes through here, and nothing else escapes server text."""
    return untrusted.line(text, limit)


def server_message(text: str, reason: str) -> str:
    """The error's own words: OpenAI's error.message, or a short piece of the body."""
    body = text[:_MESSAGE_BODY_MAX].encode("utf-8", "surrogateescape")  # longer: an excerpt
    return said(records.error_message(body).strip()) or said(reason) or "no body"


# -- reading answers: every value validated, a malformed one is one clear failure line --------
def malformed(exc: CheckFailure) -> str:
    """A titled finding about an answer as one safe line for locust's failure table. The
    received value is named by its kind only (``a list``, not the list): answers that differ
    only in their values then make one failure entry, and repeats back off."""
    where = f" at {exc.path}" if exc.path else ""
    received = exc.received.split(":", 1)[0]
    return said(f"{exc.title}{where}: expected {exc.expected}, received {received}")


def answer(body: bytes) -> Any:
    """An answer's JSON; a body that is not JSON (or nests too deep to read) is a finding."""
    try:
        if len(body) > DEFAULT_MAX_BODY:
            raise ValueError("too long to parse")
        return records.loads(body)
    except ValueError as exc:  # records.TooDeep too
        excerpt = said(body[:200].decode("utf-8", "replace").strip(), 80)
        raise CheckFailure(
            "Response body is not JSON",
            expected="a JSON object",
            received=f"{type(exc).__name__}: {excerpt}",
            severity=Severity.HIGH,
        ) from None


def first_model_id(body: bytes) -> str:
    """``$.data[0].id`` of a /v1/models answer."""
    listed = values.field(answer(body), "data", list, "$")
    return values.field(values.element(listed, 0, dict, "$.data"), "id", str, "$.data[0]")


def completion_tokens(body: bytes) -> int:
    """``$.usage.completion_tokens`` of a non-streamed answer: a required count."""
    tokens = values.usage_count(answer(body), "completion_tokens")
    if tokens is None:
        raise CheckFailure(
            values.WRONG_SHAPE,
            path="$.usage.completion_tokens",
            expected="a non-negative integer (required)",
            received="no usage",
            severity=Severity.HIGH,
        )
    return tokens


def embeddings_data(body: bytes) -> list[Any]:
    """``$.data`` of an /v1/embeddings answer: a list (its length is checked by the caller)."""
    return values.field(answer(body), "data", list, "$")
