"""The run's measurements as OpenMetrics, written to a file and pushed to a Pushgateway.

Every series carries the labels a central metrics pipeline groups by: ``engine``,
``engine_version``, ``model_id``, ``pool_id`` and ``replica_id`` (the last two from options).
prometheus_client builds the families and writes the text; the push groups by pool and replica
so replicas of one pool do not overwrite each other.

Latency, memory and determinism series come from each test's typed measurements
(:mod:`report.measurements`), read by field, never from a property's name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from pytest_vllm_conformance import untrusted
from pytest_vllm_conformance.perf.latency import LevelFigures
from pytest_vllm_conformance.perf.memory import MemoryGrowth
from pytest_vllm_conformance.report.measurements import load
from pytest_vllm_conformance.workload.determinism import DeterminismVerdict

JOB = "vllm_conformance"


def labels_of(doc: dict[str, Any], pool_id: str, replica_id: str) -> dict[str, str]:
    """The labels every series carries, each a safe single line (server text included)."""
    t = doc["target"]
    labels = {
        "engine": t["engine"] or "",
        "engine_version": t["engine_version"] or "",
        "model_id": t["model"] or "",
        "pool_id": pool_id,
        "replica_id": replica_id,
    }
    return {name: untrusted.line(value) for name, value in labels.items()}


class _Collector:
    """A prometheus_client collector over one results document."""

    def __init__(self, doc: dict[str, Any], labels: dict[str, str]) -> None:
        self.doc, self.labels = doc, labels

    def _family(self, name: str, doc: str, extra: tuple[str, ...] = (), unit: str = "") -> Any:
        from prometheus_client.core import GaugeMetricFamily

        return GaugeMetricFamily(name, doc, labels=[*self.labels, *extra], unit=unit)

    def collect(self) -> Iterator[Any]:
        base = list(self.labels.values())
        doc = self.doc
        tests = self._family("vllm_conformance_tests", "tests by outcome", ("outcome",))
        for outcome, n in doc["counts"].items():
            tests.add_metric([*base, outcome], n)
        verdict = self._family("vllm_conformance_passed", "1 when the run passed")
        verdict.add_metric(base, 1.0 if doc["verdict"] == "pass" else 0.0)
        failures = self._family(
            "vllm_conformance_failures", "failed tests by check title", ("title", "severity")
        )
        for g in doc["failures_by_title"]:
            failures.add_metric([*base, untrusted.line(g["title"]), g["severity"]], g["count"])
        latency = self._family(
            "vllm_conformance_latency_milliseconds",
            "client-side latency",
            ("level", "metric", "stat"),
        )
        rates = self._family(
            "vllm_conformance_level", "throughput and error rate per level", ("level", "measure")
        )
        memory = self._family(
            "vllm_conformance_memory_growth_megabytes_per_hour",
            "server memory slope under load",
            ("bound",),
        )
        distinct = self._family(
            "vllm_conformance_distinct_outputs",
            "distinct greedy outputs in a determinism burst",
            ("test",),
        )
        for t in doc["tests"]:
            for m in load(t.get("measurements") or []):
                if isinstance(m, LevelFigures) and not m.second:  # once per level and labels
                    level = untrusted.line(m.name)
                    for metric, summary in m.stats.items():
                        for stat, value in summary.as_dict().items():
                            if stat != "count" and math.isfinite(value):
                                latency.add_metric(
                                    [*base, level, metric[:-3], stat], round(value, 3)
                                )
                    for what, value in {
                        "error_rate": round(m.error_rate, 4),
                        **{k: round(v, 3) for k, v in m.rates.items()},
                    }.items():
                        rates.add_metric([*base, level, what], value)
                elif isinstance(m, MemoryGrowth):
                    for bound, value in (
                        ("estimate", m.server.slope),
                        ("low", m.server.low),
                        ("high", m.server.high),
                    ):
                        if math.isfinite(value):
                            memory.add_metric([*base, bound], round(value, 2))
                elif isinstance(m, DeterminismVerdict):
                    distinct.add_metric([*base, untrusted.line(t["nodeid"])], m.distinct_outputs)
        yield from (tests, verdict, failures, latency, rates, memory, distinct)


def registry(doc: dict[str, Any], labels: dict[str, str]) -> Any:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(doc, labels))
    return reg


def openmetrics_text(doc: dict[str, Any], labels: dict[str, str]) -> str:
    from prometheus_client.openmetrics.exposition import generate_latest

    text: bytes = generate_latest(registry(doc, labels))  # type: ignore[no-untyped-call]
    return text.decode()


def push(url: str, doc: dict[str, Any], labels: dict[str, str], timeout: float = 10.0) -> None:
    """Replace this pool/replica's group on the Pushgateway; raise OSError with a reason."""
    from prometheus_client import push_to_gateway

    push_to_gateway(
        url,
        job=JOB,
        registry=registry(doc, labels),
        timeout=timeout,
        grouping_key={"pool_id": labels["pool_id"], "replica_id": labels["replica_id"]},
    )
