"""The JSON results file, its schema, the terminal summary and the failure properties in JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pytest_vllm_conformance.report.results import SCHEMA_FILE
from tests.fault_server import FaultServer

KEY = "sk-results-distinctive-5e1f0c"
SUITES = [
    "test_compliance.py::test_completions_match_the_schema",
    "test_streaming.py::test_stream_ends_with_done",
    "test_health.py",
]


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(doc)
    return doc


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_failures_are_grouped_by_title_everywhere(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"missing_usage", "stream_no_done"}
    fault.api_key = KEY
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        *SUITES,
        f"--vllm-api-key={KEY}",
        "--junitxml=junit.xml",
        "-p",
        "no:randomly",
    )
    doc = _load(pytester.path / "reports" / "results.json")
    assert doc["verdict"] == "fail" and doc["counts"]["failed"] >= 2
    titles = {g["title"]: g for g in doc["failures_by_title"]}
    assert {"Response has no usage", "Stream does not end with [DONE]"} <= set(titles)
    assert titles["Response has no usage"]["count"] >= 2
    failed = next(
        t for t in doc["tests"] if t["failure"] and t["failure"]["title"] == "Response has no usage"
    )
    assert failed["failure"]["curl"].startswith("curl ") and failed["outcome"] == "failed"
    assert doc["target"]["engine"] == "fault" or doc["target"]["model"] == "fault-model"
    assert doc["options"]["api_key_given"] is True
    result.stdout.fnmatch_lines(
        [
            "*= vllm-conformance =*",
            "health *",
            "[[]MEDIUM] Response has no usage: * tests",
            "verdict: FAIL; results in *results.json, *report.html, *metrics.txt",
        ]
    )
    junit = ET.parse(pytester.path / "junit.xml")
    props = {(p.get("name"), p.get("value")) for p in junit.iter("property")}
    assert ("failure_title", "Response has no usage") in props
    everything = (
        result.stdout.str()
        + (pytester.path / "junit.xml").read_text()
        + (pytester.path / "reports" / "results.json").read_text()
    )
    assert KEY not in everything


def test_a_clean_run_passes_with_its_measurements(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_latency.py",
        "--vllm-latency-concurrency=2",
        "--vllm-latency-requests=6",
        "--vllm-latency-warmup=0",
        "--vllm-json=out/r.json",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=3, skipped=2)  # two completion levels, one Responses level
    doc = _load(pytester.path / "out" / "r.json")
    assert doc["verdict"] == "pass" and doc["matrix"]["latency"]["passed"] == 3
    level = next(t for t in doc["tests"] if t["nodeid"].endswith("[c2]"))
    assert level["properties"]["concurrency 2: ttft_p95_ms"] > 0
    assert level["properties"]["concurrency 2: slo e2e_p95_ms"].endswith("vs 5000")
    (figures,) = level["measurements"]  # the typed form the properties are rendered from
    assert figures["kind"] == "latency_level" and figures["name"] == "concurrency 2"
    assert figures["stats"]["ttft_ms"]["p95"] == pytest.approx(
        level["properties"]["concurrency 2: ttft_p95_ms"], abs=1e-3
    )
    assert ["e2e_p95_ms", figures["stats"]["e2e_ms"]["p95"], 5000.0, True] in figures["slo"]
    skipped = [t for t in doc["tests"] if t["outcome"] == "skipped"]
    assert all("no --vllm-embedding-model" in t["skip_reason"] for t in skipped)


def test_none_writes_no_file(pytester: pytest.Pytester, fault: FaultServer) -> None:
    pytester.runpytest(f"--vllm-url={fault.url}", "test_health.py", "--vllm-json=none")
    assert not (pytester.path / "reports" / "results.json").exists()


def test_xdist_workers_results_reach_the_file(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    result = pytester.runpytest_subprocess(
        f"--vllm-url={fault.url}", "test_health.py", "test_streaming.py", "-n", "2", "-p", "xdist"
    )
    outcomes = result.parseoutcomes()
    doc = _load(pytester.path / "reports" / "results.json")
    assert len(doc["tests"]) == outcomes["passed"] + outcomes.get("skipped", 0)
    assert set(doc["matrix"]) == {"health", "streaming"}
