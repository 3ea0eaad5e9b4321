"""``vllm-conformance options``: the plugin's command-line options and ini twins.

Prints the configuration's option table (``config.render_options_markdown``, what
docs/options.md holds), rendered from the option declarations themselves.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("options", help="print the plugin's pytest options and ini settings")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pytest_vllm_conformance.config import render_options_markdown

    print(render_options_markdown(), end="")
    return 0
