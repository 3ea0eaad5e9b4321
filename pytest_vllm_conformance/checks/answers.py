"""The bundle of checks every completion answer gets: schema, usage, finish reasons, choices.

The compliance suite sends one request per documented shape and the generated suite sends
Hypothesis' requests; both judge the answer with :func:`answer_conforms`. Each caller's
context (:class:`Asked`) says which of the bundle's checks it runs, so each suite judges
what it judged before the bundle was shared; their findings are reported together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import schema as schema_checks
from pytest_vllm_conformance.checks import semantics, streaming
from pytest_vllm_conformance.checks.registry import Context, check
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import Findings
from pytest_vllm_conformance.workload import shapes


@dataclass(frozen=True, kw_only=True)
class Asked(Context):
    """The request that was sent (``request``: its JSON body) and the schemas its answer
    must match: ``root`` for a whole answer, ``chunk_root`` for each streamed chunk.

    The two suites judge slightly different bundles, so each caller says what it wants:
    ``title`` names the failure of a whole answer that is not a JSON object, and
    ``finish_reasons`` asks that every choice says why it finished (the compliance suite's
    documented shapes; Hypothesis' requests do not); ``some_chunk`` fails a stream that
    carried no chunk (the generated suite; the compliance suite's streams are judged by
    their schema alone)."""

    request: Mapping[str, Any]
    root: str
    chunk_root: str
    profile: str
    title: str
    finish_reasons: bool
    some_chunk: bool


@check(
    streaming.NOT_JSON,
    streaming.NO_CHUNK,
    checks.NOT_AN_OBJECT,
    schema_checks.VIOLATION,
    schema_checks.EXTRA_FIELD,
    semantics.NO_USAGE,
    semantics.USAGE_SUM,
    semantics.NO_FINISH_REASON,
    semantics.N_CHOICES,
)
def answer_conforms(r: Response, ctx: Asked) -> None:
    """A completion answer (streamed or not) matches its schema, its usage adds up, every
    choice says why it finished (where ``ctx.finish_reasons``), and the choices asked for
    come back indexed."""
    findings = Findings()
    curl = Context(curl=r.curl)
    if ctx.request.get("stream"):
        chunks = streaming.data_lines_are_json(r)
        findings.check(
            schema_checks.stream_matches,
            chunks,
            schema_checks.Schema(root=ctx.chunk_root, profile=ctx.profile, curl=r.curl),
        )
        if ctx.some_chunk:
            findings.check(streaming.some_chunk, chunks, curl)
        if (ctx.request.get("stream_options") or {}).get("include_usage") and chunks:
            findings.check(semantics.usage_adds_up, chunks[-1], curl)
    else:
        data = checks.json_object(r, checks.Titled(title=ctx.title))
        findings.check(
            schema_checks.matches,
            data,
            schema_checks.Schema(root=ctx.root, profile=ctx.profile, curl=r.curl),
        )
        findings.check(semantics.usage_adds_up, data, curl)
        if ctx.finish_reasons:
            findings.check(semantics.finish_reasons_set, data, curl)
        findings.check(
            semantics.n_choices_indexed,
            data,
            semantics.Count(n=shapes.expected_choices(dict(ctx.request)), curl=r.curl),
        )
    findings.raise_any()
