"""``vllm-conformance options``: the plugin's command-line options and ini twins.

Where the configuration renders its option table (``config.render_options_markdown``, what
docs/options.md holds) that table is printed; otherwise ``pytest --help`` is asked (from an
empty folder, so no project conftest adds to it) and the plugin's option group and the
``vllm_*`` ini lines are kept. Either way the source is the option declarations themselves.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("options", help="print the plugin's pytest options and ini settings")
    p.set_defaults(run=run)


def plugin_help(text: str) -> str:
    """From ``pytest --help``: the sections holding ``--vllm-`` options, and the ``vllm_``
    ini entries with their wrapped help lines."""
    sections: list[list[str]] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    kept: list[str] = []
    for section in sections:
        if any(line.lstrip().startswith("--vllm-") for line in section[1:]):
            kept += [*section, ""] if section[-1] else section
        elif any(line.startswith("  vllm_") for line in section[1:]):
            kept.append("ini settings (pytest.ini, pyproject.toml [tool.pytest.ini_options]):")
            keep = False
            for line in section[1:]:
                if line.startswith("  ") and not line.startswith("   "):
                    keep = line.startswith("  vllm_")
                if keep:
                    kept.append(line)
    return "\n".join(kept).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    from pytest_vllm_conformance import config

    render = getattr(config, "render_options_markdown", None)
    if callable(render):
        print(render(), end="")
        return 0
    with tempfile.TemporaryDirectory() as empty:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
            cwd=empty,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        print(f"error: pytest --help failed: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return 2
    print(plugin_help(done.stdout), end="")
    return 0
