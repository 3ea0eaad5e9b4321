"""How far the harness's reported TTFT/ITL sit from the truth, next to `vllm bench serve`.

    python benchmarks/harness_bias.py                  # levels 1, 32, 64, 256 + chunk rate
    python benchmarks/harness_bias.py --levels 1,32 --skip-vllm-bench

The ground truth is ``benchmarks/truth_server.py`` (TTFT 50 ms, ITL 10 ms, 64 tokens), which
logs when it read each request and when it handed each chunk to the socket. The server is
pinned to CPU 0 and each client to CPU 1 ("one core"); both clients run against the same
server in the same run. Bias = the client's reported percentile minus the same percentile
of the server's true figures (TTFT: read -> first chunk sent; ITL: gaps between chunk sends).
The chunk rate is measured with zero delays (the server writes each answer at once) and 256
streams: content chunks received per second of wall time, on the one core.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER_CPU, CLIENT_CPU = 0, 1


def _pct(values: list[float], q: float) -> float:
    from pytest_vllm_conformance.stats import percentile

    return percentile(sorted(values), q)


# -- the two clients, each run in its own process pinned to CLIENT_CPU ------------------------
def run_ours(url: str, concurrency: int, requests: int, tokens: int) -> dict[str, Any]:
    from pytest_vllm_conformance import latency
    from pytest_vllm_conformance.client import AsyncClient

    client = AsyncClient(url, timeout=600)
    body = {"model": "truth", "prompt": "x", "max_tokens": tokens, "stream": True,
            "stream_options": {"include_usage": True}}

    async def send(intended: float) -> latency.Finish:
        return latency.streamed(await client.stream("/v1/completions", body), intended)

    cpu, wall = time.process_time(), time.perf_counter()
    level = asyncio.run(latency.closed_loop("bench", send, concurrency, requests))
    return {"ttft_ms": [s.ttft_ms for s in level.ok],
            "itl_ms": [x for s in level.ok for x in s.itl_ms],
            "chunks": sum(s.client_chunks for s in level.ok), "failed": level.errors(),
            # the whole run, the parsing deferred past the level's end included
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def run_vllm_bench(url: str, concurrency: int, requests: int, tokens: int) -> dict[str, Any]:
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from pytest_vllm_conformance import tiny_model

    tokenizer = tiny_model.default_dir()
    if not tiny_model.is_built(tokenizer):
        tiny_model.build(tokenizer)
    _pin_all_threads()  # torch and vLLM's imports may have moved threads to other cores
    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    args = parser.parse_args([
        "--backend", "vllm", "--base-url", url, "--endpoint", "/v1/completions",
        "--model", "truth", "--tokenizer", str(tokenizer), "--dataset-name", "random",
        "--random-input-len", "8", "--random-output-len", str(tokens), "--num-prompts",
        str(requests), "--max-concurrency", str(concurrency), "--request-rate", "inf",
        "--ignore-eos", "--disable-tqdm", "--num-warmups", "0", "--save-detailed",
        "--ready-check-timeout-sec", "0", "--percentile-metrics", "ttft,itl,tpot,e2el"])
    cpu, wall = time.process_time(), time.perf_counter()
    result = serve.main(args)
    return {"ttft_ms": [t * 1000 for t in result["ttfts"] if t],
            "itl_ms": [x * 1000 for itl in result["itls"] for x in itl],
            "chunks": sum(result["output_lens"]), "failed": result["failed"],
            # chunks/s over its own benchmark window (kind to it: its set-up is left out);
            # CPU share over the whole call, set-up included, like ours
            "wall_s": result["duration"], "cpu_s": time.process_time() - cpu,
            "total_s": time.perf_counter() - wall}


def _pin_all_threads() -> None:
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {CLIENT_CPU})


# -- the orchestration -----------------------------------------------------------------------
def _free_port() -> int:
    from pytest_vllm_conformance.server import free_port

    return free_port()


class Truth:
    def __init__(self, ttft_ms: float, itl_ms: float, tokens: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "truth_server.py"), str(self.port), "--ttft-ms",
             str(ttft_ms), "--itl-ms", str(itl_ms), "--tokens", str(tokens),
             "--cpu", str(SERVER_CPU)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "truth server on ..."

    def log(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/_log", timeout=30) as r:
            out: list[dict[str, Any]] = json.load(r)
            return out

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _client(kind: str, url: str, concurrency: int, requests: int, tokens: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--client", kind, "--url", url,
                        "--concurrency", str(concurrency), "--requests", str(requests),
                        "--tokens", str(tokens), "--out", out.name], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


def _bias(reported: dict[str, Any], truth: list[dict[str, Any]]) -> dict[str, float]:
    ttft = [(r["sent"][0] - r["read"]) * 1000 for r in truth if r["sent"]]
    itl = [(b - a) * 1000 for r in truth for a, b in itertools.pairwise(r["sent"])]
    out = {}
    for name, true in (("ttft", ttft), ("itl", itl)):
        for q in (50, 99):
            out[f"{name}_p{q}"] = _pct(reported[f"{name}_ms"], q) - _pct(true, q)
    out["true_ttft_p50"] = _pct(ttft, 50)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,32,64,256")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--skip-vllm-bench", action="store_true")
    parser.add_argument("--client", choices=("ours", "vllm"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:  # a child: one client run, pinned to its core
        os.sched_setaffinity(0, {CLIENT_CPU})
        run = run_ours if args.client == "ours" else run_vllm_bench
        Path(args.out).write_text(json.dumps(run(args.url, args.concurrency, args.requests,
                                                 args.tokens)))
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        print("error: this benchmark needs 2 CPUs (server and client pinned apart)",
              file=sys.stderr)
        return 2
    clients = ["ours"] + ([] if args.skip_vllm_bench else ["vllm"])
    names = {"ours": "pytest-vllm-conformance", "vllm": "vllm bench serve"}
    print("| client | streams | requests | true TTFT p50 ms | TTFT bias p50 | TTFT bias p99 | "
          "ITL bias p50 | ITL bias p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for level in (int(x) for x in args.levels.split(",")):
        requests = max(20, 2 * level)
        for kind in clients:
            truth = Truth(50, 10, args.tokens)
            try:
                reported = _client(kind, truth.url, level, requests, args.tokens)
                b = _bias(reported, truth.log())
            finally:
                truth.stop()
            print(f"| {names[kind]} | {level} | {requests} | {b['true_ttft_p50']:.1f} | "
                  f"{b['ttft_p50']:+.2f} ms | {b['ttft_p99']:+.2f} ms | {b['itl_p50']:+.3f} ms | "
                  f"{b['itl_p99']:+.3f} ms |", flush=True)
    print("\n| client | streams | chunks | chunks/s (one core) | client CPU |")
    print("|---|---|---|---|---|")
    for kind in clients:
        truth = Truth(0, 0, args.tokens)
        try:
            r = _client(kind, truth.url, 256, 2048, args.tokens)
        finally:
            truth.stop()
        print(f"| {names[kind]} | 256 | {r['chunks']} | {r['chunks'] / r['wall_s']:,.0f} | "
              f"{100 * r['cpu_s'] / r.get('total_s', r['wall_s']):.0f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
