"""The run's results: a versioned JSON file for dashboards and a summary in the terminal.

Collected on the controller from test reports (so pytest-xdist workers' results arrive too):
each test's outcome, duration, properties (its ``user_properties``, the same ones pytest's
JUnit XML carries), typed measurements (:mod:`report.measurements`, each a ``kind`` and its
fields) and, for a failed check, its title, severity, expected, received and curl. A test
skipped as ``not supported: FEATURE: EVIDENCE`` (:mod:`target.capabilities`) stays skipped (the
``skipped`` counts include it, so older readers stay right) and also names its feature; the
document lists those features, and the terminal shows them apart from ordinary skips.
The JSON follows ``schemas/results-1.schema.json``; the schema id names its version.

Every string in it passed :func:`untrusted.safe` (no key, control characters escaped, long
text cut) and every non-finite number is null, so the file is strict JSON. Each writer (JSON,
HTML, OpenMetrics, the push) runs on its own: one that fails says why in one line of the
summary, and the others still write.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vllm_conformance import untrusted
from pytest_vllm_conformance.report import measurements
from pytest_vllm_conformance.target import capabilities

if TYPE_CHECKING:
    from pytest_vllm_conformance.session import ConformanceSession

SCHEMA_ID = "pytest-vllm-conformance/results/1"
SCHEMA_FILE = Path(__file__).parent.parent / "schemas" / "results-1.schema.json"
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
FAILURE_FIELDS = ("title", "severity", "expected", "received", "curl", "detail")


def failure_properties(exc: Any) -> list[tuple[str, str]]:
    """The JUnit/JSON properties naming a failed check (first of a group, all titles), or a
    request that failed before any check could look at it (a client error)."""
    from pytest_vllm_conformance.failures import CheckFailure, FailureGroup

    if not isinstance(exc, CheckFailure):
        return [
            ("failure_title", exc.title),
            ("failure_severity", "HIGH"),
            ("failure_expected", ""),
            ("failure_received", exc.message),
            ("failure_curl", exc.curl),
            ("failure_detail", ""),
        ]
    first = exc.failures[0][0] if isinstance(exc, FailureGroup) else exc
    out = [(f"failure_{name}", str(getattr(first, name) or "")) for name in FAILURE_FIELDS]
    out[1] = ("failure_severity", exc.severity.name)
    if isinstance(exc, FailureGroup):
        out.append(("failure_titles", "; ".join(sorted({f.title for f, _ in exc.failures}))))
    return out


class ResultsRecorder:
    """Registered on the controller when a target is given; writes JSON, prints the summary."""

    def __init__(
        self,
        config: pytest.Config,
        state: ConformanceSession,
        path: Path | None,
        suites: tuple[str, ...],
    ) -> None:
        self.config, self.state, self.path, self.suites = config, state, path, suites
        self.tests: dict[str, dict[str, Any]] = {}
        self.started = time.time()
        self.pushed = ""
        self.problems: list[str] = []  # one line per output that could not be written
        self.written: list[str] = []  # the files written, for the summary
        self.doc: dict[str, Any] | None = None  # built once, at the end of the session

    # -- collection of reports ----------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before junitxml reads the report
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)
        if not self.state.settings.junit_test_properties:
            report.user_properties = []  # kept here and in the JSON; JUnit stays xunit2-valid

    def _record(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(
            report.nodeid,
            {
                "nodeid": report.nodeid,
                "suite": self._suite(report),
                "outcome": "passed",
                "duration_s": 0.0,
                "properties": {},
                "measurements": [],
                "failure": None,
                "skip_reason": None,
                "not_supported": None,
            },
        )
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 6)
        entry["properties"] = {
            str(k): _plain(v)
            for k, v in report.user_properties
            if not str(k).startswith("failure_")
        }
        if (measured := getattr(report, measurements.REPORT_ATTR, None)) is not None:
            entry["measurements"] = [_plain(m) for m in measured]  # each report has them all
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["not_supported"] = None  # only a skipped test is a declared gap
            props = dict(report.user_properties)
            if "failure_title" in props:
                entry["failure"] = {
                    name: str(props.get(f"failure_{name}", "")) for name in FAILURE_FIELDS
                }
            else:
                entry["failure"] = {
                    "title": "Test error" if report.when != "call" else "Test failed",
                    "severity": "HIGH",
                    "expected": "",
                    "received": str(report.longreprtext).strip()[-600:],
                    "curl": "",
                    "detail": "",
                }
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
            longrepr = report.longrepr
            entry["skip_reason"] = str(
                longrepr[2] if isinstance(longrepr, tuple) else longrepr
            ).removeprefix("Skipped: ")
            entry["not_supported"] = capabilities.feature_of(entry["skip_reason"])

    def _suite(self, report: pytest.TestReport) -> str:
        return next((s for s in self.suites if s in report.keywords), "other")

    # -- the outputs ----------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """The results document, every string in it safe and every number finite."""
        doc: dict[str, Any] = untrusted.clean(self._document())
        for name, value in doc["target"].items():  # single-line values
            doc["target"][name] = untrusted.line(value) if isinstance(value, str) else value
        for group in doc["failures_by_title"]:
            group["title"] = untrusted.line(group["title"])
        for test in doc["tests"]:
            if test["failure"] is not None:
                test["failure"]["title"] = untrusted.line(test["failure"]["title"])
        for gap in doc["not_supported"]["features"]:  # one line each, as in the skip reason
            gap["evidence"] = untrusted.line(gap["evidence"], capabilities.EVIDENCE_LIMIT)
        if self.state.settings.baseline is not None:  # issue 18: baseline
            self._guarded("the baseline comparison", lambda: self._compare(doc))
        return doc

    # issue 18: baseline
    def _compare(self, doc: dict[str, Any]) -> None:
        """The comparison with ``--vllm-baseline`` as the document's ``comparison``."""
        from pytest_vllm_conformance.report import compare

        settings = self.state.settings
        assert settings.baseline is not None
        found = compare.compare(
            compare.load(settings.baseline),
            doc,
            settings.baseline_tolerance,
            settings.baseline_accept,
        )
        doc["comparison"] = {
            "baseline": str(settings.baseline),
            **untrusted.clean(found.as_json()),
            "table": untrusted.safe(found.table(), 20_000),
        }

    def _document(self) -> dict[str, Any]:
        from pytest_vllm_conformance import __version__

        tests = list(self.tests.values())
        counts = Counter(t["outcome"] for t in tests)
        matrix: dict[str, dict[str, int]] = {}
        for t in tests:
            row = matrix.setdefault(
                t["suite"], {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
            )
            row[t["outcome"]] += 1
        target = self.state.target
        return {
            "schema": SCHEMA_ID,
            "harness": {"name": "pytest-vllm-conformance", "version": __version__},
            "target": {
                "url": target.display_url if target else None,
                "engine": target.engine.name if target else None,
                "engine_version": target.engine.version if target else None,
                "model": target.model if target else None,
                "system_fingerprint": target.engine.fingerprint if target else None,
            },
            "profile": self.state.profile if target else None,
            "options": _options(self.state),
            "started": dt.datetime.fromtimestamp(self.started, dt.timezone.utc).isoformat(),
            "duration_s": round(time.time() - self.started, 3),
            "verdict": "fail"
            if counts["failed"] or counts["error"]
            else ("pass" if counts["passed"] else "incomplete"),
            "counts": {k: counts[k] for k in ("passed", "failed", "skipped", "error")},
            "matrix": matrix,
            "failures_by_title": self.failures_by_title(),
            "not_supported": not_supported(tests),
            "tests": tests,
        }

    def failures_by_title(self) -> list[dict[str, Any]]:
        """Failures grouped by title, the most severe first, then the most frequent."""
        groups: dict[str, dict[str, Any]] = {}
        for t in self.tests.values():
            if t["failure"] is None:
                continue
            g = groups.setdefault(
                t["failure"]["title"],
                {
                    "title": t["failure"]["title"],
                    "severity": t["failure"]["severity"],
                    "count": 0,
                    "tests": [],
                },
            )
            g["count"] += 1
            g["tests"].append(t["nodeid"])
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(
            groups.values(), key=lambda g: (rank.get(g["severity"], 9), -g["count"], g["title"])
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.tests:
            return
        self._guarded("the results", self._build)
        doc = self.doc
        if doc is None:
            return
        if self.path is not None:
            self._write(self.path, lambda: json.dumps(doc, indent=2, allow_nan=False) + "\n")
        settings = self.state.settings
        if settings.html_path is not None:
            from pytest_vllm_conformance.report import html as html_report

            self._write(settings.html_path, lambda: html_report.render(doc))
        if settings.openmetrics_path is not None or settings.pushgateway:
            self._guarded("OpenMetrics", lambda: self._export(doc))

    def _build(self) -> None:
        self.doc = self.document()

    def _write(self, path: Path, render: Any) -> None:
        """Write one output; a failure is one line of the summary, never a crash."""

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(), encoding="utf-8", errors="backslashreplace")
            self.written.append(str(path))

        self._guarded(str(path), write)

    def _guarded(self, what: str, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # any writer's failure: reported, the others still write
            self.problems.append(
                untrusted.line(
                    f"could not write {what}: {type(exc).__name__}: {exc}", untrusted.FIELD_LIMIT
                )
            )

    def _export(self, doc: dict[str, Any]) -> None:
        from urllib.parse import urlsplit

        from pytest_vllm_conformance.report import openmetrics as export

        settings = self.state.settings
        url = self.state.target.base_url if self.state.target else ""
        host = urlsplit(url).netloc.rsplit("@", 1)[-1]  # never the URL's credentials
        replica = settings.replica_id or host or "unknown"
        labels = export.labels_of(doc, settings.pool_id, replica)
        if settings.openmetrics_path is not None:
            path = settings.openmetrics_path
            self._write(path, lambda: export.openmetrics_text(doc, labels))
        if settings.pushgateway:
            try:
                export.push(settings.pushgateway, doc, labels)
                self.pushed = f"pushed to {settings.pushgateway}"
            except OSError as exc:
                reason = getattr(exc, "reason", None) or exc
                self.pushed = untrusted.line(
                    f"could not push to {settings.pushgateway}: {reason}; is a Pushgateway "
                    "listening there?",
                    untrusted.FIELD_LIMIT,
                )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tests:
            return
        tr = terminalreporter
        tr.section("vllm-conformance", sep="=")
        if self.doc is None:
            self._guarded("the results", self._build)
        doc = self.doc
        for problem in self.problems if doc is None else []:
            tr.write_line(f"vllm-conformance: {problem}")
        if doc is None:
            return
        gaps = doc["not_supported"]
        for suite, row in doc["matrix"].items():
            tr.write_line(f"{untrusted.line(suite):<14} {_suite_line(row, suite, gaps)}")
        for g in doc["failures_by_title"]:  # titles are single-line and safe (document())
            tr.write_line(
                f"[{g['severity']}] {g['title']}: {g['count']} test{'s' if g['count'] != 1 else ''}"
            )
        for gap in gaps["features"]:  # declared by the server, not failed
            n = gap["tests"]
            tr.write_line(
                untrusted.line(
                    f"not supported: {gap['feature']} ({n} test{'s' if n != 1 else ''}): "
                    f"{gap['evidence'] or 'no evidence given'}"
                )
            )
        for sentence in _harness_sentences(doc):  # the latency self-check's (issue 15)
            tr.write_line(f"harness: {untrusted.line(sentence, untrusted.FIELD_LIMIT)}")
        for line in _comparison_lines(doc):  # issue 18: baseline
            tr.write_line(untrusted.line(line, untrusted.FIELD_LIMIT))
        where = f"; results in {', '.join(self.written)}" if self.written else ""
        tr.write_line(f"verdict: {doc['verdict'].upper()}{where}")
        if self.pushed:
            tr.write_line(f"metrics {self.pushed}")
        for problem in self.problems:
            tr.write_line(f"vllm-conformance: {problem}")


def not_supported(tests: list[dict[str, Any]]) -> dict[str, Any]:
    """The features the server does not support: how many tests (a subset of the skipped
    ones, which still count them), per suite, and each feature with its first evidence."""
    features: dict[str, dict[str, Any]] = {}
    by_suite: Counter[str] = Counter()
    for t in tests:
        feature = t.get("not_supported")
        if t["outcome"] != "skipped" or not feature:
            continue
        parsed = capabilities.parse(t["skip_reason"])
        gap = features.setdefault(
            feature,
            {
                "feature": feature,
                "evidence": parsed[1] if parsed else "",
                "tests": 0,
                "suites": [],
            },
        )
        gap["tests"] += 1
        if t["suite"] not in gap["suites"]:
            gap["suites"].append(t["suite"])
        by_suite[t["suite"]] += 1
    return {
        "count": sum(by_suite.values()),
        "by_suite": dict(by_suite),
        "features": [features[f] for f in sorted(features)],
    }


def _suite_line(row: dict[str, int], suite: str, gaps: dict[str, Any]) -> str:
    """One suite's counts for people: ordinary skips apart from the features not supported."""
    declared = gaps["by_suite"].get(suite, 0)
    shown = dict(row, skipped=row.get("skipped", 0) - declared)
    parts = [f"{n} {k}" for k, n in shown.items() if n]
    if declared:
        names = [g["feature"] for g in gaps["features"] if suite in g["suites"]]
        parts.append(f"{declared} not supported ({', '.join(names)})")
    return ", ".join(parts)


def _harness_sentences(doc: dict[str, Any]) -> list[str]:
    """Each latency level's self-check sentence, for levels whose figures are unreliable."""
    from pytest_vllm_conformance.perf.latency import LevelFigures

    return [
        m.harness
        for test in doc["tests"]
        for m in measurements.load(test["measurements"])
        if isinstance(m, LevelFigures) and m.harness
    ]


def _plain(value: Any) -> Any:
    """JSON-ready: numbers, strings, booleans and None stay; sequences and maps recurse."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _options(state: ConformanceSession) -> dict[str, Any]:
    """The run's settings, minus the key; URLs already carry no credentials."""
    from pytest_vllm_conformance.config import redact_url

    settings = state.settings
    out: dict[str, Any] = {}
    for f in fields(settings):
        if f.name in ("api_key", "perf"):
            continue
        value = getattr(settings, f.name)
        if f.name in ("urls", "embedding_url") and value:
            value = [redact_url(u) for u in value] if f.name == "urls" else redact_url(value)
        out[f.name] = _plain(value)
    out["api_key_given"] = settings.api_key is not None
    out["perf"] = {f.name: _plain(getattr(settings.perf, f.name)) for f in fields(settings.perf)}
    return out


# issue 18: baseline
def _comparison_lines(doc: dict[str, Any]) -> list[str]:
    """The baseline comparison for the terminal: tests that regressed or were fixed, and
    each output or latency regression (the full table is in the JSON and HTML)."""
    found = doc.get("comparison")
    if not isinstance(found, dict):
        return []
    tests = found.get("tests") or []
    worse = [t for t in tests if t.get("kind") == "regression"]
    fixed = [t for t in tests if t.get("kind") == "fix"]
    out = [
        f"baseline {found.get('baseline')}: {len(found.get('regressions') or [])} regressions; "
        f"tests: {len(worse)} passed there and fail now, {len(fixed)} fixed"
        + (
            f"; latency levels not compared: {len(unjudged)}"
            if (unjudged := found.get("levels_not_compared") or [])
            else ""
        )
        + (
            f"; slowdowns not confirmed by a second measurement: {len(passing)}"
            if (passing := found.get("not_confirmed") or [])
            else ""
        )
    ]
    out += [f"  regression: {t['nodeid']} ({t['old']} -> {t['new']})" for t in worse]
    out += [f"  fixed: {t['nodeid']} ({t['old']} -> {t['new']})" for t in fixed]
    out += [f"  not confirmed: {r}" for r in passing]
    out += [
        f"  {r}" for r in found.get("regressions") or [] if not str(r).startswith("test regressed")
    ]
    return out
