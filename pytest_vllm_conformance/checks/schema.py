"""Schema checks: a body against OpenAI's published schema, in the run's profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.failures import Findings, Severity
from pytest_vllm_conformance.schemas import validate as schema

VIOLATION = Verdict("Response does not match the OpenAI schema", Severity.HIGH)
EXTRA_FIELD = Verdict("Field not defined by the OpenAI API", Severity.LOW)


@dataclass(frozen=True, kw_only=True)
class Schema(Context):
    """The schema a body must match (``root``, e.g. ``CreateCompletionResponse``), in the
    run's profile; ``where`` names the body in a stream."""

    root: str
    profile: str
    where: str = ""


@check(VIOLATION, EXTRA_FIELD)
def matches(instance: Any, ctx: Schema) -> None:
    """``instance`` validates against schema ``root``; every violation is reported."""
    findings = Findings()
    where = f", {ctx.where}" if ctx.where else ""
    for v in schema.validate(ctx.root, instance, ctx.profile):
        verdict = EXTRA_FIELD if v.extra_field else VIOLATION
        findings.add(
            verdict.failure(
                path=v.path,
                expected=v.expected,
                received=v.received,
                curl=ctx.curl,
                detail=f"schema {ctx.root} ({ctx.profile} profile){where}",
            )
        )
    findings.raise_any()


@check(VIOLATION, EXTRA_FIELD)
def stream_matches(chunks: list[dict[str, Any]], ctx: Schema) -> None:
    """Every streamed chunk validates; identical violations across chunks are counted once."""
    findings = Findings()
    for i, chunk in enumerate(chunks):
        findings.check(
            matches,
            chunk,
            Schema(root=ctx.root, profile=ctx.profile, curl=ctx.curl, where=f"stream chunk {i}"),
        )
    findings.raise_any()
