"""Turn a headless locust run's CSV files into the harness's percentile tables, JSON and a plot.

``locust --headless --csv PREFIX`` writes ``PREFIX_stats.csv`` (one row per entry, with
locust's fixed percentile columns) and ``PREFIX_failures.csv``. Locust keeps response times
in buckets (exact below 100 ms, then rounded to 10 ms, above 1 s to 100 ms), so its
percentiles carry that rounding; counts, min, mean and max are exact.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vllm_conformance.perf.stats import Summary, table

# locust's percentile columns, as the x axis of the percentile curve
CURVE = ("50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%")
UNITS = {"TOKENS": "tokens"}  # every other entry is in ms
#: The entry type the locustfile gives a user class that could not run (its failure: why)
NOT_RUN = "NOT RUN"


class ReportError(Exception):
    """A CSV that is missing or not locust's: the message says which and why."""


@dataclass
class Entry:
    """One row of locust's statistics: a request name or a streaming-timing entry."""

    kind: str
    name: str
    summary: Summary
    failures: int
    rps: float
    curve: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def unit(self) -> str:
        return UNITS.get(self.kind, "ms")


@dataclass
class LoadReport:
    entries: list[Entry]
    failures: list[dict[str, Any]]
    #: user classes that sent nothing, and why (the server refused their probe)
    not_run: dict[str, str] = field(default_factory=dict)

    def totals(self) -> tuple[int, int]:
        """(requests, failed requests) over HTTP entries, not the timing entries."""
        http = [e for e in self.entries if e.kind in ("GET", "POST")]
        return sum(e.summary.count for e in http), sum(e.failures for e in http)

    def entry(self, kind: str, name: str) -> Entry | None:
        return next((e for e in self.entries if e.kind == kind and e.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "pytest-vllm-conformance/locust-report/1",
            "entries": [
                {
                    "type": e.kind,
                    "name": e.name,
                    "unit": e.unit,
                    "failures": e.failures,
                    "requests_per_s": e.rps,
                    **{k: None if math.isnan(v) else v for k, v in e.summary.as_dict().items()},
                    "percentile_curve": e.curve,
                }
                for e in self.entries
            ],
            "failures": self.failures,
            "not_run": [
                {"user_class": name, "reason": reason} for name, reason in self.not_run.items()
            ],
        }

    def markdown(self) -> str:
        rows = [
            (e.label + ("" if e.unit == "ms" else f" ({e.unit})"), e.summary) for e in self.entries
        ]
        out = table(
            rows,
            label="entry (ms unless said)",
            extra=[
                ("failures", [str(e.failures) for e in self.entries]),
                ("req/s", [f"{e.rps:.2f}" for e in self.entries]),
            ],
        )
        if self.failures:
            out += "\n\nfailures:\n" + "\n".join(
                f"- {f['Occurrences']}x {f['Method']} {f['Name']}: {f['Error']}"
                for f in self.failures
            )
        if self.not_run:
            out += "\n\nuser classes:\n" + "\n".join(
                f"- {name}: not run: {reason}" for name, reason in self.not_run.items()
            )
        return out


def _error_text(raw: str) -> str:
    """locust writes the failure as the exception's repr; the message alone reads better."""
    match = re.fullmatch(r"\w+\((['\"])(.*)\1\)", raw, re.DOTALL)
    return match.group(2) if match else raw


def _number(row: dict[str, str], column: str) -> float:
    raw = row.get(column, "")
    try:
        return float(raw)
    except ValueError:
        return math.nan  # locust writes N/A for an entry that never completed


def read(prefix: str | Path) -> LoadReport:
    """The report of the run whose ``--csv`` prefix was ``prefix``."""
    stats_path = Path(f"{prefix}_stats.csv")
    if not stats_path.is_file():
        raise ReportError(f"{stats_path} does not exist: pass the prefix given to locust --csv.")
    with stats_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "Request Count" not in rows[0]:
        raise ReportError(f"{stats_path} is not a locust stats file (no 'Request Count').")
    entries = []
    for row in rows:
        if row["Name"] == "Aggregated" or row["Type"] == NOT_RUN:
            continue
        count = int(row["Request Count"])
        summary = Summary(
            count,
            _number(row, "Min Response Time"),
            _number(row, "Average Response Time"),
            _number(row, "50%"),
            _number(row, "90%"),
            _number(row, "95%"),
            _number(row, "99%"),
            _number(row, "Max Response Time"),
        )
        entries.append(
            Entry(
                row["Type"],
                row["Name"],
                summary,
                int(row["Failure Count"]),
                _number(row, "Requests/s"),
                {c: _number(row, c) for c in CURVE if c in row},
            )
        )
    failures_path = Path(f"{prefix}_failures.csv")
    failures: list[dict[str, Any]] = []
    not_run: dict[str, str] = {}
    if failures_path.is_file():
        with failures_path.open(newline="") as fh:
            for r in csv.DictReader(fh):
                if r["Method"] == NOT_RUN:  # one per worker process: the first reason tells
                    not_run.setdefault(r["Name"], _error_text(r["Error"]))
                else:
                    failures.append({**r, "Error": _error_text(r["Error"])})
    return LoadReport(entries, failures, not_run)


def plot(report: LoadReport, path: Path) -> None:
    """Percentile curves (one line per timed entry), the same form the HTML report draws."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [e for e in report.entries if e.unit == "ms" and e.summary.count]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = [float(c.rstrip("%")) for c in CURVE]
    for e in timed:
        ax.plot(
            range(len(xs)), [e.curve.get(c, math.nan) for c in CURVE], marker="o", label=e.label
        )
    ax.set_xticks(range(len(xs)), [f"p{x:g}" for x in xs])
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("locust run: percentile curves")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
