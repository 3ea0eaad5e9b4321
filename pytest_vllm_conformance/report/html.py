"""One self-contained HTML report from the results document: Jinja2 renders, matplotlib plots.

Self-contained: styles inline, plots embedded as base64 PNG, no script at all, and a
Content-Security-Policy that allows nothing but inline styles and data: images, so the file
opens offline and nothing in it can fetch or run. Every string is autoescaped by Jinja2: a
model that answers ``<script>`` shows that text, it cannot run it.

Why not pytest-html: its report is a table of tests driven by JavaScript, while this one is
organised by capability, check title, load level and memory curve, and runs no script at all
(which is what lets the CSP forbid scripts outright). Jinja2 does the templating and escaping,
matplotlib the plots; only the layout is ours.

Features the server does not support (tests skipped as ``not supported: FEATURE: ...``) have
their own column in the capability matrix and their own section: declared, not failed, and not
mixed with ordinary skips.

The latency, determinism and memory sections come from each test's typed measurements
(:mod:`report.measurements`), read by field, never from a property's name.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from pytest_vllm_conformance import untrusted
from pytest_vllm_conformance.perf.latency import LevelFigures
from pytest_vllm_conformance.perf.memory import MemoryGrowth
from pytest_vllm_conformance.report.measurements import Measurement, load
from pytest_vllm_conformance.report.results import not_supported
from pytest_vllm_conformance.workload.determinism import DeterminismVerdict

COLUMNS = ("min", "mean", "p50", "p90", "p95", "p99", "max")


def _measured(tests: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Measurement]]:
    """Every test's typed measurements, with the test they came from, in the run's order."""
    return [(t, m) for t in tests for m in load(t.get("measurements") or [])]


def _latency_level(lv: LevelFigures) -> dict[str, Any]:
    """One level's table: client stats per metric, the server's p50 / p95 / p99, the rest."""
    metrics = {
        metric[:-3]: {k: round(v, 3) for k, v in s.as_dict().items() if k != "count"}
        for metric, s in lv.stats.items()
    }
    server = {
        metric[:-3]: " / ".join(f"{v:.1f}" for v in quantiles.values())
        for metric, quantiles in lv.server.items()
    }
    other = {
        "requests": lv.requests,
        "error_rate": round(lv.error_rate, 4),
        **{k: round(v, 3) for k, v in lv.rates.items()},
        "tokens_server": lv.tokens_server,
        "tokens_client_chunks": lv.tokens_client_chunks,
        "token_count_mismatches": lv.token_count_mismatches,
    }
    return {
        "name": lv.name,
        "metrics": metrics,
        "server": server,
        "other": other,
        "harness": lv.harness,
    }


def _shown(value: float, digits: int) -> float | str:
    return round(value, digits) if math.isfinite(value) else "-"


def _memory(t: dict[str, Any], m: MemoryGrowth) -> dict[str, Any]:
    return {
        "source": m.source,
        "outcome": t["outcome"],
        "slope": _shown(m.server.slope, 2),
        "low": _shown(m.server.low, 2),
        "high": _shown(m.server.high, 2),
        "harness": _shown(m.harness.slope, 2),
        "samples": m.samples,
        "plot": _embedded(m.plot),
    }


def _determinism(t: dict[str, Any], d: DeterminismVerdict) -> dict[str, Any]:
    return {
        "nodeid": t["nodeid"],
        "outcome": t["outcome"],
        "requests": d.requests,
        "distinct": d.distinct_outputs,
        "position": d.divergence_position or "-",
        "drift": "-" if d.logprob_drift_max is None else d.logprob_drift_max,
    }


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode()


def _latency_plot(levels: list[dict[str, Any]]) -> str:
    """TTFT and E2E percentile curves (min, p50 .. p99, max), one line per load level."""
    try:
        import matplotlib
    except ImportError:
        return ""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = ["min", "p50", "p90", "p95", "p99", "max"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("ttft", "e2e"), strict=True):
        for lv in levels:
            values = lv["metrics"].get(metric)
            if values:
                ax.plot(xs, [values.get(x) for x in xs], marker="o", label=lv["name"])
        ax.set_title(f"{metric.upper()} (ms) by percentile")
        ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def _embedded(path: str | None) -> str:
    if not path or not Path(path).is_file():
        return ""
    return base64.b64encode(Path(path).read_bytes()).decode()


def render(doc: dict[str, Any]) -> str:
    """The report's HTML; every string is made safe again (escapes shown, no key, cut)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    doc = untrusted.clean(doc)

    env = Environment(
        loader=PackageLoader("pytest_vllm_conformance", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    tests = doc["tests"]
    gaps = doc.get("not_supported") or not_supported(tests)  # older documents lack it
    skip_reasons: dict[str, list[str]] = defaultdict(list)
    for t in tests:
        if t.get("not_supported"):
            continue  # shown in the not-supported column, not among the skip reasons
        if t["skip_reason"] and t["skip_reason"] not in skip_reasons[t["suite"]]:
            skip_reasons[t["suite"]].append(t["skip_reason"])
    gap_features: dict[str, list[str]] = defaultdict(list)
    for gap in gaps["features"]:
        for suite in gap["suites"]:
            gap_features[suite].append(gap["feature"])
    measured = _measured(tests)
    latency = [  # a second measurement shows in the comparison's "measured again" column
        _latency_level(m) for _, m in measured if isinstance(m, LevelFigures) and not m.second
    ]
    determinism = [_determinism(t, m) for t, m in measured if isinstance(m, DeterminismVerdict)]
    memory = [_memory(t, m) for t, m in measured if isinstance(m, MemoryGrowth)]
    return env.get_template("report.html.j2").render(
        doc=doc,
        skip_reasons=skip_reasons,
        gaps=gaps,
        gap_features=gap_features,
        tests_by_id={t["nodeid"]: t for t in tests},
        latency=latency,
        latency_plot=_latency_plot(latency) if latency else "",
        columns=COLUMNS,
        determinism=determinism,
        memory=memory,
        options_json=json.dumps(doc["options"], indent=2),
        comparison=doc.get("comparison"),  # issue 18: baseline
    )
