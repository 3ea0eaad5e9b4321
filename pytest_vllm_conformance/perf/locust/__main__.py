"""``python -m pytest_vllm_conformance.perf.locust``: where the locustfile is, and reports of runs.

    locust -f "$(python -m pytest_vllm_conformance.perf.locust --path)" --host URL ...
    python -m pytest_vllm_conformance.perf.locust PREFIX [--json FILE] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pytest_vllm_conformance.perf.locust import LOCUSTFILE
from pytest_vllm_conformance.perf.locust.report import ReportError, plot, read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_vllm_conformance.perf.locust",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("prefix", nargs="?", help="the prefix given to locust --csv")
    parser.add_argument("--path", action="store_true", help="print the locustfile's path")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--plot", type=Path, metavar="FILE",
                        help="also draw the percentile curves (PNG or SVG, needs matplotlib)")
    args = parser.parse_args(argv)
    if args.path:
        print(LOCUSTFILE)
        return 0
    if not args.prefix:
        parser.error("give the --csv prefix of a locust run, or --path")
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


if __name__ == "__main__":
    sys.exit(main())
