"""Check failures as schemathesis has them: title, severity, expected vs received, a curl line."""

from __future__ import annotations

import enum

from pytest_vllm_conformance.client.errors import ClientError


class Severity(enum.IntEnum):
    """How much a departure matters to someone relying on the server."""

    LOW = 1  # cosmetic: a client is unlikely to notice
    MEDIUM = 2  # some clients break or misbehave
    HIGH = 3  # most clients break, or answers are wrong
    CRITICAL = 4  # the server is unusable for this capability


class CheckFailure(AssertionError):
    """A named check found a departure; failures with equal titles are grouped in reports."""

    def __init__(self, title: str, *, expected: str, received: str, path: str = "",
                 curl: str = "", severity: Severity = Severity.MEDIUM, detail: str = "") -> None:
        super().__init__(title)
        self.title = title
        self.expected = expected
        self.received = received
        self.path = path
        self.curl = curl
        self.severity = severity
        self.detail = detail

    def render(self) -> str:
        lines = [f"[{self.severity.name}] {self.title}"]
        if self.path:
            lines.append(f"  at:       {self.path}")
        lines.append(f"  expected: {self.expected}")
        lines.append(f"  received: {self.received}")
        if self.detail:
            lines += ["  " + line for line in self.detail.splitlines()]
        if self.curl:
            lines.append(f"  reproduce: {self.curl}")
        return "\n".join(lines)


def render_client_error(exc: ClientError) -> str:
    """The clear text of a request that failed before any check could look at it."""
    lines = [f"[{Severity.HIGH.name}] {exc.title}", f"  {exc.message}"]
    if exc.curl:
        lines.append(f"  reproduce: {exc.curl}")
    return "\n".join(lines)
