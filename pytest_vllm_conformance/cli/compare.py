"""``vllm-conformance compare OLD NEW``: what changed between two runs, as a table.

    vllm-conformance compare baseline/results.json reports/results.json \\
        [--tolerance ttft_p95=20%,abs_ms=2] [--accept outputs] [--html report.html]

OLD and NEW are results files or certification bundle folders. The table: each greedy answer
(same or where it changed), each load level's metrics (old, new, ratio, its 95% bootstrap
interval, verdict), tests that passed in OLD and fail in NEW (or lost their feature) and the
reverse. Exit status 0 without a regression, 1 with one, 2 when a file or option is unusable
(a file that is not a results document valid against its schema: one sentence, never a
traceback). The work is in
:mod:`pytest_vllm_conformance.report.compare`; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "compare",
        help="compare two runs' results: outputs, latency, tests (exit 1 on a regression)",
        description="Compare NEW with OLD (the baseline): greedy answers, latency per level "
        "and metric (a regression is beyond its tolerance and significant), and tests that "
        "passed in OLD and fail in NEW.",
    )
    c.add_argument("old", type=Path, help="the baseline: a results JSON file or bundle folder")
    c.add_argument("new", type=Path, help="the run to judge: a results JSON file or bundle folder")
    c.add_argument(
        "--tolerance",
        default="",
        metavar="KEY=PERCENT,...",
        help="as --vllm-baseline-tolerance (default: ttft/itl/e2e p50 and p95 at 10%%, abs_ms=1)",
    )
    c.add_argument(
        "--accept",
        default="",
        metavar="WHAT,...",
        help="as --vllm-baseline-accept: outputs, outputs:PROMPT, latency",
    )
    c.add_argument("--html", type=Path, help="also write NEW's HTML report with the comparison")
    c.add_argument("--json", type=Path, help="also write the comparison as JSON")
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    import pytest

    from pytest_vllm_conformance import untrusted
    from pytest_vllm_conformance.config import parsers
    from pytest_vllm_conformance.report import compare

    try:
        tolerance = parsers.baseline_tolerance(args.tolerance, "--tolerance")
        accept = parsers.baseline_accept(args.accept, "--accept")
        old, new = compare.load(args.old), compare.load(args.new)
    except (pytest.UsageError, ValueError) as exc:
        print(f"error: {untrusted.line(str(exc))}", file=sys.stderr)
        return 2
    found = compare.compare(old, new, tolerance, accept)
    print(untrusted.safe(found.table(), 200_000))
    if args.json or args.html:
        section = {"baseline": str(args.old), **untrusted.clean(found.as_json())}
    if args.json:
        args.json.write_text(json.dumps(section, indent=2, allow_nan=False) + "\n")
    if args.html:
        from pytest_vllm_conformance.report import html

        try:  # a document valid against the schema renders; this is the last guard
            page = html.render({**new, "comparison": section})
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            print(
                f"error: {args.new} cannot be rendered as HTML ({type(exc).__name__})",
                file=sys.stderr,
            )
            return 2
        args.html.write_text(page, encoding="utf-8")
    return 1 if found.regressed else 0
