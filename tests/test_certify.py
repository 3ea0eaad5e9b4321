"""The certification bundle: produced against real vLLM, checkable, xunit2-valid, key-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from pytest_vllm_conformance.cli import main
from pytest_vllm_conformance.report.certify import PROFILE, verify
from tests.engines import VLLM_DEPARTURES, harness_cpus
from tests.fault_server import FaultServer
from tests.test_html_report import assert_self_contained, browser_checks
from tests.test_real_engines import CPU_PERF
from tests.test_results import _load

XSD = Path(__file__).parent / "data" / "junit-xunit2.xsd"
QUICK = [
    "--vllm-latency-concurrency=1,4",
    "--vllm-latency-requests=8",
    "--vllm-memory-duration=5s",
    "--vllm-memory-max-growth=1000",
    "--vllm-determinism-requests=10",
    "--vllm-latency-harness-tolerance=50",
]  # issue 15: the fault server shares our CPUs


def certify(
    url: str, out: Path, *extra: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_API_KEY", "OPENAI_API_KEY")}
    if key:
        env["VLLM_API_KEY"] = key
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_vllm_conformance.cli",
            "certify",
            url,
            "--out",
            str(out),
            "--",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def test_a_bundle_against_real_vllm(
    vllm_url: str, vllm_embed_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    with harness_cpus():  # measure from the CPUs the engines do not use
        run = certify(
            vllm_url,
            out,
            f"--vllm-embedding-url={vllm_embed_url}",
            "--vllm-embedding-model=tiny-embed",
            *CPU_PERF,
        )
    # vLLM 0.32's Responses API departs from OpenAI's spec (tests/engines.py VLLM_DEPARTURES):
    # the bundle says so, FAIL with exactly those tests, and is as complete as a passing one.
    report = run.stdout + run.stderr + (out / "pytest-output.txt").read_text()
    assert run.returncode == 1 and run.stdout.startswith("FAIL: "), report
    failed = {
        "::".join(t["nodeid"].split("/")[-1].split("::")[-2:])
        for t in _load(out / "results.json")["tests"]
        if t["outcome"] in ("failed", "error")
    }
    assert failed == VLLM_DEPARTURES, report
    names = {p.name for p in out.iterdir()}
    assert {
        "report.html",
        "junit.xml",
        "results.json",
        "metrics.txt",
        "versions.json",
        "command.txt",
        "pytest-output.txt",
        "SHA256SUMS",
    } <= names
    xmlschema.XMLSchema(XSD).validate(out / "junit.xml")
    suite_props = {p.get("name") for p in ET.parse(out / "junit.xml").getroot().iter("property")}
    assert {
        "vllm_url",
        "vllm_engine",
        "vllm_engine_version",
        "vllm_model",
        "vllm_profile",
        "vllm_system_fingerprint",
        "vllm_conformance_version",
    } <= suite_props
    doc = _load(out / "results.json")
    assert doc["verdict"] == "fail" and doc["target"]["engine"] == "vllm"
    versions = json.loads((out / "versions.json").read_text())
    assert versions["profile"] == PROFILE and versions["server"]["engine_version"] == "0.32.0"
    assert_self_contained((out / "report.html").read_text())
    assert "FAIL:" in browser_checks(out / "report.html", tmp_path)
    digest = run.stdout.split("digest sha256:")[1].split()[0]
    assert main(["verify", str(out), "--digest", digest]) == 0
    (out / "results.json").write_text(
        (out / "results.json").read_text().replace('"verdict": "fail"', '"verdict": "pass"')
    )
    assert verify(out, digest) == ["results.json: changed since the bundle was written"]
    assert main(["verify", str(out)]) == 1
    assert "FAILED: results.json: changed" in capsys.readouterr().out


def test_no_key_in_any_artifact(fault: FaultServer, tmp_path: Path) -> None:
    key = "sk-certify-distinctive-0b7d2e94"
    fault.api_key = key
    out = tmp_path / "bundle"
    run = certify(fault.url, out, *QUICK, key=key)
    assert run.returncode == 0, run.stdout + run.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path.name
    assert key not in run.stdout + run.stderr
    assert json.loads((out / "results.json").read_text())["options"]["api_key_given"] is True


def test_a_key_on_the_command_line_is_refused(fault: FaultServer, tmp_path: Path) -> None:
    run = certify(fault.url, tmp_path / "b", "--vllm-api-key=sk-nope")
    assert run.returncode == 2 and "pass the key in $VLLM_API_KEY" in run.stderr
    assert "sk-nope" not in run.stderr


def test_a_failing_server_gives_a_failing_bundle(fault: FaultServer, tmp_path: Path) -> None:
    fault.faults = {"missing_usage"}
    run = certify(fault.url, tmp_path / "b", *QUICK)
    assert run.returncode == 1 and run.stdout.startswith("FAIL: ")
    assert verify(tmp_path / "b") == []


def test_testcase_properties_break_xunit2_so_certify_leaves_them_out(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_latency.py::test_streamed_completions_at_each_concurrency_level",
        "--vllm-latency-concurrency=2",
        "--vllm-latency-requests=4",
        "--junitxml=on.xml",
    )
    with pytest.raises(xmlschema.XMLSchemaValidationError, match="properties"):
        xmlschema.XMLSchema(XSD).validate(pytester.path / "on.xml")
    pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_latency.py::test_streamed_completions_at_each_concurrency_level",
        "--vllm-latency-concurrency=2",
        "--vllm-latency-requests=4",
        "--junitxml=off.xml",
        "--vllm-junit-test-properties=off",
    )
    xmlschema.XMLSchema(XSD).validate(pytester.path / "off.xml")
