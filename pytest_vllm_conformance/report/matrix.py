"""A conformance matrix (check x engine) from runs of the bundled suites.

    vllm-conformance matrix \\
        --engine "vllm=http://127.0.0.1:8000 --vllm-embedding-model=e5" \\
        --engine "llama.cpp=http://127.0.0.1:8080" [--out matrix.md]

Each ``--engine`` is ``NAME=URL`` followed by any extra pytest options for that run.
Every run is a separate pytest process writing JUnit XML (pytest's own, through
``--junitxml``); the table is built from those files and printed as Markdown.

A test skipped as ``not supported: FEATURE: EVIDENCE`` (:mod:`target.capabilities`; JUnit keeps
the reason as the skip's message) is ``n/s``, not ``skip``: the engine declared it lacks the
feature. A legend under the table says so.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from pytest_vllm_conformance.target.capabilities import parse

PASS, FAIL, SKIP, ERROR, NOT_SUPPORTED = "pass", "FAIL", "skip", "ERROR", "n/s"
LEGEND = (
    f"{PASS}: passed; {FAIL}: a check failed; {ERROR}: the test could not run; "
    f"{NOT_SUPPORTED}: not supported, the engine declared it lacks the feature (its own answer, "
    f"e.g. a 400 naming a missing option), not a failure; {SKIP}: the test did not apply."
)


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """test id -> (outcome, first line of the reason) from one JUnit file."""
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name')}"
        result, reason = PASS, ""
        for tag, label in (("failure", FAIL), ("error", ERROR), ("skipped", SKIP)):
            node = case.find(tag)
            if node is not None:
                result = label
                text = node.get("message") or node.text or ""
                reason = text.strip().splitlines()[0] if text.strip() else ""
                gap = parse(reason) if label == SKIP else None
                if gap is not None:
                    result = NOT_SUPPORTED
                    reason = f"{gap[0]}: {gap[1]}" if gap[1] else gap[0]
                break
        if reason.startswith("["):
            reason = reason.split("] ", 1)[-1]
        cut = 120 if result == NOT_SUPPORTED else 70  # the evidence's point is often at its end
        out[name] = (result, reason.split("  (x")[0][:cut])
    return out


def run_engine(spec: str, folder: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    head, *extra = shlex.split(spec)
    name, _, url = head.partition("=")
    if not url:
        raise SystemExit(f"--engine must be NAME=URL [pytest options], got {spec!r}")
    junit = folder / f"{name}.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        f"--vllm-url={url}",
        f"--junitxml={junit}",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        *extra,
    ]
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    if not junit.exists():
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise SystemExit(f"the run for {name} produced no results: {last}")
    return name, outcomes(junit)


def table(results: dict[str, dict[str, tuple[str, str]]]) -> str:
    engines = list(results)
    tests = sorted({t for r in results.values() for t in r})
    lines = ["| check | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
    for test in tests:
        cells = []
        for engine in engines:
            outcome, reason = results[engine].get(test, ("-", ""))
            cells.append(outcome if outcome == PASS or not reason else f"{outcome}: {reason}")
        lines.append(f"| `{test}` | " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    totals = [
        " / ".join(
            f"{sum(1 for o, _ in results[e].values() if o == k)} {k}"
            for k in (PASS, FAIL, SKIP, NOT_SUPPORTED)
        )
        for e in engines
    ]
    lines.append("| **total** | " + " | ".join(totals) + " |")
    return "\n".join(lines) + "\n\n" + LEGEND + "\n"


if (
    __name__ == "__main__"
):  # ``python -m ...report.matrix``: an alias of ``vllm-conformance matrix``
    from pytest_vllm_conformance.cli import main

    sys.exit(main(["matrix", *sys.argv[1:]]))
