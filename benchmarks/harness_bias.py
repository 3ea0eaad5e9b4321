"""How far the harness's reported TTFT/ITL sit from the truth, next to `vllm bench serve`,
on a calm machine, on a starved one, and against a real CPU vLLM's own histograms.

    python benchmarks/harness_bias.py --scenario all --out reports/bench.json   # ~5-6 min
    python benchmarks/harness_bias.py --scenario unstarved     # levels 1, 32 + chunk rate
    python benchmarks/harness_bias.py --scenario starved       # the client's core taken
    python benchmarks/harness_bias.py --scenario real          # CPU vLLM, 1/8/50 users
    python benchmarks/harness_bias.py --scenario starved --quick --skip-vllm-bench  # smoke

The ground truth is ``benchmarks/truth_server.py`` (TTFT 50 ms, ITL 10 ms, 64 tokens), which
logs when it read each request and when it handed each chunk to the socket. The server is
pinned to CPU 0 and each client to CPU 1 ("one core"); both clients run against the same
server. Bias = the client's reported percentile minus the same percentile of the server's
true figures (TTFT: read -> first chunk sent; ITL: gaps between chunk sends).

- unstarved: as above; plus the chunk rate with zero delays and 256 streams (content chunks
  received per second of wall time, on the one core).
- starved: the truth server at SCHED_FIFO on CPU 0, and a SCHED_FIFO busy loop (150 ms on,
  50 ms off; ``busy_loop.py``) sharing CPU 1 with the client. Needs root or CAP_SYS_NICE.
- real: CPU vLLM on the tiny model at 1, 8 and 50 users; our client's TTFT/E2E against the
  server's histograms, with the core split (server and its OpenMP threads on CPU 0, client on
  CPU 1) and without (nothing pinned).

Our client's levels carry the harness's self-check verdict (``client_limited``). Each scenario
prints a Markdown table for the README and its "done means" checks (issue 15); ``--out`` keeps
the figures as JSON (``python benchmarks/bench_report.py FILE`` re-renders them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import bench_report
from bench_clients import other_realtime, run_client

HERE = Path(__file__).resolve().parent
SERVER_CPU, CLIENT_CPU = 0, 1
FIFO_PRIORITY = 60  # the truth server's: above the busy loop's 50, so the truth stays true


def _pct(values: list[float], q: float) -> float:
    from pytest_vllm_conformance.perf.stats import percentile

    return percentile(sorted(values), q) if values else float("nan")


def _free_port() -> int:
    from pytest_vllm_conformance.target.local import free_port

    return free_port()


class Truth:
    """The truth server, pinned to SERVER_CPU (at real-time priority when ``fifo``)."""

    def __init__(self, ttft_ms: float, itl_ms: float, tokens: int, fifo: bool = False) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "truth_server.py"),
                str(self.port),
                "--ttft-ms",
                str(ttft_ms),
                "--itl-ms",
                str(itl_ms),
                "--tokens",
                str(tokens),
                "--cpu",
                str(SERVER_CPU),
            ]
            + (["--fifo", str(FIFO_PRIORITY)] if fifo else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        if not self.proc.stdout.readline().startswith("truth server"):
            self.proc.wait(timeout=10)
            last = (self.proc.stderr.read().strip().splitlines() or ["no output"])[-1]
            raise PermissionError(f"the truth server did not start: {last}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def bias(reported: dict[str, Any], truth: list[dict[str, Any]]) -> dict[str, float]:
    ttft = [(r["sent"][0] - r["read"]) * 1000 for r in truth if r["sent"]]
    itl = [(b - a) * 1000 for r in truth for a, b in itertools.pairwise(r["sent"])]
    out = {"true_ttft_p50_ms": _pct(ttft, 50)}
    for name, true in (("ttft", ttft), ("itl", itl)):
        for q in (50, 99):
            out[f"{name}_bias_p{q}_ms"] = _pct(reported[f"{name}_ms"], q) - _pct(true, q)
    return out


def _requests(level: int, quick: bool) -> int:
    return max(4, level) if quick else max(20, 2 * level)


def synthetic(
    starved: bool, clients: list[str], levels: list[int], tokens: int, quick: bool
) -> dict[str, Any]:
    """One synthetic scenario: bias per client and level (+ the chunk rate when calm)."""
    result: dict[str, Any] = {
        "scenario": "starved" if starved else "unstarved",
        "levels": [],
        "chunk_rate": [],
    }
    intruders = other_realtime()
    truth = Truth(50, 10, tokens, fifo=starved)
    rate = None if starved else Truth(0, 0, tokens)
    try:
        for kind in clients:
            jobs = [
                {
                    "url": truth.url,
                    "concurrency": c,
                    "requests": _requests(c, quick),
                    "tokens": tokens,
                    "truth": True,
                }
                for c in levels
            ]
            if rate is not None:
                jobs.append(
                    {
                        "url": rate.url,
                        "concurrency": 256,
                        "requests": 512 if quick else 2048,
                        "tokens": tokens,
                    }
                )
            runs = run_client(
                kind, jobs, cpu=CLIENT_CPU, starve_cpu=CLIENT_CPU if starved else None
            )
            for job, run in zip(jobs, runs, strict=True):
                row = {
                    "client": kind,
                    "streams": job["concurrency"],
                    "requests": job["requests"],
                    "failed": run["failed"],
                    "selfcheck": run.get("selfcheck"),
                }
                if job.get("truth"):
                    result["levels"].append(row | bias(run, run["truth_log"]))
                else:
                    result["chunk_rate"].append(
                        row
                        | {
                            "chunks": run["chunks"],
                            "chunks_per_s": run["chunks"] / run["wall_s"],
                            "cpu_share": run["cpu_s"] / run["total_s"],
                        }
                    )
    finally:
        truth.stop()
        if rate is not None:
            rate.stop()
    if intruders := sorted(set(intruders + other_realtime())):
        result["note"] = (
            "figures NOT valid: other real-time processes ran during the scenario: "
            + "; ".join(intruders)
        )
    return result


def _refused(scenario: str, why: str) -> dict[str, Any]:
    return {"scenario": scenario, "levels": [], "runs": [], "note": f"not run: {why}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", default="unstarved", choices=("unstarved", "starved", "real", "all")
    )
    parser.add_argument("--levels", default="1,32", help="synthetic streams (default 1,32)")
    parser.add_argument("--users", default="1,8,50", help="real scenario users (1,8,50)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few requests per level: proves the code, not the figures",
    )
    parser.add_argument("--skip-vllm-bench", action="store_true")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print(
            "error: this benchmark needs 2 CPUs (server and client pinned apart)", file=sys.stderr
        )
        return 2
    command = "python benchmarks/harness_bias.py " + shlex.join(sys.argv[1:])
    clients = ["ours"] + ([] if args.skip_vllm_bench else ["vllm"])
    levels = [int(x) for x in args.levels.split(",")]
    names = ["unstarved", "starved", "real"] if args.scenario == "all" else [args.scenario]
    results = []
    for name in names:
        try:
            if name == "real":
                from real_scenario import real

                result = real(
                    [int(x) for x in args.users.split(",")],
                    args.tokens,
                    args.quick,
                    CLIENT_CPU,
                    SERVER_CPU,
                )
            else:
                result = synthetic(name == "starved", clients, levels, args.tokens, args.quick)
        except PermissionError as exc:
            result = _refused(name, str(exc))
        result["command"] = command
        results.append(result)
        print(bench_report.render(result), end="\n\n", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results if len(names) > 1 else result, indent=1))
    return 0 if all(bench_report.all_met(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
