"""Schema checks: a body against OpenAI's published schema, in the run's profile."""

from __future__ import annotations

from typing import Any

from pytest_vllm_conformance.failures import CheckFailure, Findings, Severity
from pytest_vllm_conformance.schemas import validate as schema


def matches(instance: Any, root: str, profile: str, *, curl: str = "",
            where: str = "") -> None:
    """``instance`` validates against schema ``root``; every violation is reported."""
    findings = Findings()
    for v in schema.validate(root, instance, profile):
        findings.add(CheckFailure(
            v.title, path=v.path, expected=v.expected, received=v.received, curl=curl,
            severity=Severity.LOW if v.extra_field else Severity.HIGH,
            detail=f"schema {root} ({profile} profile){', ' + where if where else ''}"))
    findings.raise_any()


def stream_matches(chunks: list[dict[str, Any]], root: str, profile: str, *,
                   curl: str = "") -> None:
    """Every streamed chunk validates; identical violations across chunks are counted once."""
    findings = Findings()
    for i, chunk in enumerate(chunks):
        findings.check(matches, chunk, root, profile, curl=curl, where=f"stream chunk {i}")
    findings.raise_any()
