"""Incremental Server-Sent Events decoding, cheap enough for the timing path.

Hand-written rather than taken from ``httpx-sse`` or ``sseclient``: those decode
text line by line in Python and cost several times more per chunk, and neither
keeps the arrival time of each event or reports framing faults instead of
silently skipping them. This decoder only splits bytes on blank lines while the
stream runs; JSON is parsed after the stream ends (:mod:`.events`).
"""

from __future__ import annotations

from dataclasses import dataclass

DONE = b"[DONE]"
_FIELDS = (b"event", b"id", b"retry")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: the arrival time of the read that completed it, and its data."""

    t: float
    data: bytes
    event: bytes = b""


class SSEDecoder:
    """Feed body bytes as they arrive; collects events and framing problems."""

    __slots__ = ("_buf", "done_seen", "events", "problems")

    def __init__(self) -> None:
        self._buf = b""
        self.events: list[SSEEvent] = []
        self.problems: list[str] = []
        self.done_seen = False

    def feed(self, data: bytes, t: float) -> None:
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        if b"\n\n" not in buf:
            self._buf = buf
            return
        *blocks, self._buf = buf.split(b"\n\n")
        for block in blocks:
            self._dispatch(block, t)

    def close(self) -> None:
        """The body ended: anything left over was never terminated by a blank line."""
        rest = self._buf.strip(b"\n")
        self._buf = b""
        if rest:
            self.problems.append(
                f"the stream ended inside an event (no blank line after it): {rest[:80]!r}"
            )

    def _dispatch(self, block: bytes, t: float) -> None:
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
            elif name == b"event" and sep:
                event = value
            elif name not in _FIELDS or not sep:
                self.problems.append(f"not an SSE field line: {line[:80]!r}")
        if data:
            self._append(SSEEvent(t, b"\n".join(data), event))

    def _append(self, ev: SSEEvent) -> None:
        if self.done_seen:
            self.problems.append(f"data after [DONE]: {ev.data[:80]!r}")
        if ev.data.strip() == DONE:
            self.done_seen = True
        self.events.append(ev)
