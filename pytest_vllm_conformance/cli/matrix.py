"""``vllm-conformance matrix``: one pytest run per engine, one Markdown table (check x engine).

    vllm-conformance matrix \\
        --engine "vllm=http://127.0.0.1:8000 --vllm-embedding-model=e5" \\
        --engine "llama.cpp=http://127.0.0.1:8080" [--out matrix.md]

The work is in :mod:`pytest_vllm_conformance.report.matrix`; this module only parses.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser(
        "matrix",
        help="run the suites against several engines, print one table",
        description="Each --engine is NAME=URL followed by any extra pytest options for that run.",
    )
    m.add_argument("--engine", action="append", required=True, metavar="'NAME=URL [OPTS]'")
    m.add_argument("--out", type=Path, help="also write the table to this file")
    m.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pytest_vllm_conformance.report.matrix import run_engine, table

    with tempfile.TemporaryDirectory() as tmp:
        results = dict(run_engine(spec, Path(tmp)) for spec in args.engine)
    text = table(results)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0
