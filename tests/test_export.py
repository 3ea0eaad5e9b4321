"""OpenMetrics export: the file parses as OpenMetrics, and a real Pushgateway receives it."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from pytest_vllm_conformance.target.local import free_port
from tests.fault_server import FaultServer

LABELS = {"engine", "engine_version", "model_id", "pool_id", "replica_id"}


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's prometheus-pushgateway on a loopback port."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail(
            "prometheus-pushgateway is not installed: the Makefile's setup installs it",
            pytrace=False,
        )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path_factory.mktemp("pushgateway"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("prometheus-pushgateway did not start", pytrace=False)
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_metrics_file_is_openmetrics_with_the_pipeline_labels(
    pytester: pytest.Pytester, fault: FaultServer, pushgateway: str
) -> None:
    fault.faults = {"missing_usage"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_health.py",
        "test_latency.py",
        "--vllm-latency-concurrency=2",
        "--vllm-latency-requests=4",
        "--vllm-latency-warmup=0",
        f"--vllm-pushgateway={pushgateway}",
        "--vllm-pool-id=pool-a",
        "--vllm-replica-id=r1",
        "-p",
        "no:randomly",
    )
    result.stdout.fnmatch_lines([f"metrics pushed to {pushgateway}"])
    text = (pytester.path / "reports" / "metrics.txt").read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}  # type: ignore[no-untyped-call]
    assert {
        "vllm_conformance_tests",
        "vllm_conformance_passed",
        "vllm_conformance_failures",
        "vllm_conformance_latency_milliseconds",
    } <= set(families)
    for family in families.values():
        for sample in family.samples:
            assert set(sample.labels) >= LABELS, sample
            assert sample.labels["pool_id"] == "pool-a" and sample.labels["replica_id"] == "r1"
    failures = families["vllm_conformance_failures"].samples
    assert any(
        s.labels["title"] == "max_tokens=1 canary produced more than one token" for s in failures
    )
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as r:
        pushed = r.read().decode()
    assert "vllm_conformance_passed{" in pushed and 'pool_id="pool-a"' in pushed
    assert 'job="vllm_conformance"' in pushed and 'replica_id="r1"' in pushed


def test_an_unreachable_pushgateway_is_one_clear_line(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    gateway = f"http://127.0.0.1:{free_port()}"
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_health.py",
        f"--vllm-pushgateway={gateway}",
        "--vllm-openmetrics=none",
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"metrics could not push to {gateway}: *Connection refused*"])
    assert "Traceback" not in result.stdout.str()
    assert not (pytester.path / "reports" / "metrics.txt").exists()
