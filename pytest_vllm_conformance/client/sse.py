"""Incremental Server-Sent Events decoding, cheap enough for the timing path.

Hand-written rather than taken from ``httpx-sse`` or ``sseclient``: those decode
text line by line in Python and cost several times more per chunk, and neither
keeps the arrival time of each event or reports framing faults instead of
silently skipping them. This decoder only splits bytes on blank lines while the
stream runs; JSON is parsed after the stream ends (:mod:`.events`).

It reads the stream as the WHATWG HTML standard ("Server-sent events", event
stream interpretation) defines it: lines end in CR, LF or CRLF (mixed, and split
across reads); a leading BOM is dropped; ``:`` lines are comments; ``data`` lines
are joined with LF; ``event``, ``id`` and ``retry`` are understood; a block with no
``data`` dispatches nothing; other field names are ignored.

What it flags is only what loses what the server sent, for any conforming
reader (the official SDK's included):

- a line with no colon that is not one of the four field names (``garbage``):
  the standard reads it as a field of that name with an empty value, which every
  reader discards, so whatever the server meant by it never reaches the user. In
  an OpenAI stream it is a payload sent without its ``data:`` prefix;
- a ``name: value`` line whose name is not a plain token (``{"id": 1}``): the same
  loss, the usual sign of bare JSON in the stream. Unknown fields written as a
  token and a colon (``x-trace: 7``) are legal and silently ignored;
- data after ``data: [DONE]`` (the OpenAI stream's end), and a last event the body
  ended inside of (the standard discards it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DONE = b"[DONE]"
BOM = b"\xef\xbb\xbf"
_FIELDS = (b"data", b"event", b"id", b"retry")
_TOKEN = re.compile(rb"[A-Za-z0-9_.\-]+")
#: Problems kept per stream; a hostile stream could otherwise fill memory with them.
MAX_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: the arrival time of the read that completed it, and its data."""

    t: float
    data: bytes
    event: bytes = b""


class SSEDecoder:
    """Feed body bytes as they arrive; collects events and framing problems."""

    __slots__ = ("_buf", "_first", "_skip_lf", "done_seen", "events", "problems")

    def __init__(self) -> None:
        self._buf = b""
        self._first = True  # no block dispatched yet: a BOM may lead it
        self._skip_lf = False  # the last read ended in CR: an LF opening the next belongs to it
        self.events: list[SSEEvent] = []
        self.problems: list[str] = []
        self.done_seen = False

    def feed(self, data: bytes, t: float) -> None:
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        if b"\r" in data:  # CRLF and lone CR end lines as LF does
            self._skip_lf = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        old = len(self._buf)
        buf = self._buf + data if old else data
        if buf.find(b"\n\n", max(old - 1, 0)) < 0:  # scan only the new bytes: linear, not n^2
            self._buf = buf
            return
        *blocks, self._buf = buf.split(b"\n\n")
        for block in blocks:
            self._dispatch(block, t)

    def close(self) -> None:
        """The body ended: anything left over was never terminated by a blank line."""
        rest = self._buf.strip(b"\n")
        self._buf = b""
        if self._first and rest.startswith(BOM):
            rest = rest[len(BOM) :]
        if rest and not all(line.startswith(b":") for line in rest.split(b"\n") if line):
            self._problem(
                f"the stream ended inside an event (no blank line after it): {rest[:80]!r}"
            )

    def _dispatch(self, block: bytes, t: float) -> None:
        if self._first:
            self._first = False
            if block.startswith(BOM):
                block = block[len(BOM) :]
        if block.startswith(b"data: ") and b"\n" not in block:  # the common case, fast
            self._append(SSEEvent(t, block[6:]))
            return
        data: list[bytes] = []
        event = b""
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue  # blank (extra newline) or comment / keep-alive
            name, sep, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value
            elif name in _FIELDS:
                continue  # id and retry: legal, and nothing the checks need
            elif not sep or not _TOKEN.fullmatch(name):
                self._problem(f"not an SSE field line: {line[:80]!r}")
        if data:
            self._append(SSEEvent(t, b"\n".join(data), event))

    def _append(self, ev: SSEEvent) -> None:
        if self.done_seen:
            self._problem(f"data after [DONE]: {ev.data[:80]!r}")
        if ev.data.strip() == DONE:
            self.done_seen = True
        self.events.append(ev)

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
