"""``vllm-conformance certify URL`` and ``verify DIR``: a checkable certification bundle.

The work is in :mod:`pytest_vllm_conformance.report.certify`; this module only parses.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "certify",
        help="run the certification profile, write a bundle",
        epilog="More pytest options go after --, e.g. -- --vllm-embedding-model=NAME",
    )
    c.add_argument("url", help="base URL of the server, http(s)://host[:port]")
    c.add_argument(
        "--out",
        type=Path,
        default=Path("certification"),
        metavar="DIR",
        help="bundle folder, created empty. Default: ./certification",
    )
    c.set_defaults(run=run_certify, takes_extra=True)
    v = sub.add_parser("verify", help="check a bundle against its SHA256SUMS")
    v.add_argument("folder", type=Path)
    v.add_argument("--digest", help="the sha256 the bundle was handed over with")
    v.set_defaults(run=run_verify)


def run_certify(args: argparse.Namespace) -> int:
    from pytest_vllm_conformance.report.certify import certify

    return certify(args.url, args.out.resolve(), list(args.extra))


def run_verify(args: argparse.Namespace) -> int:
    from pytest_vllm_conformance.report.certify import SUMS, describe, sha256, verify

    problems = verify(args.folder, (args.digest or "").removeprefix("sha256:") or None)
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        print(
            f"OK: every file of {args.folder} matches {SUMS} (sha256:{sha256(args.folder / SUMS)})"
        )
        print(describe(args.folder))
    return 1 if problems else 0
