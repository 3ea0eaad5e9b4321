"""The real scenario: CPU vLLM on the tiny model, our client against the server's histograms.

Run through ``harness_bias.py --scenario real``. The server starts twice: with the core split
(``taskset -c SERVER_CPU`` and ``VLLM_CPU_OMP_THREADS_BIND=SERVER_CPU``, the client pinned to
CLIENT_CPU) and without (nothing pinned; vLLM's OpenMP threads bind as it likes). Each level
warms up, scrapes ``/metrics``, runs, scrapes again; the server's quantiles come from
``latency.server_view`` and the median bucket's lower bound from its raw buckets: a client
p50 below that bound is a figure no request can have had (issue 15, item 3).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import bench_report
from bench_clients import other_realtime, run_client

PROMPT = "The quick brown fox jumps over the lazy dog"
HISTOGRAMS = {
    "ttft_ms": "vllm:time_to_first_token_seconds",
    "e2e_ms": "vllm:e2e_request_latency_seconds",
}


def _requests(users: int, quick: bool) -> int:
    return max(2, users) if quick else max(20, 2 * users)


def _quantiles(values: list[float]) -> dict[str, float]:
    from pytest_vllm_conformance.perf.stats import percentile

    ok = sorted(v for v in values if not math.isnan(v))
    return {f"p{q}": percentile(ok, q) for q in (50, 95)} if ok else {}


def start_vllm(split: bool, server_cpu: int) -> Any:
    """The project's own launcher for the tiny model, pinned to ``server_cpu`` when split."""
    from pytest_vllm_conformance.config import TINY, Settings
    from pytest_vllm_conformance.target.local import LocalVllmServer

    def pin(cmd: list[str], env: dict[str, str]) -> None:
        if split:
            cmd[:0] = ["taskset", "-c", str(server_cpu)]
            env["VLLM_CPU_OMP_THREADS_BIND"] = str(server_cpu)

    out = Path("reports") / ("bench-real-split" if split else "bench-real-shared")
    server = LocalVllmServer(Settings(serve=TINY, output_dir=out), edit_command=pin)
    server.start()
    return server


def level_figures(users: int, run: dict[str, Any], split: bool) -> dict[str, Any]:
    """One level's row: client quantiles, server quantiles and the median buckets' floors."""
    from pytest_vllm_conformance.perf import latency

    before, after = run["metrics_before"], run["metrics_after"]
    floors = {}
    for metric, name in HISTOGRAMS.items():
        floor = bench_report.median_bucket_floor(
            latency.histogram_buckets(before, name), latency.histogram_buckets(after, name)
        )
        if not math.isnan(floor):
            floors[metric] = floor * 1000
    return {
        "split": split,
        "users": users,
        "requests": len(run["ttft_ms"]),
        "failed": run["failed"],
        "selfcheck": run.get("selfcheck"),
        "client": {m: _quantiles(run[m]) for m in ("ttft_ms", "e2e_ms")},
        "server": latency.server_view(before, after),
        "server_floor_ms": floors,
    }


def real(
    users: list[int], tokens: int, quick: bool, client_cpu: int, server_cpu: int
) -> dict[str, Any]:
    result: dict[str, Any] = {"scenario": "real", "runs": []}
    intruders = other_realtime()
    for split in (True, False):
        server = start_vllm(split, server_cpu)
        try:
            jobs = [
                {
                    "url": server.url,
                    "concurrency": u,
                    "requests": _requests(u, quick),
                    "warmup": min(u, 8),
                    "tokens": tokens,
                    "metrics": True,
                    "model": "tiny",
                    "prompt": PROMPT,
                }
                for u in users
            ]
            runs = run_client("ours", jobs, cpu=client_cpu if split else None)
            result["runs"] += [level_figures(u, r, split) for u, r in zip(users, runs, strict=True)]
        finally:
            server.stop()
    if intruders := sorted(set(intruders + other_realtime())):
        result["note"] = (
            "figures NOT valid: other real-time processes ran during the scenario: "
            + "; ".join(intruders)
        )
    return result
