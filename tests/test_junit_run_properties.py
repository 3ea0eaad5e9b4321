"""The run's identity (URL, engine, version, model, profile) in --junitxml, xdist or not."""

from __future__ import annotations

import collections
import xml.etree.ElementTree as ET

import pytest

from tests.fault_server import MODEL, FaultServer

RUN_PROPERTIES = (
    "vllm_url",
    "vllm_engine",
    "vllm_engine_version",
    "vllm_model",
    "vllm_profile",
    "vllm_system_fingerprint",
    "vllm_conformance_version",
)


def _suite_properties(pytester: pytest.Pytester) -> collections.Counter[tuple[str, str]]:
    """(name, value) of every <property> directly under a <testsuite>, counted."""
    root = ET.parse(pytester.path / "junit.xml").getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return collections.Counter(
        (p.get("name", ""), p.get("value", ""))
        for s in suites
        for props in s.findall("properties")
        for p in props.findall("property")
    )


@pytest.mark.parametrize("xdist", [[], ["-n", "2", "-p", "xdist"]], ids=["plain", "xdist"])
def test_every_run_property_is_written_once(
    pytester: pytest.Pytester, fault: FaultServer, xdist: list[str]
) -> None:
    result = pytester.runpytest_subprocess(
        f"--vllm-url={fault.url}", "-m", "health", "--junitxml=junit.xml", *xdist
    )
    assert result.parseoutcomes()["passed"] == 5, result.stdout.str()
    props = _suite_properties(pytester)
    names = collections.Counter(name for name, _ in props.elements())
    assert {name: names[name] for name in RUN_PROPERTIES} == dict.fromkeys(RUN_PROPERTIES, 1)
    assert props[("vllm_url", fault.url)] == 1
    assert props[("vllm_model", MODEL)] == 1
    assert props[("vllm_engine_version", "fault-0.1")] == 1
    assert props[("vllm_profile", "vllm")] == 1  # the fault server speaks vLLM's /version


def test_no_target_writes_no_run_property(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest_subprocess("--junitxml=junit.xml").assert_outcomes(passed=1)
    assert not _suite_properties(pytester)
