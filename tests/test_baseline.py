"""--vllm-baseline and ``vllm-conformance compare``, through the fault server.

A clean run is recorded as the baseline (greedy answers of the determinism prompts, a
concurrency-1 latency level with its raw samples, a compliance test), then compared against:
the same server (passes), a server whose greedy answers all changed alike (the within-run
determinism suite still passes there; the baseline suite fails on outputs), and a server 30 ms
slower per generation (fails on latency at concurrency 1). Each failure names what changed
and by how much.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy  # noqa: F401 - loaded once here: pytester's runs would reload it (a warning)
import pytest
from jsonschema import Draft202012Validator

from pytest_vllm_conformance.cli.app import main
from pytest_vllm_conformance.perf.latency import LevelFigures, LevelSamples, Sample
from pytest_vllm_conformance.report import compare
from pytest_vllm_conformance.report.results import SCHEMA_FILE
from tests.fault_server import FaultServer

LEVEL = ["--vllm-latency-concurrency=1", "--vllm-latency-requests=24", "--vllm-latency-warmup=2"]
QUICK = [*LEVEL, "--vllm-latency-max-tokens=16", "--vllm-determinism-requests=4"]
RECORD = [
    "test_determinism.py::test_a_burst_of_identical_requests_gives_one_output",
    "test_latency.py::test_streamed_completions_at_each_concurrency_level",
    "test_compliance.py::test_completions_match_the_schema",
]
OUTPUT_TEST = "test_baseline.py::test_greedy_answer_equals_the_baseline"
LATENCY_TEST = "test_baseline.py::test_latency_has_not_regressed"


def results_errors(doc: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    return [e.message for e in validator.iter_errors(doc)]


def record(pytester: pytest.Pytester, fault: FaultServer, name: str, *args: str) -> Path:
    """A run of the recorded tests (and ``args``) against the fault server as it is now."""
    out = pytester.path / name
    pytester.runpytest(
        f"--vllm-url={fault.url}", *RECORD, *QUICK, f"--vllm-json={out}", "-p", "no:randomly", *args
    )
    return out


def recorded(path: Path) -> int:
    """How many tests the recorded run ran (the baseline runs them again)."""
    return len(json.loads(path.read_text())["tests"])


@pytest.fixture
def baseline(pytester: pytest.Pytester, fault: FaultServer) -> Path:
    path = record(pytester, fault, "baseline.json")
    doc = json.loads(path.read_text())
    assert doc["verdict"] == "pass", doc["failures_by_title"]
    return path


def run_baseline(
    pytester: pytest.Pytester,
    fault: FaultServer,
    path: Path,
    *args: str,
    plugins: list[object] | None = None,
) -> pytest.RunResult:
    """The recorded tests again and the baseline suite: the latency suite measures its level
    at the same place in the run as the baseline's, and the baseline suite judges that."""
    return pytester.runpytest(
        f"--vllm-url={fault.url}",
        *RECORD,
        "test_baseline.py",
        *QUICK,
        f"--vllm-baseline={path}",
        "--vllm-json=now.json",
        "-p",
        "no:randomly",
        *args,
        plugins=plugins or [],
    )


def test_the_results_keep_what_a_comparison_needs(baseline: Path) -> None:
    doc = json.loads(baseline.read_text())
    assert results_errors(doc) == []
    assert doc["target"]["engine"] == "vllm" and doc["target"]["model"]
    outputs = compare.outputs_of(doc)
    assert set(outputs) == {"short", "question", "list", "code", "long"}
    assert all(o.text and o.token_ids for o in outputs.values())
    (level,) = compare.levels_of(doc).values()
    assert level.samples is not None and level.samples.kept == level.samples.seen == 24
    assert len(level.samples.metric("ttft")) == len(level.samples.metric("e2e")) == 24


def test_the_same_server_passes(
    pytester: pytest.Pytester, fault: FaultServer, baseline: Path
) -> None:
    result = run_baseline(pytester, fault, baseline)
    result.assert_outcomes(passed=recorded(baseline) + 6)
    doc = json.loads((pytester.path / "now.json").read_text())
    assert results_errors(doc) == []
    assert doc["comparison"]["regressed"] is False
    assert {r["verdict"] for r in doc["comparison"]["outputs"]} == {"same"}
    result.stdout.fnmatch_lines(["baseline *: 0 regressions; tests: 0 passed there and fail now*"])
    # nothing regressed, so nothing was measured a second time (auto): no cost
    assert all(again is None for _, again in compare.measured_twice(doc).values())


def test_greedy_answers_changed_alike_fail_on_outputs(
    pytester: pytest.Pytester, fault: FaultServer, baseline: Path
) -> None:
    fault.faults = {"greedy_changed"}
    determinism = pytester.runpytest(
        f"--vllm-url={fault.url}", RECORD[0], "--vllm-determinism-requests=4", "-p", "no:randomly"
    )
    determinism.assert_outcomes(passed=5)  # consistent within the run
    result = run_baseline(pytester, fault, baseline)
    result.assert_outcomes(passed=recorded(baseline) + 1, failed=5)  # latency is unchanged
    result.stdout.fnmatch_lines(
        [
            "*The greedy answer to 'short' changed from the baseline's*",
            "*first divergence: text differs at character *: old *, new *",
            "*baseline server: vllm fault-0.1, model fault-model*",
            "*this server:     vllm fault-0.1, model fault-model*",
        ]
    )
    accepted = run_baseline(pytester, fault, baseline, "--vllm-baseline-accept=outputs")
    accepted.assert_outcomes(passed=recorded(baseline) + 6)


def test_a_server_30_ms_slower_fails_on_latency_at_concurrency_1(
    pytester: pytest.Pytester, fault: FaultServer, baseline: Path
) -> None:
    fault.faults = {"slow_30ms"}
    result = run_baseline(pytester, fault, baseline)
    result.assert_outcomes(passed=recorded(baseline) + 5, failed=1)  # within its SLO, but slower
    result.stdout.fnmatch_lines(
        [
            "*Latency regressed from the baseline at concurrency 1*",
            "*concurrency 1 ttft_p50: * ms, was * ms (x*, +* ms; 95% interval x* to x*;*"
            "; measured again later in the run: x*",
            "*slower beyond the tolerance in both measurements of the level, the second*",
        ]
    )
    doc = json.loads((pytester.path / "now.json").read_text())
    worse = [r for r in doc["comparison"]["latency"] if r["verdict"] == "regression"]
    assert {"ttft_p50", "e2e_p50"} <= {r["key"] for r in worse}
    assert all(r["new_ms"] - r["old_ms"] > 25 for r in worse if r["key"].startswith("ttft"))


class PassesWhenTheBaselineSuiteStarts:
    """A slowdown of the host that passes: the fault server is slow while the latency suite
    measures, and itself again by the time the baseline suite measures a second time."""

    def __init__(self, fault: FaultServer) -> None:
        self.fault = fault

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if item.path.name == "test_baseline.py":
            self.fault.faults = set()


def test_a_slowdown_the_second_measurement_does_not_repeat_is_shown_not_failed(
    pytester: pytest.Pytester, fault: FaultServer, baseline: Path
) -> None:
    fault.faults = {"slow_30ms"}
    passing = PassesWhenTheBaselineSuiteStarts(fault)
    result = run_baseline(pytester, fault, baseline, plugins=[passing])
    result.assert_outcomes(passed=recorded(baseline) + 6)
    result.stdout.fnmatch_lines(
        [
            "*slowdowns not confirmed by a second measurement: *",
            "*not confirmed: concurrency 1 ttft_p50: * ms, was * ms (x*; NOT CONFIRMED, "
            "measured again later in the run: x*",
        ]
    )
    doc = json.loads((pytester.path / "now.json").read_text())
    assert not results_errors(doc)
    rows = {r["key"]: r for r in doc["comparison"]["latency"]}
    assert rows["ttft_p50"]["verdict"] == "not confirmed" and rows["ttft_p50"]["ratio"] > 2
    assert rows["ttft_p50"]["again_ratio"] < 1.5
    # the first measurement alone (--vllm-baseline-confirm=off) calls it a regression
    fault.faults = {"slow_30ms"}
    alone = run_baseline(
        pytester, fault, baseline, "--vllm-baseline-confirm=off", plugins=[passing]
    )
    alone.assert_outcomes(passed=recorded(baseline) + 5, failed=1)
    alone.stdout.fnmatch_lines(
        ["*not confirmed by a second measurement: --vllm-baseline-confirm=off*"]
    )


def test_always_measures_every_level_twice(
    pytester: pytest.Pytester, fault: FaultServer, baseline: Path
) -> None:
    result = run_baseline(pytester, fault, baseline, "--vllm-baseline-confirm=always")
    result.assert_outcomes(passed=recorded(baseline) + 6)
    doc = json.loads((pytester.path / "now.json").read_text())
    _, again = compare.measured_twice(doc)["concurrency 1"]
    assert again is not None and again.samples is not None and again.samples.kept == 24
    judged = [r for r in doc["comparison"]["latency"] if r["verdict"] != "not compared"]
    assert judged and all(r["again_ratio"] is not None for r in judged)
    assert again.second and not compare.levels_of(doc)["concurrency 1"].second
    # the exports show a level's figures once: OpenMetrics repeats no label set
    exported = (pytester.path / "reports" / "metrics.txt").read_text().splitlines()
    samples = [line.rsplit(" ", 1)[0] for line in exported if line and line[0] != "#"]
    assert samples and len(samples) == len(set(samples))


def test_conformance_regressions_and_fixes_are_listed(
    pytester: pytest.Pytester, fault: FaultServer, baseline: Path
) -> None:
    fault.faults = {"missing_usage"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        RECORD[2],
        f"--vllm-baseline={baseline}",
        "--vllm-json=now.json",
        "--vllm-html=now.html",
        "-p",
        "no:randomly",
    )
    result.stdout.fnmatch_lines(
        [
            "baseline *: * regressions; tests: * passed there and fail now, 0 fixed",
            "  regression: *test_completions_match_the_schema* (passed -> failed)",
        ]
    )
    doc = json.loads((pytester.path / "now.json").read_text())
    assert doc["comparison"]["tests"] and all(
        t["kind"] == "regression" for t in doc["comparison"]["tests"]
    )
    html = (pytester.path / "now.html").read_text()
    assert "Compared with the baseline" in html and "passed" in html
    # and the reverse: the failing run as the baseline of a clean one lists fixes
    fault.faults = set()
    fixed = compare.conformance(doc, json.loads(baseline.read_text()))
    assert fixed and {c.kind for c in fixed} == {"fix"}


def test_compare_prints_the_table_and_exits_on_a_regression(
    pytester: pytest.Pytester,
    fault: FaultServer,
    baseline: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compare", str(baseline), str(baseline)]) == 0
    same = capsys.readouterr().out
    assert "verdict: no regression" in same and "concurrency 1" in same
    fault.faults = {"greedy_changed", "slow_30ms"}
    changed = record(pytester, fault, "changed.json")
    html = pytester.path / "cmp.html"
    assert main(["compare", str(baseline), str(changed), f"--html={html}"]) == 1
    table = capsys.readouterr().out
    assert "CHANGED      short: text differs at character" in table
    assert "REGRESSION" in table and "verdict: REGRESSION" in table
    assert "Compared with the baseline" in html.read_text()
    assert main(["compare", str(baseline), str(changed), "--accept=outputs,latency"]) == 0
    capsys.readouterr()
    assert main(["compare", str(baseline), str(pytester.path / "missing.json")]) == 2
    assert "not a readable results file" in capsys.readouterr().err


def test_a_bad_baseline_is_one_usage_error(pytester: pytest.Pytester, fault: FaultServer) -> None:
    (pytester.path / "other.json").write_text('{"schema": "something/else"}')
    for given, says in (
        ("nope.json", "must name a results JSON file or a bundle"),
        ("other.json", "is not a pytest-vllm-conformance results file"),
        (".", "is a folder without results.json"),
    ):
        result = pytester.runpytest(f"--vllm-url={fault.url}", f"--vllm-baseline={given}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: --vllm-baseline*{says}*"])
    result = pytester.runpytest(f"--vllm-url={fault.url}", "--vllm-baseline-tolerance=ttft=5")
    result.stderr.fnmatch_lines(["ERROR: --vllm-baseline-tolerance: 'ttft=5' is not KEY=PERCENT*"])


def test_without_a_baseline_the_suite_skips(pytester: pytest.Pytester, fault: FaultServer) -> None:
    result = pytester.runpytest(f"--vllm-url={fault.url}", "test_baseline.py", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*no --vllm-baseline given: nothing to compare with*"])


# -- the statistics, without a server ------------------------------------------------------------
def _level(ttft: list[float], name: str = "concurrency 1") -> LevelFigures:
    samples = [Sample(True, ttft_ms=t, e2e_ms=t + 100, itl_ms=(1.0, 1.0)) for t in ttft]
    figures = LevelFigures(name, len(ttft), 0.0, {}, {}, 0, 0, 0)
    return LevelFigures(**{**figures.__dict__, "samples": LevelSamples.of(samples)})


def test_samples_are_capped_by_a_seeded_reservoir() -> None:
    many = [Sample(True, ttft_ms=float(i), e2e_ms=float(i), itl_ms=(0.5, 1.5)) for i in range(50)]
    kept = LevelSamples.of(many, cap=10)
    assert (kept.seen, kept.kept) == (50, 10)
    assert kept == LevelSamples.of(many, cap=10)  # the same draw every time
    assert list(kept.ttft_ms) == sorted(kept.ttft_ms)  # in the level's order
    assert kept.itl_mean_ms == (1.0,) * 10
    assert math.isnan(LevelSamples.of([Sample(True, e2e_ms=3.0)]).itl_mean_ms[0])


def test_a_shift_beyond_the_tolerance_is_a_regression_and_noise_is_not() -> None:
    import random

    rng = random.Random(3)
    old = [rng.gauss(100, 10) for _ in range(200)]
    same = [rng.gauss(100, 10) for _ in range(200)]
    slower = [x + 60 for x in same]
    assert {r.verdict for r in compare.level_rows(_level(old), _level(same))} == {"same"}
    rows = {r.key: r for r in compare.level_rows(_level(old), _level(slower))}
    assert rows["ttft_p50"].verdict == "regression" and rows["ttft_p50"].low > 1.4
    faster = compare.level_rows(_level(slower), _level(old))
    assert {r.key for r in faster if r.verdict == "improvement"} >= {"ttft_p50"}
    within = compare.level_rows(_level(old), _level([x + 5 for x in old]))
    assert all(r.verdict == "same" for r in within)  # +5%: inside the tolerance


def test_an_older_baseline_without_samples_is_not_compared() -> None:
    old = LevelFigures("concurrency 1", 3, 0.0, {}, {}, 0, 0, 0)
    (row,) = compare.level_rows(old, _level([1.0] * 10))
    assert row.verdict == "not compared" and "older than issue 18" in row.note


def _doc(tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": "pytest-vllm-conformance/results/1", "target": {}, "tests": tests}


def test_outcomes_moving_are_regressions_or_fixes() -> None:
    old = _doc([{"nodeid": "a", "outcome": "passed"}, {"nodeid": "b", "outcome": "failed"}])
    new = _doc([{"nodeid": "a", "outcome": "error"}, {"nodeid": "b", "outcome": "passed"}])
    found = compare.compare(old, new)
    assert [(t.nodeid, t.kind) for t in found.tests] == [("a", "regression"), ("b", "fix")]
    assert found.regressed and "test regressed: a (passed -> error)" in found.regressions


# -- review findings: levels chosen explicitly, like with like, n, bad files, lost features -----
def _test(nodeid: str, suite: str, outcome: str = "passed", **more: Any) -> dict[str, Any]:
    return {"nodeid": nodeid, "suite": suite, "outcome": outcome, **more}


def _with_level(level: LevelFigures) -> list[dict[str, Any]]:
    from pytest_vllm_conformance.report.measurements import to_json

    return [to_json(level)]


def test_the_baseline_marker_is_exclusive() -> None:
    from pytest_vllm_conformance.plugin import EXCLUSIVE_MARKERS

    assert "baseline" in EXCLUSIVE_MARKERS


def _second(level: LevelFigures) -> LevelFigures:
    return dataclasses.replace(level, second=True)


def test_each_measurement_is_paired_by_its_role_not_its_order() -> None:
    own, replayed, again = _level([10.0] * 30), _level([99.0] * 30), _level([50.0] * 30)
    tests = [
        _test("::replay[c1]", "baseline", measurements=_with_level(_second(again))),
        _test("::latency[c1]", "latency", measurements=_with_level(own)),
    ]
    for order in (tests, tests[::-1]):  # whatever order the reports came in
        doc = _doc(order)
        assert compare.levels_of(doc)["concurrency 1"] == own  # never a second as baseline
        assert compare.measured_twice(doc)["concurrency 1"] == (own, _second(again))
        (row, *_) = compare.compare(doc, doc).latency
        assert row.old_ms == row.new_ms == 10.0 and row.verdict == "same"
        assert row.again_ratio == pytest.approx(5.0)  # shown, and no verdict of its own
    # what the baseline suite judged when it measured the level itself (another xdist worker
    # ran the latency suite, or an older baseline without places): its measurement, unflagged
    judged = _doc([*tests, _test("::replay[c1]", "baseline", measurements=_with_level(replayed))])
    assert compare.measured_twice(judged)["concurrency 1"] == (replayed, _second(again))
    assert compare.levels_of(judged)["concurrency 1"] == own
    only = _doc([_test("::replay[c1]", "baseline", measurements=_with_level(replayed))])
    assert compare.measured_twice(only)["concurrency 1"] == (replayed, None)


def _unusable(level: LevelFigures, how: str) -> LevelFigures:
    if how == "failed":
        return dataclasses.replace(level, error_rate=0.25)
    return dataclasses.replace(level, harness="concurrency 1: the harness was client-limited")


@pytest.mark.parametrize(
    ("second", "verdict", "says"),
    [
        (99.0, "regression", "measured again later in the run: x"),
        (16.0, "regression", "measured again later in the run: x"),  # x1.6: beyond +50%
        (10.5, "not confirmed", "NOT CONFIRMED"),
        (None, "regression", "regressed on one measurement, with no second to confirm it"),
        ("few", "regression", "the second measurement judged nothing (too few requests"),
        ("failed", "regression", "the second measurement is unusable (25% of its requests"),
        ("limited", "regression", "the second measurement is unusable (concurrency 1: the"),
    ],
    ids=["slower-twice", "beyond-again", "slower-once", "once", "few", "failed", "limited"],
)
def test_a_slowdown_stands_unless_the_second_measurement_is_within_the_tolerance(
    second: float | str | None, verdict: str, says: str
) -> None:
    old = _doc([_test("::latency[c1]", "latency", measurements=_with_level(_level([10.0] * 30)))])
    tests = [_test("::latency[c1]", "latency", measurements=_with_level(_level([99.0] * 30)))]
    if isinstance(second, float):
        again = _level([second] * 30)
    elif second == "few":
        again = _level([99.0] * 5)
    elif second is not None:
        again = _unusable(_level([10.0] * 30), second)
    if second is not None:
        tests.append(_test("::replay[c1]", "baseline", measurements=_with_level(_second(again))))
    found = compare.compare(old, _doc(tests))
    assert {r.verdict for r in found.latency if r.key == "ttft_p50"} == {verdict}
    assert found.regressed == (verdict == "regression")
    assert bool(found.not_confirmed) >= (verdict == "not confirmed")
    said = found.table() + " ".join(r.sentence() + r.note for r in found.latency)
    assert says in said
    head = next(line for line in found.table().splitlines() if line.strip().startswith("level"))
    assert "again" in head  # the table's column
    assert comparison_errors(found) == []


def test_an_accepted_slowdown_is_confirmed_or_withdrawn_like_a_regression() -> None:
    old, slow = _level([10.0] * 30), _level([99.0] * 30)
    rows = compare.judged_level(old, slow, _second(_level([10.2] * 30)), accept=["latency"])
    assert {r.verdict for r in rows if r.key == "ttft_p50"} == {"not confirmed"}
    rows = compare.judged_level(old, slow, _second(slow), accept=["latency"])
    assert {r.verdict for r in rows if r.key == "ttft_p50"} == {"accepted"}


def test_too_few_requests_leave_a_percentile_not_compared() -> None:
    few = compare.min_requests(50) - 1
    rows = compare.level_rows(_level([10.0] * few), _level([50.0] * few))
    assert {r.verdict for r in rows} == {"not compared"}
    assert "too few requests" in rows[0].note and f"{few} on a side" in rows[0].note
    between = compare.min_requests(50) + 1
    assert between < compare.min_requests(95)
    rows = compare.level_rows(_level([10.0] * between), _level([50.0] * between))
    verdicts = {r.key: r.verdict for r in rows}
    assert verdicts["ttft_p50"] == "regression" and verdicts["ttft_p95"] == "not compared"


def test_levels_of_other_requests_are_not_compared() -> None:
    from dataclasses import replace

    from pytest_vllm_conformance.perf.latency import LevelWorkload

    base = _level([10.0] * 50)
    old = replace(base, workload=LevelWorkload.of(100, ["a", "b"]))
    for workload, says in (
        (LevelWorkload.of(16, ["a", "b"]), "max_tokens 100 vs 16"),
        (LevelWorkload.of(100, ["a", "c"]), "another prompt set"),
    ):
        (row,) = compare.level_rows(old, replace(_level([50.0] * 50), workload=workload))
        assert row.verdict == "not compared" and says in row.note
    rows = compare.level_rows(old, replace(_level([10.0] * 50), workload=old.workload))
    assert {r.verdict for r in rows} == {"same"}
    assert old.workload is not None
    here, there = replace(old.workload, place="a1"), replace(old.workload, place="b2")
    (row,) = compare.level_rows(
        replace(old, workload=here), replace(_level([50.0] * 50), workload=there)
    )
    assert row.verdict == "not compared" and "another place in its run" in row.note
    rows = compare.level_rows(
        replace(old, workload=here), replace(_level([50.0] * 50), workload=here)
    )
    assert "regression" in {r.verdict for r in rows}  # the same place: judged
    unrecorded = compare.level_rows(base, replace(_level([10.0] * 50), workload=old.workload))
    assert all("did not record" in r.note for r in unrecorded)
    assert old.workload is not None and old.workload.replayable
    assert not replace(old.workload, prompts=("a", "b [cut]")).replayable


def test_a_level_measured_elsewhere_is_not_measured_again_nor_passed(
    pytester: pytest.Pytester, fault: FaultServer, baseline: Path
) -> None:
    fault.faults = {"slow_30ms"}
    alone = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_baseline.py::test_latency_has_not_regressed",
        *QUICK,
        f"--vllm-baseline={baseline}",
        "--vllm-json=now.json",
        "-rs",
    )
    alone.assert_outcomes(skipped=1)  # 30 ms slower, but nothing like the baseline to judge
    alone.stdout.fnmatch_lines(["*not compared: this run did not measure it where the baseline*"])
    doc = json.loads((pytester.path / "now.json").read_text())
    assert compare.levels_of(doc) == {}  # skipped at once, no load sent
    assert "not measured in this run" in " ".join(doc["comparison"]["notes"])
    # the latency suite ran, but with other requests: judged on nothing, so skipped
    fault.faults = set()
    other = run_baseline(pytester, fault, baseline, "--vllm-latency-max-tokens=8", "-rs")
    other.stdout.fnmatch_lines(["*not compared: the requests differ: max_tokens 16 vs 8*"])
    doc = json.loads((pytester.path / "now.json").read_text())
    assert doc["comparison"]["levels_not_compared"] == ["concurrency 1"]
    other.stdout.fnmatch_lines(["baseline *; latency levels not compared: 1"])


def test_a_baseline_without_places_is_measured_again_with_its_requests(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    mine = pytester.path / "mine.jsonl"
    mine.write_text('{"prompt": "Tell me about ships."}\n{"prompt": "Count to ten."}\n')
    old = record(pytester, fault, "old.json", f"--vllm-prompts={mine}")
    (recorded,) = compare.levels_of(json.loads(old.read_text())).values()
    assert recorded.workload is not None and recorded.workload.max_tokens == 16
    assert recorded.workload.prompts == ("Tell me about ships.", "Count to ten.")
    # a file written before places were recorded: the level is measured again, compared by name
    doc = json.loads(old.read_text())
    for test in doc["tests"]:
        for m in test.get("measurements") or []:
            if m.get("workload"):
                del m["workload"]["place"]
    old.write_text(json.dumps(doc))
    fault.faults = {"slow_30ms"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_baseline.py::test_latency_has_not_regressed",
        *QUICK,
        "--vllm-latency-max-tokens=8",  # this run's; the replay uses the baseline's
        f"--vllm-baseline={old}",
        "--vllm-json=now.json",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Latency regressed from the baseline at concurrency 1*"])
    now = json.loads((pytester.path / "now.json").read_text())
    replayed, _ = compare.measured_twice(now)["concurrency 1"]
    assert replayed.workload is not None
    assert replayed.workload.prompts == recorded.workload.prompts
    assert replayed.workload.max_tokens == 16
    assert "did not record the level's place" in " ".join(
        r["note"] for r in now["comparison"]["latency"]
    )


DEEP_DOCUMENT = (
    '{"schema": "pytest-vllm-conformance/results/1", "tests": [' + "[" * 500 + "]" * 500 + "]}"
)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"schema": "pytest-vllm-conformance/results/1", "tests": 5}', "not a usable results"),
        ("[" * 100_000 + "]" * 100_000, "not a readable results file (RecursionError)"),
        (DEEP_DOCUMENT, "nested more than 64 deep"),
        ('{"schema": "pytest-vllm-conformance/results/2"}', "not a pytest-vllm-conformance"),
    ],
    ids=["sparse", "deep-json", "deep-document", "another-schema"],
)
def test_an_unusable_document_is_one_sentence_and_exit_2(
    pytester: pytest.Pytester,
    fault: FaultServer,
    capsys: pytest.CaptureFixture[str],
    content: str,
    says: str,
) -> None:
    bad = pytester.path / "bad.json"
    bad.write_text(content)
    for argv in (["compare", str(bad), str(bad)], ["compare", str(bad), str(bad), "--html=x.html"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1 and "Traceback" not in err
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"--vllm-baseline={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --vllm-baseline: *{says}*"])


def test_compare_html_of_a_minimal_valid_document(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    doc: dict[str, Any] = {
        "schema": "pytest-vllm-conformance/results/1",
        "harness": {"name": "pytest-vllm-conformance", "version": "0"},
        "target": dict.fromkeys(("url", "engine", "engine_version", "model", "system_fingerprint")),
        "profile": None,
        "options": {},
        "started": "-",
        "duration_s": 0,
        "verdict": "pass",
        "counts": {"passed": 0, "failed": 0, "skipped": 0, "error": 0},
        "matrix": {},
        "failures_by_title": [],
        "tests": [],
    }
    assert results_errors(doc) == []
    path = pytester.path / "min.json"
    path.write_text(json.dumps(doc))
    html = pytester.path / "min.html"
    assert main(["compare", str(path), str(path), f"--html={html}"]) == 0
    assert "Compared with the baseline" in html.read_text()
    capsys.readouterr()


def test_a_lost_feature_is_a_capability_regression() -> None:
    old = _doc(
        [
            _test("::tools[auto]", "tools"),
            _test("::tools[required]", "tools"),
            _test("::schema[a]", "compliance"),
            _test("::replay[c1]", "baseline"),
        ]
    )
    new = _doc(
        [
            _test("::tools[auto]", "tools", "skipped", not_supported="tool calling"),
            _test("::tools[named]", "tools"),
        ]
    )
    found = compare.compare(old, new)
    changes = {(t.nodeid, t.new, t.kind) for t in found.tests}
    assert changes == {
        ("::tools[auto]", "not supported: tool calling", "capability lost"),
        ("::tools[required]", "not run", "capability lost"),
    }  # compliance did not run at all, and the baseline suite's own tests are its file's
    assert found.regressed
    assert "capability lost: ::tools[auto] (passed -> not supported: tool calling)" in (
        found.regressions
    )
    assert "LOST       ::tools[required] (passed -> not run)" in found.table()
    assert {t["kind"] for t in found.as_json()["tests"]} == {"capability lost"}
    assert comparison_errors(found) == []  # a results file carrying it stays a valid baseline


def comparison_errors(found: compare.Comparison) -> list[str]:
    """The comparison as a results document's ``comparison``, checked against the schema."""
    schema = json.loads(SCHEMA_FILE.read_text())
    part = {**schema["properties"]["comparison"], "$defs": schema.get("$defs", {})}
    doc = {"baseline": "old.json", **found.as_json(), "table": found.table()}
    return [e.message for e in Draft202012Validator(part).iter_errors(doc)]


def test_no_divergence_position_from_a_stored_text_that_was_cut() -> None:
    from pytest_vllm_conformance.workload.determinism import GreedyOutput, text_hash

    full = "x" * 5000 + "tail"
    stored = GreedyOutput("long", "r", full[:4000] + " [cut]", text_hash(full))
    new = GreedyOutput("long", "r", "x" * 4001, text_hash("x" * 4001))
    detail = compare.first_divergence(stored, new)
    assert "no position" in detail and "character" not in detail
    intact = GreedyOutput("long", "r", "x" * 3999 + "y", text_hash("x" * 3999 + "y"))
    assert "text differs at character 3999" in compare.first_divergence(intact, new)
