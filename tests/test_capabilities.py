"""Not supported: a feature the server lacks is its own outcome, shown apart from ordinary skips.

One small pytester suite (no conftest) against the clean fault server: two tests of a feature
whose probe says "not supported" (the probe runs once), one test declaring another feature, a
plain skip and passing tests. The outcome is then read from every place a user looks: the
results JSON, the terminal summary, the HTML, the matrix (from the JUnit) and a certification
bundle; the plain skip is never counted as not supported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_conformance.cli import main as cli
from pytest_vllm_conformance.report import certify as bundle
from pytest_vllm_conformance.report.matrix import LEGEND, outcomes, table
from pytest_vllm_conformance.target.capabilities import (
    Capabilities,
    feature_of,
    not_supported,
    parse,
    reason,
)
from tests.fault_server import FaultServer
from tests.test_results import _load

ESC = "\x1b"
EVIDENCE = f"'auto' tool choice requires --enable-auto-tool-choice and --tool-call-parser{ESC}[31m"
SUITE = f"""
import pytest
from pytest_vllm_conformance.target.capabilities import not_supported

CALLS = []


def _probe():
    CALLS.append(1)
    return {EVIDENCE!r}


@pytest.mark.compliance
def test_tools_one(vllm_capabilities):
    vllm_capabilities.require("tool calling", _probe)


@pytest.mark.compliance
def test_tools_two(vllm_capabilities):
    vllm_capabilities.require("tool calling", _probe)


def test_responses(vllm_model):
    not_supported("responses", "404 Not Found\\nsecond line")


def test_plain_skip():
    pytest.skip("no --vllm-embedding-model given")


def test_probed_once(vllm_capabilities):
    assert CALLS == [1]
    assert vllm_capabilities.supported("tool calling") is False
"""


# -- the API ----------------------------------------------------------------------------------
def test_the_reason_names_the_feature_and_the_evidence_safely() -> None:
    text = reason("tool calling", "line one\nline two " + ESC + "[2J" + "x" * 1000)
    assert text.startswith("not supported: tool calling: line one\\nline two \\x1b[2J")
    assert ESC not in text and "\n" not in text and len(text) < 400
    assert parse(text) == ("tool calling", text.removeprefix("not supported: tool calling: "))
    assert feature_of("Skipped: " + text) == "tool calling"  # as pytest reports it
    assert reason("responses", "") == "not supported: responses"
    assert feature_of("not supported: responses") == "responses"


@pytest.mark.parametrize(
    "text",
    [None, "", "no --vllm-embedding-model given", "Not Supported: x", "not supported: ", "nope"],
)
def test_an_ordinary_skip_is_not_a_missing_feature(text: str | None) -> None:
    assert feature_of(text) is None


@pytest.mark.parametrize("feature", ["", "Tools", "a: b", " tools", "tools ", "x" * 41])
def test_a_feature_name_is_short_and_plain(feature: str) -> None:
    with pytest.raises(ValueError, match="a feature is 1-40 characters"):
        reason(feature, "evidence")


def test_not_supported_skips_with_that_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match=r"^not supported: tools: 400 Bad Request$"):
        not_supported("tools", "400 Bad Request")


def test_a_probe_runs_once_and_its_answer_is_remembered() -> None:
    caps, calls = Capabilities(), []

    def missing() -> str:
        calls.append("tools")
        return "requires --tool-call-parser"

    for _ in range(3):
        with pytest.raises(pytest.skip.Exception, match="requires --tool-call-parser"):
            caps.require("tools", missing)
    assert calls == ["tools"] and caps.supported("tools") is False
    caps.require("json schema", lambda: None)  # supported: returns, remembered
    caps.require("json schema", lambda: pytest.fail("probed twice"))
    assert caps.supported("json schema") is True and caps.supported("responses") is None
    assert caps.missing() == {"tools": "requires --tool-call-parser"}


def test_a_probe_that_raises_is_not_remembered() -> None:
    caps = Capabilities()

    def broken() -> str | None:
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError):
        caps.require("tools", broken)
    assert caps.supported("tools") is None
    with pytest.raises(pytest.skip.Exception, match=r"^not supported: tools: HTTP 400$"):
        caps.declare("tools", "HTTP 400")
    with pytest.raises(pytest.skip.Exception):
        caps.require("tools", lambda: pytest.fail("a declared feature is not probed again"))


# -- every place a user looks -------------------------------------------------------------------
def test_not_supported_shows_everywhere_and_a_plain_skip_does_not(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    pytester.makepyfile(test_gaps=SUITE)
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", "test_gaps.py", "--junitxml=junit.xml", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1, skipped=4)

    doc = _load(pytester.path / "reports" / "results.json")
    assert doc["verdict"] == "pass" and doc["counts"]["skipped"] == 4  # old readers stay right
    by_name = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert by_name["test_tools_one"]["not_supported"] == "tool calling"
    assert by_name["test_tools_two"]["skip_reason"] == by_name["test_tools_one"]["skip_reason"]
    assert by_name["test_responses"]["not_supported"] == "responses"
    assert by_name["test_plain_skip"]["not_supported"] is None
    assert by_name["test_probed_once"]["not_supported"] is None
    gaps = doc["not_supported"]
    assert gaps["count"] == 3 and gaps["by_suite"] == {"compliance": 2, "other": 1}
    assert [(g["feature"], g["tests"], g["suites"]) for g in gaps["features"]] == [
        ("responses", 1, ["other"]),
        ("tool calling", 2, ["compliance"]),
    ]
    assert gaps["features"][1]["evidence"].endswith("--tool-call-parser\\x1b[31m")
    assert gaps["features"][0]["evidence"] == "404 Not Found\\nsecond line"

    result.stdout.fnmatch_lines(
        [
            "*= vllm-conformance =*",
            "compliance     2 not supported (tool calling)",
            "other          1 passed, 1 skipped, 1 not supported (responses)",
            "not supported: responses (1 test): 404 Not Found\\nsecond line",
            "not supported: tool calling (2 tests): 'auto' tool choice requires *\\x1b[[]31m",
            "verdict: PASS*",
        ]
    )
    assert ESC not in result.stdout.str()

    html = (pytester.path / "reports" / "report.html").read_text()
    assert "PASS: 1 passed, 0 failed, 0 errors, 1 skipped, 3 not supported" in html
    assert "<th>skipped</th><th>not supported</th><th>skip reasons</th>" in html
    assert '<td class="o-ns">2 <span class="ns">tool calling</span></td>' in html
    assert "<h2>Not supported (2 features)</h2>" in html
    assert html.count('<td class="o-ns">not supported</td>') == 3
    assert "no --vllm-embedding-model given" in html  # the plain skip, among skip reasons
    assert ESC not in html

    junit = outcomes(pytester.path / "junit.xml")
    assert junit["test_gaps::test_tools_one"][0] == "n/s"
    assert junit["test_gaps::test_plain_skip"] == ("skip", "no --vllm-embedding-model given")
    text = table({"fault": junit})
    assert "| `test_gaps::test_responses` | n/s: responses: 404 Not Found\\nsecond line |" in text
    assert "| `test_gaps::test_tools_two` | n/s: tool calling: 'auto' tool choice " in text
    assert "| **total** | 1 pass / 0 FAIL / 1 skip / 3 n/s |" in text
    assert text.endswith("\n\n" + LEGEND + "\n") and "n/s: not supported" in LEGEND


def test_a_bundle_declares_what_is_not_supported_and_still_passes(
    pytester: pytest.Pytester, fault: FaultServer, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = pytester.makepyfile(test_gaps=SUITE)
    out = pytester.path / "bundle"
    command = [sys.executable, "-m", "pytest_vllm_conformance.cli", "certify", fault.url]
    run = subprocess.run(
        [*command, "--out", str(out), "--", "--vllm-suites=off", "-p", "no:randomly", str(suite)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr + (out / "pytest-output.txt").read_text()
    summary = (out / bundle.SUMMARY).read_text()
    assert run.stdout.startswith(summary)
    assert summary.splitlines() == [
        "PASS: 1 passed, 0 failed, 0 errors, 1 skipped, 3 not supported",
        "not supported (declared by the server, not failed): responses, tool calling",
        "  responses: 404 Not Found\\nsecond line",
        "  tool calling: 'auto' tool choice requires --enable-auto-tool-choice and "
        "--tool-call-parser\\x1b[31m",
        "profile certification/2",
    ]
    versions = json.loads((out / "versions.json").read_text())
    assert versions["profile"] == bundle.PROFILE == "certification/2"
    assert [g["feature"] for g in versions["not_supported"]] == ["responses", "tool calling"]
    assert bundle.verify(out) == []
    assert cli(["verify", str(out)]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[-1] == (
        "profile certification/2, verdict pass; not supported: responses, tool calling"
    )


def test_a_version_1_bundle_still_verifies(tmp_path: Path) -> None:
    (tmp_path / "versions.json").write_text(
        json.dumps({"profile": "certification/1", "verdict": "pass", "server": {}})
    )
    (tmp_path / "results.json").write_text("{}")
    bundle.write_sums(tmp_path)
    assert bundle.verify(tmp_path) == []
    assert bundle.describe(tmp_path) == "profile certification/1, verdict pass"


@pytest.mark.parametrize(
    ("versions", "said"),
    [
        ('{"profile": "certification/9", "verdict": "pass"}', "unknown to this harness"),
        ('{"profile": "certification/2", "verdict": "pass", "not_supported": 7}', "verdict pass"),
        ("[1, 2]", "versions.json unreadable: TypeError"),
        ("not json", "versions.json unreadable: JSONDecodeError"),
    ],
)
def test_describe_reads_a_hostile_versions_file_safely(
    tmp_path: Path, versions: str, said: str
) -> None:
    (tmp_path / "versions.json").write_text(versions)
    assert said in bundle.describe(tmp_path)
