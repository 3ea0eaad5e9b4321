"""Tables and "done means" checks for the harness benchmark's scenarios, from its JSON figures.

Pure functions over the dictionaries ``harness_bias.py`` writes, so the rendering and the
verdicts are tested with synthetic figures (tests/test_bench_scenarios.py) and can be re-run on
a saved JSON: ``python benchmarks/bench_report.py FILE.json``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMES = {"ours": "pytest-vllm-conformance", "vllm": "vllm bench serve"}
#: Issue 15's "done means" for the synthetic scenarios.
TTFT_BIAS_P50_MAX_MS = {1: 0.5, 32: 3.0}
MIN_CHUNKS_PER_S = 40_000.0


@dataclass(frozen=True)
class Check:
    """One "done means" line: met (True), not met (False) or not measurable (None)."""

    name: str
    met: bool | None
    detail: str

    def line(self) -> str:
        mark = {True: "met", False: "NOT MET", None: "not measured"}[self.met]
        return f"- {mark}: {self.name} ({self.detail})"


def _ms(value: Any, signed: bool = False, digits: int = 2) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{value:+.{digits}f} ms" if signed else f"{value:.{digits}f} ms"


def _limited(selfcheck: dict[str, Any] | None) -> str:
    if selfcheck is None:
        return "n/a (no self-check)"
    flag = selfcheck.get("client_limited")
    if flag is None:
        return "unknown"  # the checks below say why
    return "yes" if flag else "no"


def synthetic_table(result: dict[str, Any]) -> str:
    """The bias table of one synthetic scenario (and its chunk-rate table, when measured)."""
    rows = [
        "| scenario | client | streams | requests | true TTFT p50 | TTFT bias p50 | "
        "TTFT bias p99 | ITL bias p50 | ITL bias p99 | client-limited |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.get("levels", []):
        rows.append(
            f"| {result['scenario']} | {NAMES.get(r['client'], r['client'])} | {r['streams']} | "
            f"{r['requests']} | {_ms(r.get('true_ttft_p50_ms'), digits=1)} | "
            f"{_ms(r.get('ttft_bias_p50_ms'), True)} | {_ms(r.get('ttft_bias_p99_ms'), True)} | "
            f"{_ms(r.get('itl_bias_p50_ms'), True, 3)} | {_ms(r.get('itl_bias_p99_ms'), True, 3)}"
            f" | {_limited(r.get('selfcheck'))} |"
        )
    if rates := result.get("chunk_rate"):
        rows += [
            "",
            "| client | streams | chunks | chunks/s (one core) | client CPU | client-limited |",
            "|---|---|---|---|---|---|",
        ]
        for r in rates:
            rows.append(
                f"| {NAMES.get(r['client'], r['client'])} | {r['streams']} | "
                f"{r['chunks']} | {r['chunks_per_s']:,.0f} | "
                f"{100 * r['cpu_share']:.0f}% | {_limited(r.get('selfcheck'))} |"
            )
    return "\n".join(rows)


def _pair(figures: dict[str, Any] | None, metric: str) -> str:
    quantiles = (figures or {}).get(metric) or {}
    p50, p95 = quantiles.get("p50"), quantiles.get("p95")
    return f"{_ms(p50, digits=1)} / {_ms(p95, digits=1)}"


def real_table(result: dict[str, Any]) -> str:
    """Client against the server's own histograms, per user count, with and without the split."""
    rows = [
        "| core split | users | requests | client TTFT p50/p95 | server TTFT p50/p95 | "
        "server TTFT median bucket from | client E2E p50/p95 | server E2E p50/p95 | "
        "server E2E median bucket from | client-limited |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.get("runs", []):
        floor = r.get("server_floor_ms") or {}
        rows.append(
            f"| {'yes' if r['split'] else 'no'} | {r['users']} | {r['requests']} | "
            f"{_pair(r.get('client'), 'ttft_ms')} | {_pair(r.get('server'), 'ttft_ms')} | "
            f"{_ms(floor.get('ttft_ms'), digits=1)} | {_pair(r.get('client'), 'e2e_ms')} | "
            f"{_pair(r.get('server'), 'e2e_ms')} | {_ms(floor.get('e2e_ms'), digits=1)} | "
            f"{_limited(r.get('selfcheck'))} |"
        )
    return "\n".join(rows)


def _ours(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result.get("levels", []) if r["client"] == "ours"]


def _flag(r: dict[str, Any]) -> bool | None:
    flag = (r.get("selfcheck") or {}).get("client_limited")
    return None if flag is None else bool(flag)


def _why(r: dict[str, Any]) -> str:
    check = r.get("selfcheck") or {}
    return f"client_limited={check.get('client_limited')}: {check.get('reason') or 'no reason'}"


def starved_checks(result: dict[str, Any]) -> list[Check]:
    out = []
    for r in _ours(result):
        out.append(
            Check(
                f"starved, {r['streams']} streams: the level is client_limited", _flag(r), _why(r)
            )
        )
    return out or [Check("starved: every level client_limited", None, "no level of ours ran")]


def unstarved_checks(result: dict[str, Any]) -> list[Check]:
    out = []
    for r in _ours(result):
        flag = _flag(r)
        out.append(
            Check(
                f"unstarved, {r['streams']} streams: the level is not flagged",
                None if flag is None else not flag,
                f"client_limited={flag}",
            )
        )
        if (limit := TTFT_BIAS_P50_MAX_MS.get(r["streams"])) is not None:
            bias = r.get("ttft_bias_p50_ms", math.nan)
            met = None if math.isnan(bias) else bias <= limit
            out.append(
                Check(
                    f"unstarved, {r['streams']} streams: TTFT bias p50 <= {limit} ms",
                    met,
                    f"{bias:+.2f} ms",
                )
            )
    for r in result.get("chunk_rate", []):
        if r["client"] == "ours":
            rate = r["chunks_per_s"]
            out.append(
                Check(
                    f"unstarved: chunk rate >= {MIN_CHUNKS_PER_S:,.0f}/s on one core",
                    rate >= MIN_CHUNKS_PER_S,
                    f"{rate:,.0f}/s",
                )
            )
    return out


def real_checks(result: dict[str, Any]) -> list[Check]:
    out = []
    for r in result.get("runs", []):
        where = f"real, split={'yes' if r['split'] else 'no'}, {r['users']} users"
        floors = r.get("server_floor_ms") or {}
        for metric in ("ttft_ms", "e2e_ms"):
            floor = floors.get(metric)
            p50 = ((r.get("client") or {}).get(metric) or {}).get("p50")
            if floor is None or p50 is None:
                out.append(
                    Check(
                        f"{where}: client {metric[:-3].upper()} p50 not below the server histogram",
                        None,
                        "no server histogram or no figure",
                    )
                )
                continue
            out.append(
                Check(
                    f"{where}: client {metric[:-3].upper()} p50 not below the server "
                    "histogram's median bucket",
                    p50 >= floor,
                    f"client p50 {p50:.1f} ms, bucket from {floor:.1f} ms",
                )
            )
        if r["split"] and r["users"] == 1:
            flag = _flag(r)
            out.append(
                Check(
                    f"{where}: not client-limited with the core split",
                    None if flag is None else not flag,
                    _why(r),
                )
            )
    return out


CHECKS = {"starved": starved_checks, "unstarved": unstarved_checks, "real": real_checks}


def render(result: dict[str, Any]) -> str:
    """The Markdown table and the checks of one scenario's result."""
    scenario = result["scenario"]
    table = real_table(result) if scenario == "real" else synthetic_table(result)
    checks = CHECKS[scenario](result)
    lines = [
        f"### {scenario}",
        "",
        f"`{result.get('command', '')}`",
        "",
        table,
        "",
        "Done means:",
    ] + [c.line() for c in checks]
    if note := result.get("note"):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines)


def all_met(result: dict[str, Any]) -> bool:
    if str(result.get("note", "")).startswith(("not run", "figures NOT valid")):
        return False
    return all(c.met is True for c in CHECKS[result["scenario"]](result))


def median_bucket_floor(before: dict[float, float], after: dict[float, float]) -> float:
    """Lower bound (seconds) of the histogram bucket holding the median of the counts added
    between two scrapes: no request the server counted there took less. NaN when none."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return math.nan
    lower = 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= counts[-1] / 2:
            return lower
        lower = bound
    return math.nan


def main() -> int:
    for path in sys.argv[1:]:
        data = json.loads(Path(path).read_text())
        for result in data if isinstance(data, list) else [data]:
            print(render(result), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
