"""Server memory under sustained load: where it is read, and a robust fit of its growth.

Sources, best first: the resident memory of every process of a server the plugin started
(psutil, the whole process tree: vLLM runs an API server, an engine core and workers), then
``process_resident_memory_bytes`` from the server's ``/metrics`` (the API server process
only, which is what a remote URL allows). The harness's own RSS is sampled alongside so a
leak in the client is not blamed on the server.

The decision is statistical: after the warm-up, the Theil-Sen slope of memory over time
(the median of all pairwise slopes: one spike or a step from a cache filling cannot drag
it) with Sen's confidence interval from Kendall's tau; growth fails only when the whole
interval lies above the allowed MB/hour. Hand-written (30 lines) rather than taking
scipy.stats.theilslopes: scipy is a large dependency for one function; the project's
tests check the slope on exact lines and outliers and the interval's coverage by simulation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vllm_conformance.report.measurements import measurement

MB = 1024 * 1024


@dataclass(frozen=True)
class Fit:
    """Slope and its confidence interval, in MB per hour."""

    slope: float
    low: float
    high: float
    intercept_mb: float


def theil_sen(ts: list[float], ys: list[float], confidence: float = 0.95) -> Fit:
    """Theil-Sen slope of ``ys`` (MB) over ``ts`` (s) with Sen's interval; result in MB/h."""
    n = len(ts)
    slopes = sorted(
        (ys[j] - ys[i]) / (ts[j] - ts[i])
        for i in range(n)
        for j in range(i + 1, n)
        if ts[j] != ts[i]
    )
    if not slopes:
        return Fit(math.nan, math.nan, math.nan, math.nan)
    m = len(slopes)
    mid = m // 2
    slope = slopes[mid] if m % 2 else (slopes[mid - 1] + slopes[mid]) / 2
    from statistics import NormalDist

    # Sen (1968): the interval's ranks from the variance of Kendall's S (ties ignored)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    lo = max(0, min(m - 1, math.floor((m - c) / 2)))
    hi = max(0, min(m - 1, math.ceil((m + c) / 2)))
    intercept = sorted(y - slope * t for t, y in zip(ts, ys, strict=True))[n // 2]
    return Fit(slope * 3600, slopes[lo] * 3600, slopes[hi] * 3600, intercept)


@dataclass
class MemoryRun:
    """The samples of one window: (seconds since start, server bytes, harness bytes)."""

    source: str
    warmup_s: float
    samples: list[tuple[float, float, float]] = field(default_factory=list)

    def _series(self, column: int) -> tuple[list[float], list[float]]:
        kept = [s for s in self.samples if s[0] >= self.warmup_s]
        return [s[0] for s in kept], [s[column] / MB for s in kept]

    def server_fit(self) -> Fit:
        return theil_sen(*self._series(1))

    def harness_fit(self) -> Fit:
        return theil_sen(*self._series(2))

    def write_csv(self, path: Path) -> None:
        lines = ["seconds,server_bytes,harness_bytes"]
        lines += [f"{t:.3f},{s:.0f},{h:.0f}" for t, s, h in self.samples]
        path.write_text("\n".join(lines) + "\n")

    def plot(self, path: Path, allowed_mb_h: float) -> bool:
        """The memory curve with the fitted slope; False when matplotlib is not installed."""
        try:
            import matplotlib
        except ImportError:
            return False
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fit = self.server_fit()
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot(
            [s[0] for s in self.samples],
            [s[1] / MB for s in self.samples],
            ".",
            ms=3,
            label=f"server ({self.source})",
        )
        ts, _ = self._series(1)
        if ts and math.isfinite(fit.slope):
            ax.plot(
                ts,
                [fit.intercept_mb + fit.slope / 3600 * t for t in ts],
                "-",
                label=f"Theil-Sen {fit.slope:+.1f} MB/h [{fit.low:+.1f}, {fit.high:+.1f}]",
            )
        ax.axvline(self.warmup_s, color="grey", ls=":", label="end of warm-up")
        ax.set_xlabel("seconds")
        ax.set_ylabel("MB")
        ax.set_title(f"server memory under load (allowed growth {allowed_mb_h:g} MB/h)")
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return True


@measurement("memory_growth")
@dataclass(frozen=True)
class MemoryGrowth:
    """One memory window as the reports show it: where memory was read, the server's and
    the harness's fitted growth, the load that ran, and where the samples and plot went."""

    source: str
    samples: int
    warmup_s: float
    server: Fit
    harness: Fit
    load_requests: int
    load_error_rate: float
    csv: str
    plot: str = ""  # "" when matplotlib was not there to draw it

    @classmethod
    def of(
        cls,
        run: MemoryRun,
        load_requests: int,
        load_error_rate: float,
        csv: Path,
        plot: Path | None,
    ) -> MemoryGrowth:
        return cls(
            run.source,
            len(run.samples),
            run.warmup_s,
            run.server_fit(),
            run.harness_fit(),
            load_requests,
            load_error_rate,
            str(csv),
            str(plot) if plot is not None else "",
        )

    def properties(self) -> list[tuple[str, Any]]:
        """JUnit/JSON pairs (``memory slope MB/h``, ...); a non-finite figure is left out."""
        pairs: list[tuple[str, Any]] = [
            ("memory source", self.source),
            ("memory samples", self.samples),
            ("memory slope MB/h", round(self.server.slope, 2)),
            ("memory slope 95% low MB/h", round(self.server.low, 2)),
            ("memory slope 95% high MB/h", round(self.server.high, 2)),
            ("harness slope MB/h", round(self.harness.slope, 2)),
            ("memory load requests", self.load_requests),
            ("memory load error rate", round(self.load_error_rate, 4)),
            ("memory csv", self.csv),
        ]
        out = [(k, v) for k, v in pairs if not (isinstance(v, float) and not math.isfinite(v))]
        return out + ([("memory plot", self.plot)] if self.plot else [])


#: A window needs this many samples, and this many after its warm-up, to fit a slope at all.
MIN_SAMPLES = 10
MIN_KEPT_SAMPLES = 3


def sampling_problem(run: MemoryRun, fit: Fit) -> str:
    """Why the window cannot judge growth ("" when it can): too few samples in all or after
    the warm-up (a load that ended at once), or no finite slope and interval. A NaN bound
    compares False with any limit, so without this such a window would pass."""
    kept = len(run._series(1)[0])
    if len(run.samples) < MIN_SAMPLES:
        return f"{len(run.samples)} samples"
    if kept < MIN_KEPT_SAMPLES:
        return f"{kept} samples after the {run.warmup_s:g} s warm-up"
    if not all(math.isfinite(v) for v in (fit.slope, fit.low, fit.high)):
        return f"{kept} samples after the warm-up, and no finite slope through them"
    return ""


def process_tree_rss(pid: int) -> Callable[[], float | None]:
    """Resident bytes of ``pid`` and all its descendants (None once it is gone)."""
    import psutil

    def read() -> float | None:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return float(total)

    return read


def own_rss() -> float:
    """This process's resident bytes (the harness)."""
    import psutil

    return float(psutil.Process(os.getpid()).memory_info().rss)


def metrics_rss(text: str, curl: str = "") -> float | None:
    """``process_resident_memory_bytes`` summed over series, from /metrics text.

    None when the series is absent; unparseable text, NaN, an infinity or a negative
    value is a titled :class:`CheckFailure` (a NaN sample would make every slope NaN,
    and a NaN slope is never above the limit)."""
    from pytest_vllm_conformance.checks.metrics import prometheus_text
    from pytest_vllm_conformance.checks.registry import Context

    return prometheus_text(text, Context(curl=curl)).total("process_resident_memory_bytes")
