"""The shipped locustfile, run by locust itself: real engines, distributed mode, bad targets."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vllm_conformance.cli import main as cli
from pytest_vllm_conformance.perf.locust import LOCUSTFILE
from pytest_vllm_conformance.perf.locust.report import LoadReport, read
from pytest_vllm_conformance.target.local import free_port
from tests.fault_server import FaultServer

# Never import locust here: its __init__ monkey-patches the whole process with gevent,
# which would hang the fault server's thread. Locust runs in its own processes only.
if importlib.util.find_spec("locust") is None:
    pytest.fail("locust is not installed: pip install -e '.[test]'", pytrace=False)

CHAT = "/v1/chat/completions"


def locust(
    host: str,
    *args: str,
    seconds: int = 6,
    users: int = 2,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """A headless run of the shipped locustfile, writing ``cwd/run_*.csv``."""
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--csv",
        str(cwd / "run"),
        "--host",
        host,
        "--only-summary",
        *args,
    ]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def assert_clean(report: LoadReport, out: subprocess.CompletedProcess[str]) -> None:
    requests, failed = report.totals()
    assert out.returncode == 0 and failed == 0 and not report.failures, report.markdown()
    assert requests > 0
    assert "Traceback" not in out.stderr, out.stderr


def assert_stream_timings(report: LoadReport, max_tokens: int) -> None:
    """TTFT, ITL, TPOT and TOKENS entries exist, one per stream, and are plausible."""
    stream = report.entry("POST", f"{CHAT} (stream)")
    ttft, itl, tokens = (report.entry(k, CHAT) for k in ("TTFT", "ITL", "TOKENS"))
    assert stream and ttft and itl and tokens, report.markdown()
    assert ttft.summary.count == stream.summary.count == tokens.summary.count > 0
    assert ttft.summary.min > 0 and ttft.summary.max <= stream.summary.max
    assert ttft.summary.mean < stream.summary.mean  # the first token comes before the last
    assert itl.summary.count >= stream.summary.count  # >= 1 gap per stream of >= 2 chunks
    assert tokens.summary.min >= 1 and tokens.summary.max <= max_tokens
    assert not math.isnan(ttft.summary.p99)


@pytest.mark.parametrize("engine", ["vllm", "llamacpp"])
def test_headless_run_against_a_real_engine(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(f"{engine}_url")
    out = locust(
        url, "--vllm-max-tokens", "16", "CompletionsUser", "StreamingChatUser", cwd=tmp_path
    )
    report = read(tmp_path / "run")
    assert_clean(report, out)
    assert report.entry("GET", "/v1/models")  # the model was discovered, not given
    assert report.entry("POST", "/v1/completions")
    assert_stream_timings(report, max_tokens=16)


def test_embeddings_against_real_vllm(vllm_embed_url: str, tmp_path: Path) -> None:
    out = locust(
        vllm_embed_url, "--vllm-embedding-batch", "4", "EmbeddingsUser", seconds=4, cwd=tmp_path
    )
    report = read(tmp_path / "run")
    assert_clean(report, out)
    embeddings = report.entry("POST", "/v1/embeddings")
    assert embeddings and embeddings.summary.count > 0 and embeddings.summary.p50 > 0


def test_report_tables_json_and_plot(
    fault: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = locust(fault.url, "CompletionsUser", "StreamingChatUser", seconds=3, cwd=tmp_path)
    report = read(tmp_path / "run")
    assert_clean(report, out)
    assert_stream_timings(report, max_tokens=32)
    assert (
        cli(
            [
                "load",
                str(tmp_path / "run"),
                "--json",
                str(tmp_path / "r.json"),
                "--plot",
                str(tmp_path / "r.png"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| TTFT /v1/chat/completions |" in table
    assert "| TOKENS /v1/chat/completions (tokens) |" in table
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    schema = json.loads((tmp_path / "r.json").read_text())["schema"]
    assert schema == "pytest-vllm-conformance/locust-report/1"


def test_master_and_two_workers_merge_their_counts(fault: FaultServer, tmp_path: Path) -> None:
    port = free_port()
    common = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--master-port", str(port)]
    workers = [
        subprocess.Popen(
            [*common, "--worker", "--master-host", "127.0.0.1", "CompletionsUser"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        before = fault.requests
        master = subprocess.run(
            [
                *common,
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
                "--headless",
                "--expect-workers",
                "2",
                "--expect-workers-max-wait",
                "30",
                "-u",
                "4",
                "-r",
                "4",
                "-t",
                "4s",
                "--csv",
                str(tmp_path / "run"),
                "--host",
                fault.url,
                "CompletionsUser",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tmp_path,
        )
        served = fault.requests - before
        for w in workers:
            assert w.wait(timeout=30) == 0, w.stderr.read() if w.stderr else ""
    finally:
        for w in workers:
            w.kill()
    assert "2 workers connected" in master.stderr, master.stderr[-2000:]
    report = read(tmp_path / "run")
    assert_clean(report, master)
    counted = report.entry("POST", "/v1/completions")
    assert counted is not None
    # every request the workers finished reached the master; at most one in flight per user
    # was cut off by the stop (served, never counted), and each worker's probe is not counted
    assert counted.summary.count <= served <= counted.summary.count + 4 + 2, (counted, served)


def test_nothing_listening_is_a_clear_failure_and_ends_on_time(tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    out = locust(
        host, "--vllm-model", "m", "CompletionsUser", "StreamingChatUser", seconds=3, cwd=tmp_path
    )
    took = time.monotonic() - started
    report = read(tmp_path / "run")
    assert out.returncode == 1  # locust's own "there were failures"
    assert took < 15, took
    errors = {f["Error"] for f in report.failures}
    assert errors == {f"cannot connect to {host}: connection refused"}, report.failures
    assert "Traceback" not in out.stderr, out.stderr


def test_the_servers_error_message_is_the_failure(fault: FaultServer, tmp_path: Path) -> None:
    fault.faults = {"completions_500"}
    out = locust(fault.url, "CompletionsUser", seconds=2, users=1, cwd=tmp_path)
    report = read(tmp_path / "run")
    assert out.returncode == 1
    assert {f["Error"] for f in report.failures} == {"HTTP 500: internal failure"}


def test_a_broken_stream_is_a_failure(fault: FaultServer, tmp_path: Path) -> None:
    fault.faults = {"stream_no_done"}
    locust(fault.url, "StreamingChatUser", seconds=2, users=1, cwd=tmp_path)
    errors = {f["Error"] for f in read(tmp_path / "run").failures}
    assert errors == {"the stream ended without data: [DONE]"}


def test_a_bad_prompt_file_is_one_line(fault: FaultServer, tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"text": "no prompt key"}\n')
    out = locust(
        fault.url,
        "--vllm-prompts",
        str(tmp_path / "p.jsonl"),
        "CompletionsUser",
        seconds=2,
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "locust: --vllm-prompts: line 1 of" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_key_is_sent_and_never_printed(fault: FaultServer, tmp_path: Path) -> None:
    key = "sk-locust-distinctive-7f3a9"
    fault.api_key = key
    out = locust(
        fault.url, "CompletionsUser", seconds=2, users=1, cwd=tmp_path, env={"VLLM_API_KEY": key}
    )
    assert_clean(read(tmp_path / "run"), out)
    written = out.stdout + out.stderr + "".join(p.read_text() for p in tmp_path.glob("run*.csv"))
    assert key not in written
