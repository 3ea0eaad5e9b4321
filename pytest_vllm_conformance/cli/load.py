"""``vllm-conformance load``: where the shipped locustfile is, and the report of a locust run.

    locust -f "$(vllm-conformance load --path)" --host URL ...
    vllm-conformance load PREFIX [--json FILE] [--plot FILE]

The work is in :mod:`pytest_vllm_conformance.perf.locust`; this module only parses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("load", help="the locustfile's path, or the report of a locust run")
    p.add_argument("prefix", nargs="?", help="the prefix given to locust --csv")
    p.add_argument("--path", action="store_true", help="print the locustfile's path")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="also draw the percentile curves (PNG or SVG, needs matplotlib)",
    )
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    from pytest_vllm_conformance.perf.locust import LOCUSTFILE

    if args.path:
        print(LOCUSTFILE)
        return 0
    if not args.prefix:
        args.parser.error("give the --csv prefix of a locust run, or --path")
    from pytest_vllm_conformance.perf.locust.report import ReportError, plot, read

    try:
        report = read(args.prefix)
        print(report.markdown())
        if args.json:
            args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        if args.plot:
            plot(report, args.plot)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
