"""``vllm-conformance certify URL``: run the certification profile and write a checkable bundle.

The command line is :mod:`pytest_vllm_conformance.cli.certify`; the work is here.

The bundle folder holds the HTML report, pytest's JUnit XML (xunit2), the JSON results, the
OpenMetrics text, the console output, ``versions.json`` (harness, Python, pytest, server),
``command.txt`` (the exact command; the key travels in $VLLM_API_KEY, never on a command
line) and ``SHA256SUMS`` with one line per file, whose own SHA-256 is the bundle's digest:
``vllm-conformance verify DIR`` recomputes both.

The profile, ``certification/2``: every bundled suite, now with the agentic ones (markers
``structured_outputs``, ``tools``, ``responses``), the ``vllm`` conformance profile for vLLM and
``openai`` for other engines (``auto``), 100 identical requests per prompt in the determinism
burst, the latency sweep 1, 8 and 50 users with the default SLO (100-token completions p95 under
5 s, embeddings p95 under 500 ms and 100/s, no errors), 60 s of memory load allowed at most
100 MB/h. A bundle certifies a deployment when its verdict is ``pass``. A feature the server
does not support (a test skipped as ``not supported: FEATURE: EVIDENCE``) is declared, not
failed: the verdict stays ``pass``, and the bundle names each such feature with the server's
evidence, in ``versions.json`` (``not_supported``) and in ``summary.txt``, the human-readable
summary that ``certify`` also prints.

``certification/1`` (before the agentic suites, no declared features) bundles stay checkable:
``verify`` only reads ``SHA256SUMS``, and :func:`describe` reads either version.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PROFILE = "certification/2"
#: Every profile whose bundles ``verify`` and :func:`describe` read.
PROFILES = ("certification/1", "certification/2")
SUMMARY = "summary.txt"
PROFILE_ARGS = (
    "--vllm-profile=auto",
    "--vllm-suites=on",
    "--vllm-determinism-requests=100",
    "--vllm-latency-concurrency=1,8,50",
    "--vllm-latency-requests=100",
    "--vllm-memory-duration=60s",
    "--vllm-memory-max-growth=100",
    "--vllm-junit-test-properties=off",
    "-o",
    "junit_family=xunit2",
    "-p",
    "no:cacheprovider",
)
SUMS = "SHA256SUMS"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sums(folder: Path) -> str:
    """Write SHA256SUMS over every other file; return its own digest (the bundle's)."""
    lines = [
        f"{sha256(p)}  {p.relative_to(folder).as_posix()}"
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != SUMS
    ]
    (folder / SUMS).write_text("\n".join(lines) + "\n")
    return sha256(folder / SUMS)


def verify(folder: Path, digest: str | None = None) -> list[str]:
    """Problems found (empty: the bundle is intact, and matches ``digest`` when given)."""
    sums = folder / SUMS
    if not sums.is_file():
        return [f"{sums} is missing: not a certification bundle"]
    problems = []
    listed = set()
    for line in sums.read_text().splitlines():
        want, _, name = line.partition("  ")
        listed.add(name)
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: listed but missing")
        elif sha256(path) != want:
            problems.append(f"{name}: changed since the bundle was written")
    extra = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != SUMS
    } - listed
    problems += [f"{name}: not in {SUMS}" for name in sorted(extra)]
    if digest and sha256(sums) != digest:
        problems.append(f"{SUMS} digest is {sha256(sums)}, not {digest}")
    return problems


def declared(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The features the server does not support, from the results document (each: feature,
    evidence, tests, suites); a document without the section declares none."""
    section = doc.get("not_supported")
    return list(section["features"]) if isinstance(section, dict) else []


def summary(doc: dict[str, Any], gaps: list[dict[str, Any]]) -> str:
    """The bundle's verdict for people: counts (ordinary skips apart from the features not
    supported), then each feature not supported with the server's evidence."""
    from pytest_vllm_conformance import untrusted

    counts = doc["counts"]
    ns = sum(int(g["tests"]) for g in gaps)
    lines = [
        f"{doc['verdict'].upper()}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['error']} errors, {counts['skipped'] - ns} skipped, {ns} not supported"
    ]
    if gaps:
        names = ", ".join(untrusted.line(g["feature"]) for g in gaps)
        lines.append(f"not supported (declared by the server, not failed): {names}")
        lines += [untrusted.line(f"  {g['feature']}: {g['evidence'] or '-'}") for g in gaps]
    lines.append(f"profile {PROFILE}")
    return "\n".join(lines) + "\n"


def describe(folder: Path) -> str:
    """One line naming a bundle's profile, verdict and declared features (either version);
    what cannot be read says so. The file is checked by ``verify``, never trusted for code."""
    from pytest_vllm_conformance import untrusted

    try:
        versions = json.loads((folder / "versions.json").read_text(encoding="utf-8"))
        profile, verdict = str(versions["profile"]), str(versions["verdict"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return untrusted.line(f"versions.json unreadable: {type(exc).__name__}: {exc}")
    if profile not in PROFILES:
        return untrusted.line(f"profile {profile}: unknown to this harness (knows {PROFILES})")
    gaps = versions.get("not_supported")
    names = (
        [str(g.get("feature")) for g in gaps if isinstance(g, dict)]
        if isinstance(gaps, list)
        else []
    )
    said = f"; not supported: {', '.join(names)}" if names else ""
    return untrusted.line(f"profile {profile}, verdict {verdict}{said}")


def certify(url: str, out: Path, extra: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        print(f"error: {out} is not empty; certify writes a fresh bundle", file=sys.stderr)
        return 2
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        f"--vllm-url={url}",
        *PROFILE_ARGS,
        f"--vllm-output-dir={out}",
        f"--junitxml={out / 'junit.xml'}",
        f"--vllm-json={out / 'results.json'}",
        f"--vllm-html={out / 'report.html'}",
        f"--vllm-openmetrics={out / 'metrics.txt'}",
        *extra,
    ]
    if any(a.startswith("--vllm-api-key") for a in extra):
        print(
            "error: pass the key in $VLLM_API_KEY, not on the command line (it would be "
            "written into command.txt)",
            file=sys.stderr,
        )
        return 2
    with (out / "pytest-output.txt").open("w") as log, tempfile.TemporaryDirectory() as work:
        # run from an empty folder: no project conftest, no caches in the bundle
        code = subprocess.run(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work, stdin=subprocess.DEVNULL
        ).returncode
    (out / "command.txt").write_text(shlex.join(cmd) + "\n")
    results = out / "results.json"
    if not results.is_file():
        tail = (
            (out / "pytest-output.txt")
            .read_text(encoding="utf-8", errors="replace")
            .strip()
            .splitlines()[-3:]
        )
        print(
            f"error: the run wrote no results (pytest exit {code}): " + " / ".join(tail),
            file=sys.stderr,
        )
        return 2
    doc = json.loads(results.read_text(encoding="utf-8"))
    import pytest

    from pytest_vllm_conformance import __version__

    gaps = declared(doc)
    versions = {
        "profile": PROFILE,
        "profile_overrides": extra,
        "harness": __version__,
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        "platform": platform.platform(),
        "server": doc["target"],
        "verdict": doc["verdict"],
        "counts": doc["counts"],
        "not_supported": gaps,
    }
    (out / "versions.json").write_text(
        json.dumps(versions, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    text = summary(doc, gaps)
    (out / SUMMARY).write_text(text, encoding="utf-8")
    digest = write_sums(out)
    print(text, end="")
    print(f"bundle {out}, digest sha256:{digest} ({SUMS})")
    if extra:
        print(
            f"note: the {PROFILE} profile was changed by: {shlex.join(extra)} "
            "(recorded in versions.json)"
        )
    return 0 if doc["verdict"] == "pass" else 1


if __name__ == "__main__":  # ``python -m ...report.certify``: an alias of ``vllm-conformance``
    from pytest_vllm_conformance.cli import main

    sys.exit(main())
