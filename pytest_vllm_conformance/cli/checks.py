"""``vllm-conformance checks``: every registered check as Markdown (what docs/checks.md holds).

The table comes from the check registry: title, severity, function, suite test, and the
fault that proves it bites.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("checks", help="print every registered check (docs/checks.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:  # imported by name: the registry is the only heavy part, and only this needs it
        registry = importlib.import_module("pytest_vllm_conformance.checks.registry")
        text: str = registry.render_markdown()
    except (ImportError, AttributeError) as exc:
        print(f"error: this build has no check registry ({exc})", file=sys.stderr)
        return 2
    print(text, end="")
    return 0
