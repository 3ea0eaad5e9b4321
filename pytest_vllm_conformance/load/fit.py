"""Fitting a load run to the server: which user classes can run, and how long to pause.

Plain Python, no locust or gevent: the locustfile uses it, and tests use it without
locust's monkey-patching.
"""

from __future__ import annotations

import json

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


def printable(text: str, limit: int = 300) -> str:
    """Server text made safe for one log or report line: control characters and escape
    sequences shown escaped, at most ``limit`` characters."""
    safe = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text[:limit])
    return safe + ("..." if len(text) > limit else "")


def server_message(text: str, reason: str) -> str:
    """The error's own words: OpenAI's error.message, or a short piece of the body."""
    try:
        if len(text) > _MESSAGE_BODY_MAX:
            raise ValueError("too long to parse")
        body = json.loads(text)
    except (ValueError, RecursionError):
        return printable(text.strip(), 200) or printable(reason) or "no body"
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return printable(str(err["message"]))
        if isinstance(err, str):
            return printable(err)
        if body.get("detail"):
            return printable(str(body["detail"]))
    return printable(json.dumps(body), 200)
