"""One self-contained HTML report from the results document: Jinja2 renders, matplotlib plots.

Self-contained: styles inline, plots embedded as base64 PNG, no script at all, and a
Content-Security-Policy that allows nothing but inline styles and data: images, so the file
opens offline and nothing in it can fetch or run. Every string is autoescaped by Jinja2: a
model that answers ``<script>`` shows that text, it cannot run it.

Why not pytest-html: its report is a table of tests driven by JavaScript, while this one is
organised by capability, check title, load level and memory curve, and runs no script at all
(which is what lets the CSP forbid scripts outright). Jinja2 does the templating and escaping,
matplotlib the plots; only the layout is ours.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from pytest_vllm_conformance import untrusted
from pytest_vllm_conformance.perf.latency import LEVEL_STAT_KEY

COLUMNS = ("min", "mean", "p50", "p90", "p95", "p99", "max")
_SERVER_KEY = re.compile(r"(?P<level>.+?): server_(?P<metric>ttft|itl|e2e)_(?P<stat>p\d+)_ms")
_OTHER = ("requests", "error_rate", "requests_per_s", "output_tokens_per_s", "items_per_s",
          "tokens_server", "tokens_client_chunks", "token_count_mismatches")


def _latency_levels(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    levels: dict[str, dict[str, Any]] = {}
    for t in tests:
        for key, value in t["properties"].items():
            if m := LEVEL_STAT_KEY.fullmatch(key):
                lv = levels.setdefault(m["level"], _new_level(m["level"]))
                lv["metrics"][m["metric"]][m["stat"]] = value
            elif m := _SERVER_KEY.fullmatch(key):
                lv = levels.setdefault(m["level"], _new_level(m["level"]))
                lv["server_raw"][m["metric"]].append(
                    f"{value:.1f}" if isinstance(value, int | float) else "-")
            elif key.endswith(": harness") and isinstance(value, str):  # the self-check's sentence
                name = key.removesuffix(": harness")
                levels.setdefault(name, _new_level(name))["harness"] = value
            elif ": " in key and key.split(": ", 1)[1] in _OTHER:
                name, what = key.split(": ", 1)
                levels.setdefault(name, _new_level(name))["other"][what] = value
    for lv in levels.values():
        lv["metrics"] = {k: v for k, v in lv["metrics"].items() if v}
        lv["server"] = {k: " / ".join(v) for k, v in lv.pop("server_raw").items()}
    return list(levels.values())


def _new_level(name: str) -> dict[str, Any]:
    return {"name": name, "metrics": defaultdict(dict), "server_raw": defaultdict(list),
            "other": {}, "harness": ""}


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

    env = Environment(loader=PackageLoader("pytest_vllm_conformance", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    tests = doc["tests"]
    skip_reasons: dict[str, list[str]] = defaultdict(list)
    for t in tests:
        if t["skip_reason"] and t["skip_reason"] not in skip_reasons[t["suite"]]:
            skip_reasons[t["suite"]].append(t["skip_reason"])
    latency = _latency_levels([t for t in tests if t["suite"] == "latency"])
    determinism = [{"nodeid": t["nodeid"], "outcome": t["outcome"],
                    "requests": t["properties"].get("determinism_requests", "-"),
                    "distinct": t["properties"]["determinism_distinct_outputs"],
                    "position": t["properties"].get("determinism_divergence_position", "-"),
                    "drift": t["properties"].get("determinism_logprob_drift_max", "-")}
                   for t in tests if "determinism_distinct_outputs" in t["properties"]]
    memory = [{"source": t["properties"].get("memory source"), "outcome": t["outcome"],
               "slope": t["properties"].get("memory slope MB/h"),
               "low": t["properties"].get("memory slope 95% low MB/h"),
               "high": t["properties"].get("memory slope 95% high MB/h"),
               "harness": t["properties"].get("harness slope MB/h"),
               "samples": t["properties"].get("memory samples"),
               "plot": _embedded(t["properties"].get("memory plot"))}
              for t in tests if "memory slope MB/h" in t["properties"]]
    return env.get_template("report.html.j2").render(
        doc=doc, skip_reasons=skip_reasons, tests_by_id={t["nodeid"]: t for t in tests},
        latency=latency, latency_plot=_latency_plot(latency) if latency else "",
        columns=COLUMNS, determinism=determinism, memory=memory,
        options_json=json.dumps(doc["options"], indent=2))
