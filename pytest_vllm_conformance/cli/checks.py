"""``vllm-conformance checks``: every registered check as Markdown.

The table comes from the check registry: each check's verdicts (title and severity), its
function and the suite tests that call it. The project's own ``docs/checks.md`` adds the
fault that proves each check bites; that column needs the project's tests, which are not
installed, so this command leaves it out.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("checks", help="print every registered check (as in docs/checks.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # imported here: loading the registry imports every check module, only this command needs it
    from pytest_vllm_conformance.checks.registry import render_markdown

    print(render_markdown(), end="")
    return 0
