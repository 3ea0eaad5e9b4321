"""What the Responses suite sends to ``/v1/responses``, and how it tells "not served".

Every request is bounded by ``max_output_tokens``: a model that never stops (the tiny
random-weight one) must not run to the end of its context. :data:`TRUNCATE_AT` is
OpenAI's smallest ``max_output_tokens``; :data:`MAX_OUTPUT` leaves a model room to finish.
"""

from __future__ import annotations

import re
from typing import Any

from pytest_vllm_conformance.client import Response

PATH = "/v1/responses"
INPUT = "Tell me a short story about a lighthouse keeper and a storm."
INSTRUCTIONS = "You are a storyteller. Answer in plain sentences, without lists or headings."
MAX_OUTPUT = 32
TRUNCATE_AT = 16
#: Statuses that say the route (or the stored-response route) is not served at all.
NOT_SERVED = (404, 405, 501)
#: Statuses of a refused request: a server without storage refuses ``store: true`` so.
REFUSED = (400, 404, 405, 422, 501)
_ABOUT_STORE = re.compile(r"\bstor(?:e|ed|age|ing)\b", re.IGNORECASE)


def create(model: str, /, **extra: Any) -> dict[str, Any]:
    """A greedy ``POST /v1/responses`` body; ``extra`` overrides (None removes a field)."""
    body = {
        "model": model,
        "input": INPUT,
        "max_output_tokens": MAX_OUTPUT,
        "temperature": 0,
        **extra,
    }
    return {k: v for k, v in body.items() if v is not None}


def not_supported(r: Response, what: str) -> str:
    """The evidence of a "not supported" skip for a route the server does not serve ("" when
    it serves it): the server's own answer."""
    if r.status not in NOT_SERVED:
        return ""
    return f"{what} answered HTTP {r.status}: {r.error_message()}"


def store_refused(r: Response) -> str:
    """The evidence of a "not supported" skip for storage ("" when there is none): the
    server refused a ``store: true`` request, saying so (its message is about storing).
    Only a refusal counts: a server that accepts ``store: true`` claims to store, and a
    response it then cannot find is a failure (``checks.responses.retrievable``)."""
    if r.status not in REFUSED:
        return ""
    message = r.error_message()
    if not _ABOUT_STORE.search(message):
        return ""
    return f"POST {PATH} with store: true answered HTTP {r.status}: {message}"
