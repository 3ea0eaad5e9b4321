"""The top-level parser: each subcommand module adds its parsers and the function that runs it."""

from __future__ import annotations

import argparse
import sys

from pytest_vllm_conformance.cli import certify, checks, compare, load, matrix, options

#: the subcommand modules, in the order ``--help`` lists them
COMMANDS = (certify, matrix, load, checks, options, compare)  # issue 18: compare


def parser() -> argparse.ArgumentParser:
    """The whole command line; each subparser's ``run`` default is the function it calls."""
    top = argparse.ArgumentParser(
        prog="vllm-conformance",
        description="Judge an OpenAI-compatible LLM server: certify it, compare engines, load "
        "it with locust, list the checks and options.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; what follows ``--`` goes to it untouched (certify: pytest options)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    top = parser()
    args = top.parse_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        top.error(f"{args.command} takes no options after --")
    args.extra = extra
    code: int = args.run(args)
    return code
