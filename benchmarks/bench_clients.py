"""The benchmark's clients, each run as a child process with its own CPU and its own clock.

    python benchmarks/bench_clients.py --client ours|vllm --jobs JOBS.json --out OUT.json [--cpu 1]

A child imports what it needs (``vllm`` alone takes ~24 s), prints "ready", and waits for a
line on stdin before it measures anything: the parent starts the busy loop of a starved
scenario only then, so imports are never what gets starved. Each job is one level (a URL, a
concurrency, a request count); for the truth server the child clears its log before the level
and returns it after; for a real server it scrapes ``/metrics`` before and after. Our client's
levels run under the harness's self-check (``pytest_vllm_conformance.perf.selfcheck``) when the
package has it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import busy_loop

T = TypeVar("T")
Job = dict[str, Any]
Runner = Callable[[Job], dict[str, Any]]
NO_SELFCHECK = "pytest_vllm_conformance.perf.selfcheck is not available in this checkout"


# -- the self-check adapter: the only code that knows selfcheck's API ----------------------------
def selfcheck_module() -> ModuleType | None:
    try:
        return importlib.import_module("pytest_vllm_conformance.perf.selfcheck")
    except ImportError:
        return None


def _plain(value: Any) -> Any:
    """JSON-ready copy of a figure (dataclasses, mappings, sequences, numbers, text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def health_figures(health: Any) -> dict[str, Any]:
    """The verdict of one level, as the benchmark's JSON holds it."""
    figures = health.as_dict() if hasattr(health, "as_dict") else health
    return {
        "client_limited": bool(health.client_limited),
        "reason": str(health.reason or ""),
        "figures": _plain(figures),
    }


async def monitored(
    run: Callable[[], Awaitable[T]],
    samples: Callable[[T], Iterable[Any]],
    module: ModuleType | None = None,
) -> tuple[T, dict[str, Any]]:
    """Run one level under ``selfcheck.Monitor`` and judge it with its ``samples``; without
    the module, say so (no verdict)."""
    module = module or selfcheck_module()
    if module is None:
        return await run(), {"client_limited": None, "reason": NO_SELFCHECK, "figures": {}}
    with module.Monitor(asyncio.get_running_loop()) as monitor:
        out = await run()
    return out, health_figures(monitor.result(samples(out)))


# -- the two clients ------------------------------------------------------------------------------
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _get(url: str) -> str:
    with _LOOPBACK.open(url, timeout=30) as r:
        text: str = r.read().decode("utf-8", "replace")
        return text


def _body(job: Job) -> dict[str, Any]:
    return {
        "model": job.get("model", "truth"),
        "prompt": job.get("prompt", "x"),
        "max_tokens": job["tokens"],
        "stream": True,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }


def _around(job: Job, level: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Clear the truth log / scrape /metrics around one level, and time it."""
    if job.get("truth"):
        _get(f"{job['url']}/_log")
    before = _get(f"{job['url']}/metrics") if job.get("metrics") else ""
    cpu, wall = time.process_time(), time.perf_counter()
    out = level()
    out.setdefault("wall_s", time.perf_counter() - wall)
    out["cpu_s"] = time.process_time() - cpu
    out["total_s"] = time.perf_counter() - wall
    if job.get("truth"):
        out["truth_log"] = json.loads(_get(f"{job['url']}/_log"))
    if job.get("metrics"):
        out["metrics_before"], out["metrics_after"] = before, _get(f"{job['url']}/metrics")
    return out


def prepare_ours() -> Runner:
    from pytest_vllm_conformance.client import AsyncClient
    from pytest_vllm_conformance.perf import latency

    def run(job: Job) -> dict[str, Any]:
        client = AsyncClient(job["url"], timeout=600)
        body = _body(job)

        async def send(intended: float) -> latency.Finish:
            return latency.streamed(await client.stream("/v1/completions", body), intended)

        async def level() -> tuple[latency.Level, dict[str, Any]]:
            if job.get("warmup"):
                await latency.closed_loop("warm", send, job["concurrency"], job["warmup"])
            return await monitored(
                lambda: latency.closed_loop("bench", send, job["concurrency"], job["requests"]),
                lambda lvl: lvl.samples,
            )

        def measured() -> dict[str, Any]:
            lvl, health = asyncio.run(level())
            return {
                "ttft_ms": [s.ttft_ms for s in lvl.ok],
                "e2e_ms": [s.e2e_ms for s in lvl.ok],
                "itl_ms": [x for s in lvl.ok for x in s.itl_ms],
                "chunks": sum(s.client_chunks for s in lvl.ok),
                "failed": lvl.errors(),
                "level_wall_s": lvl.wall_s,
                "selfcheck": health,
            }

        return _around(job, measured)

    return run


def prepare_vllm(cpu: int | None) -> Runner:
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from pytest_vllm_conformance.target import tiny_model

    tokenizer = tiny_model.default_dir()
    if not tiny_model.is_built(tokenizer):
        tiny_model.build(tokenizer)
    if cpu is not None:  # torch and vLLM's imports may have moved threads to other cores
        for tid in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(tid), {cpu})

    def run(job: Job) -> dict[str, Any]:
        parser = FlexibleArgumentParser()  # type: ignore[no-untyped-call]
        serve.add_cli_args(parser)
        args = parser.parse_args(
            [
                "--backend",
                "vllm",
                "--base-url",
                job["url"],
                "--endpoint",
                "/v1/completions",
                "--model",
                job.get("model", "truth"),
                "--tokenizer",
                str(tokenizer),
                "--dataset-name",
                "random",
                "--random-input-len",
                "8",
                "--random-output-len",
                str(job["tokens"]),
                "--num-prompts",
                str(job["requests"]),
                "--max-concurrency",
                str(job["concurrency"]),
                "--request-rate",
                "inf",
                "--ignore-eos",
                "--disable-tqdm",
                "--num-warmups",
                "0",
                "--save-detailed",
                "--ready-check-timeout-sec",
                "0",
                "--percentile-metrics",
                "ttft,itl,tpot,e2el",
            ]
        )

        def measured() -> dict[str, Any]:
            result = serve.main(args)
            # chunks/s over its own benchmark window (kind to it: its set-up is left out)
            return {
                "ttft_ms": [t * 1000 for t in result["ttfts"] if t],
                "itl_ms": [x * 1000 for itl in result["itls"] for x in itl],
                "chunks": sum(result["output_lens"]),
                "failed": result["failed"],
                "wall_s": result["duration"],
            }

        return _around(job, measured)

    return run


def child(kind: str, jobs: list[Job], cpu: int | None) -> list[dict[str, Any]]:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    run = prepare_ours() if kind == "ours" else prepare_vllm(cpu)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the parent has set the scene (a busy loop, or nothing)
    return [run(job) for job in jobs]


# -- the parent's side ----------------------------------------------------------------------------
def other_realtime() -> list[str]:
    """User-space processes at real-time priority (another benchmark's busy loop, say): while
    one runs, no figure of this benchmark is valid. Kernel threads (no command line) are left
    out; the benchmark's own are stopped before this is asked."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.sched_getscheduler(int(entry.name)) not in (os.SCHED_FIFO, os.SCHED_RR):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue  # ended while being read, or not ours to see
        if cmdline:
            words = " ".join(cmdline.decode(errors="replace").split())
            found.append(f"{entry.name} {words[:120]}")
    return found


class ClientRunError(RuntimeError):
    pass


def run_client(
    kind: str,
    jobs: list[Job],
    cpu: int | None = None,
    starve_cpu: int | None = None,
    timeout_s: float = 600,
) -> list[dict[str, Any]]:
    """Run ``jobs`` in a child client; with ``starve_cpu``, under a real-time busy loop there
    (raises PermissionError when the kernel refuses it)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, out, log = Path(tmp, "jobs.json"), Path(tmp, "out.json"), Path(tmp, "child.log")
        spec.write_text(json.dumps(jobs))
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--client",
            kind,
            "--jobs",
            str(spec),
            "--out",
            str(out),
        ] + ([] if cpu is None else ["--cpu", str(cpu)])
        with log.open("w") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
            assert proc.stdin is not None and proc.stdout is not None
            loop = None
            try:
                if proc.stdout.readline().strip() != "ready":
                    proc.wait(timeout=30)
                    raise ClientRunError(f"the {kind} client did not start: {_tail(log)}")
                if starve_cpu is not None:
                    loop = busy_loop.start(starve_cpu, duration_s=timeout_s)
                proc.stdin.write("go\n")
                proc.stdin.close()
                code = proc.wait(timeout=timeout_s)
            finally:
                if loop is not None:
                    busy_loop.stop(loop)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if code != 0:
            raise ClientRunError(f"the {kind} client failed (exit {code}): {_tail(log)}")
        results: list[dict[str, Any]] = json.loads(out.read_text())
        return results


def _tail(log: Path, lines: int = 8) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) or "no output"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=("ours", "vllm"), required=True)
    parser.add_argument("--jobs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    results = child(args.client, json.loads(Path(args.jobs).read_text()), args.cpu)
    Path(args.out).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
