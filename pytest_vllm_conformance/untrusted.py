"""Text that came from a server, made safe for every output the harness writes.

Every byte a server sends is hostile input. Before any of it reaches the terminal, JUnit,
results.json, report.html, OpenMetrics or a log, it passes through :func:`safe`, which

* redacts the run's secrets (the API key, container secrets): verbatim, in the forms a server
  plausibly echoes them (JSON-escaped, URL-encoded, ``repr``'d, HTML-escaped, ``\\/``), and any
  fragment of eight or more characters a check's excerpt cut from the start or end of a key;
* shows control characters and escape sequences escaped (``\\x1b``, ``\\x07``, ``\\u202e``), so
  a server cannot colour, retitle, rewrite or forge lines of the terminal or a report; a
  single-line field (a model id, a title) shows its newlines escaped too;
* shows text that cannot be encoded (a lone surrogate such as ``\\ud800``) as its escape, so
  every writer can encode everything;
* cuts long text, saying how much was left out: ``... (537,412 more characters)``.

Numbers are kept, except non-finite ones (NaN, infinities), which become ``None`` (JSON null):
they are never a measurement, and bare ``NaN`` is not JSON.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from pytest_vllm_conformance.secrets import Secret

REDACTED = "***"
#: A fragment of a secret this long (or the whole secret, when shorter) is redacted.
FRAGMENT = 8
FIELD_LIMIT = 4000  # one field: expected, received, a property, a skip reason, a label
LINE_LIMIT = 300  # one single-line value: a model id, a version, a title
TEXT_LIMIT = 16000  # one whole text: a test's failure report, a captured section
USAGE_LIMIT = 2000  # the one start-up error pytest prints before it stops
_SLACK = 40  # text already cut (it ends with the note) is not cut again

_active: list[Secret] = []

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidi embeddings, overrides and isolates; line and paragraph separators; BOM).
_CONTROLS_MULTILINE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)
_CONTROLS_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def register(secret: Secret) -> None:
    """Redact this secret from every output until :func:`unregister` (the run's lifetime)."""
    if secret not in _active:
        _active.append(secret)


def unregister(secret: Secret) -> None:
    if secret in _active:
        _active.remove(secret)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every form and cut-off fragment of each secret replaced by ``***``."""
    values = [s.reveal() for s in _active] if secrets is None else list(secrets)
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        for form in _forms(value):
            if form in text:
                text = text.replace(form, REDACTED)
        text = _redact_fragments(text, value)
    return text


def _forms(value: str) -> list[str]:
    """The spellings of one secret a server may echo back."""
    forms = [
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        html.escape(value),
        value.replace("/", "\\/"),
    ]
    return sorted(set(forms), key=len, reverse=True)


def _redact_fragments(text: str, value: str) -> str:
    """Redact runs of ``FRAGMENT``+ characters that match the start or the end of ``value``
    (what is left of a key when a check cuts an excerpt in its middle)."""
    n = min(len(value), FRAGMENT)
    head, tail = value[:n], value[-n:]
    spans: list[tuple[int, int]] = []
    start = text.find(head)
    while start != -1:
        end = start + n
        while end < len(text) and end - start < len(value) and text[end] == value[end - start]:
            end += 1
        spans.append((start, end))
        start = text.find(head, end)
    start = text.find(tail)
    while start != -1:
        begin, k = start, len(value) - n - 1
        while begin > 0 and k >= 0 and text[begin - 1] == value[k]:
            begin, k = begin - 1, k - 1
        spans.append((begin, start + n))
        start = text.find(tail, start + n)
    if not spans:
        return text
    out, last = [], 0
    for begin, end in sorted(spans):
        if end <= last:
            continue
        out.append(text[last : max(begin, last)])
        if begin >= last:
            out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


def escape_controls(text: str, *, one_line: bool = False) -> str:
    """Control characters and escape sequences shown as ``\\x1b``-style escapes.

    Multi-line text keeps its newlines and tabs (a CRLF becomes a newline); a bare CR, which
    would let the next line overwrite this one, is escaped.
    """
    if not one_line and "\r\n" in text:
        text = text.replace("\r\n", "\n")
    pattern = _CONTROLS_ONE_LINE if one_line else _CONTROLS_MULTILINE
    return pattern.sub(_escape_one, text)


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    if match.group() in _NAMED:
        return _NAMED[match.group()]
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def encodable(text: str) -> str:
    """``text`` that UTF-8 can encode: lone surrogates shown as ``\\ud800``-style escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters (plus a note of how many more there were)."""
    if len(text) <= limit + _SLACK:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def safe(text: object, limit: int = FIELD_LIMIT, *, one_line: bool = False) -> str:
    """The single point server-derived text passes through on its way to any output."""
    out = text if isinstance(text, str) else str(text)
    return truncate(escape_controls(encodable(redact(out)), one_line=one_line), limit)


def line(text: object, limit: int = LINE_LIMIT) -> str:
    """A single-line value (a model id, a title) safe for any output."""
    return safe(text, limit, one_line=True)


def number(value: float) -> float | None:
    """A finite number, or None: NaN and infinities are no measurement."""
    return value if math.isfinite(value) else None


def clean(value: Any, limit: int = FIELD_LIMIT) -> Any:
    """A JSON-ready copy of ``value`` with every string :func:`safe` and every number finite.

    Map keys are made single-line; strings keep their newlines.
    """
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return number(value)
    if isinstance(value, str):
        return safe(value, limit)
    if isinstance(value, dict):
        return {line(k, FIELD_LIMIT): clean(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, limit) for v in value]
    return safe(value, limit)


def redact_file(path: Path) -> None:
    """Redact the run's secrets from a log a server process wrote (it may print its key)."""
    if not _active or not path.is_file():
        return
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        cleaned = redact(text)
        if cleaned != text:
            path.write_text(cleaned, encoding="utf-8", errors="surrogateescape")
    except OSError:
        pass  # a log that cannot be rewritten is left as the server wrote it
