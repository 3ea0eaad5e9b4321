"""Typed measurements: every kind survives JSON, and every chart is drawn from them.

A renamed field or property must fail here, not leave a chart silently empty: the HTML
report and the OpenMetrics export of a real run (fault server, pytest-xdist workers) are
checked for the exact figures the measurements carry.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

import pytest
from jsonschema import Draft202012Validator
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from pytest_vllm_conformance.perf.latency import LevelFigures
from pytest_vllm_conformance.perf.memory import MemoryGrowth
from pytest_vllm_conformance.report import measurements
from pytest_vllm_conformance.report.results import SCHEMA_FILE
from pytest_vllm_conformance.workload.determinism import DeterminismVerdict
from tests.fault_server import FaultServer


def _example(hint: Any, finite: bool) -> Any:
    """A value of the annotated type: every field filled, or (``finite`` off) every float
    NaN and every optional field None, the forms JSON has to carry as null."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if not finite and type(None) in args:
            return None
        return _example(next(a for a in args if a is not type(None)), finite)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(
            **{
                f.name: _example(hints[f.name], finite)  # type: ignore[operator]
                for f in dataclasses.fields(hint)
                if f.init
            }
        )
    examples: dict[Any, Any] = {
        float: 1.25 if finite else math.nan,
        bool: True,
        int: 3,
        str: "concurrency 2",
    }
    if hint in examples:
        return examples[hint]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return (_example(args[0], finite),) * 2
        return tuple(_example(a, finite) for a in args)
    if origin is dict:
        return {"ttft_ms": _example(args[1], finite)}
    if origin is list:
        return [_example(args[0], finite)]
    raise AssertionError(f"no example for {hint!r}: teach _example this type")


@pytest.mark.parametrize("kind", sorted(measurements.kinds()))
@pytest.mark.parametrize("finite", [True, False], ids=["filled", "nan-and-none"])
def test_every_kind_round_trips_through_strict_json(kind: str, finite: bool) -> None:
    cls = measurements.kinds()[kind]
    value = _example(cls, finite)
    data = measurements.to_json(value)
    text = json.dumps(data, allow_nan=False)  # strict JSON: NaN went out as null
    back = measurements.from_json(json.loads(text))
    assert type(back) is cls and measurements.kind_of(back) == kind
    assert measurements.to_json(back) == data
    if finite:
        assert back == value and back.properties() == value.properties()
    else:
        assert "null" in text or not any(isinstance(v, float) for v in dataclasses.astuple(value))
        back.properties()  # renders with NaN and None too


def test_the_bundled_kinds_are_registered() -> None:
    assert {
        "latency_level",
        "memory_growth",
        "determinism_burst",
        "logprob_spelling",
        "idle_gauge",
    } <= set(measurements.kinds())


def test_a_kind_is_a_frozen_dataclass_with_one_owner() -> None:
    with pytest.raises(TypeError, match="frozen dataclass"):

        @measurements.measurement("not_frozen")
        @dataclass
        class NotFrozen:
            value: int

    with pytest.raises(ValueError, match="taken"):

        @measurements.measurement("latency_level")
        @dataclass(frozen=True)
        class Impostor:
            value: int


def test_a_field_named_kind_is_refused() -> None:
    """``kind`` names the class (the JSON key and the decorator's class attribute); a field
    of that name would be overwritten on the class and clash in JSON."""
    with pytest.raises(TypeError, match="no field named 'kind'"):

        @measurements.measurement("has_a_kind_field")
        @dataclass(frozen=True)
        class HasKind:
            kind: str
            value: int

    assert "has_a_kind_field" not in measurements.kinds()


def test_unknown_kinds_are_left_out_when_read_back() -> None:
    verdict = DeterminismVerdict(5, 1, logprob_drift_max=0.0)
    read = measurements.load(
        [{"kind": "from_a_newer_harness", "x": 1}, measurements.to_json(verdict)]
    )
    assert read == [verdict]


def test_an_item_that_does_not_rebuild_is_left_out() -> None:
    """A retyped or hand-edited field costs that item only, never the summary's crash."""
    verdict = DeterminismVerdict(5, 1, logprob_drift_max=0.0)
    broken = {**measurements.to_json(verdict), "distinct_outputs": {"not": "an int"}}
    missing = {"kind": measurements.kind_of(verdict)}
    read = measurements.load([broken, missing, measurements.to_json(verdict)])
    assert read == [verdict]


def _pytester_run(pytester: pytest.Pytester, fault: FaultServer) -> dict[str, Any]:
    fault.faults = {"diverge_sometimes"}
    fault.divergence_rate = 0.5
    pytester.runpytest_subprocess(
        f"--vllm-url={fault.url}",
        "test_latency.py",
        "test_memory.py",
        "test_determinism.py::test_a_burst_of_identical_requests_gives_one_output",
        "--vllm-determinism-requests=4",
        "--vllm-latency-concurrency=2",
        "--vllm-latency-requests=6",
        "--vllm-latency-warmup=0",
        "--vllm-memory-duration=5s",
        "--vllm-memory-max-growth=1000",
        "--vllm-latency-harness-tolerance=50",
        "--vllm-json=out/r.json",
        "--vllm-html=out/r.html",
        "--vllm-openmetrics=out/m.txt",
        "-n",
        "2",
        "-p",
        "xdist",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
    )
    doc: dict[str, Any] = json.loads((pytester.path / "out" / "r.json").read_text())
    Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(doc)
    return doc


def test_reports_show_the_figures_the_workers_measured(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    doc = _pytester_run(pytester, fault)
    found = [(t, m) for t in doc["tests"] for m in measurements.load(t["measurements"])]
    levels = [m for _, m in found if isinstance(m, LevelFigures)]
    memory = [m for _, m in found if isinstance(m, MemoryGrowth)]
    bursts = [m for _, m in found if isinstance(m, DeterminismVerdict)]
    kinds = [measurements.kind_of(m) for _, m in found]
    assert levels and len(memory) == 1 and len(bursts) >= 4, kinds
    assert any(b.distinct_outputs > 1 and b.divergence_position for b in bursts)

    for test, m in found:  # the JUnit/JSON properties are rendered from the objects
        props = test["properties"]
        for name, value in m.properties():
            expected = value if not isinstance(value, float) or math.isfinite(value) else None
            assert props[name] == expected, (test["nodeid"], name)

    level = next(lv for lv in levels if lv.name == "concurrency 2")
    ttft_p95 = round(level.stats["ttft_ms"].p95, 3)
    slope = round(memory[0].server.slope, 2)

    text = (pytester.path / "out" / "m.txt").read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}  # type: ignore[no-untyped-call]
    latency = {
        (s.labels["level"], s.labels["metric"], s.labels["stat"]): s.value
        for s in families["vllm_conformance_latency_milliseconds"].samples
    }
    assert latency[("concurrency 2", "ttft", "p95")] == pytest.approx(ttft_p95)
    rates = {
        (s.labels["level"], s.labels["measure"]): s.value
        for s in families["vllm_conformance_level"].samples
    }
    assert rates[("concurrency 2", "requests_per_s")] == pytest.approx(
        round(level.rates["requests_per_s"], 3)
    )
    growth = {
        s.labels["bound"]: s.value
        for s in families["vllm_conformance_memory_growth_megabytes_per_hour"].samples
    }
    if math.isfinite(memory[0].server.slope):
        assert growth["estimate"] == pytest.approx(slope)
    distinct = sorted(s.value for s in families["vllm_conformance_distinct_outputs"].samples)
    assert distinct == sorted(float(b.distinct_outputs) for b in bursts)

    html = (pytester.path / "out" / "r.html").read_text()
    assert "<h3>concurrency 2</h3>" in html
    row = re.search(r"<tr><td>ttft</td>(.*?)</tr>", html, re.S)
    assert row is not None and f">{ttft_p95}<" in row[1]
    shown = slope if math.isfinite(memory[0].server.slope) else "-"
    assert "Memory under load" in html and f"slope {shown} MB/h" in html
    assert "<h2>Determinism</h2>" in html
    for b in bursts:
        if b.divergence_position:
            assert f">{b.divergence_position}<" in html
