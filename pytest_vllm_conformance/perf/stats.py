"""Percentile summaries and their tables, shared by the latency suite and the locust report.

Percentiles use the "linear" definition (NumPy's default, Excel's PERCENTILE.INC) so a
figure here can be checked with ``numpy.percentile``; numpy itself is not imported to keep
the plugin's start-up light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

QUANTILES = (50, 90, 95, 99)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linearly interpolated."""
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Summary:
    """count, min, mean, p50, p90, p95, p99 and max of one measurement, in its own unit."""

    count: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        ordered = sorted(values)
        if not ordered:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, nan, nan)
        p50, p90, p95, p99 = (percentile(ordered, q) for q in QUANTILES)
        return cls(
            len(ordered),
            ordered[0],
            math.fsum(ordered) / len(ordered),
            p50,
            p90,
            p95,
            p99,
            ordered[-1],
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


COLUMNS = ("count", "min", "mean", "p50", "p90", "p95", "p99", "max")


def _cell(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(
    rows: Sequence[tuple[str, Summary]],
    *,
    label: str = "measurement",
    extra: Sequence[tuple[str, Sequence[str]]] = (),
) -> str:
    """A Markdown table, one row per (name, summary); ``extra`` adds named columns of text."""
    head = [label, *COLUMNS, *(name for name, _ in extra)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (name, s) in enumerate(rows):
        cells = [
            name,
            *(_cell(getattr(s, c)) for c in COLUMNS),
            *(values[i] for _, values in extra),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
