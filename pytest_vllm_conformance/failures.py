"""Check failures as schemathesis has them: title, severity, expected vs received, a curl line."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any

from pytest_vllm_conformance.client.errors import ClientError


class Severity(enum.IntEnum):
    """How much a departure matters to someone relying on the server."""

    LOW = 1  # cosmetic: a client is unlikely to notice
    MEDIUM = 2  # some clients break or misbehave
    HIGH = 3  # most clients break, or answers are wrong
    CRITICAL = 4  # the server is unusable for this capability


class CheckFailure(AssertionError):
    """A named check found a departure; failures with equal titles are grouped in reports."""

    def __init__(
        self,
        title: str,
        *,
        expected: str,
        received: str,
        path: str = "",
        curl: str = "",
        severity: Severity = Severity.MEDIUM,
        detail: str = "",
    ) -> None:
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


class FailureGroup(CheckFailure):
    """Several distinct failures found by one test; identical ones counted, not repeated."""

    def __init__(self, failures: list[tuple[CheckFailure, int]]) -> None:
        worst = max(f.severity for f, _ in failures)
        titles = sorted({f.title for f, _ in failures})
        super().__init__(
            titles[0] if len(titles) == 1 else f"{len(titles)} kinds of departure",
            expected="",
            received="",
            severity=worst,
        )
        self.failures = failures

    def render(self) -> str:
        curls = {f.curl for f, _ in self.failures}
        shared = curls.pop() if len(curls) == 1 else ""
        blocks = []
        for failure, count in self.failures:
            text = failure.render()
            if shared:
                text = text.replace(f"\n  reproduce: {shared}", "")
            if count > 1:
                first, _, rest = text.partition("\n")
                text = f"{first}  (x{count}, first shown)\n{rest}"
            blocks.append(text)
        if shared:
            blocks.append(f"reproduce: {shared}")
        return "\n".join(blocks)


def _path_key(path: str) -> str:
    return re.sub(r"\[\d+\]", "[*]", path)


class Findings:
    """Collects the failures of many checks in one test, then raises them together."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], list[Any]] = {}

    def add(self, failure: CheckFailure) -> None:
        parts = failure.failures if isinstance(failure, FailureGroup) else [(failure, 1)]
        for f, count in parts:
            key = (f.title, _path_key(f.path), f.expected)
            if key in self._seen:
                self._seen[key][1] += count
            else:
                self._seen[key] = [f, count]

    def check(self, fn: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Run one check; keep its failure instead of stopping at it."""
        try:
            fn(*args, **kwargs)
        except CheckFailure as failure:
            self.add(failure)

    def raise_any(self) -> None:
        if not self._seen:
            return
        items = sorted(((f, n) for f, n in self._seen.values()), key=lambda x: -x[0].severity)
        if len(items) == 1 and items[0][1] == 1:
            raise items[0][0]
        raise FailureGroup(items)
