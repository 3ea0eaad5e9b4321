"""The HTML report, opened in a real headless browser (Debian's chromium).

It renders with an empty console, a screenshot is taken, it fetches nothing from outside,
every failure shows under its title, and a server that sends ``<script>`` cannot run it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fault_server import FaultServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-extensions",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.fail(
            "chromium is not installed: the Makefile's setup installs it "
            "(apt-get install chromium)",
            pytrace=False,
        )
    return subprocess.run(
        [CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def browser_checks(html: Path, out: Path) -> str:
    """Render, screenshot, and return the DOM after load; fail on console errors."""
    url = html.resolve().as_uri()
    shot = chromium(f"--screenshot={out / 'report.png'}", "--window-size=1280,1600", url, cwd=out)
    assert (out / "report.png").stat().st_size > 10_000, shot.stderr[-2000:]
    dom = chromium("--dump-dom", url, cwd=out)
    console = [line for line in (shot.stderr + dom.stderr).splitlines() if "CONSOLE" in line]
    assert not console, console
    return dom.stdout


def assert_self_contained(text: str) -> None:
    remote = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?https?:""", text)
    assert not remote, remote
    assert "<script" not in text.lower().replace("&lt;script", "")


def test_report_shows_each_failure_and_runs_no_injected_script(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"html_injection", "missing_usage", "stream_no_done"}
    pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_health.py",
        "test_streaming.py",
        "test_compliance.py::test_completions_match_the_schema",
        "-p",
        "no:randomly",
    )
    html = pytester.path / "reports" / "report.html"
    text = html.read_text()
    assert_self_contained(text)
    assert "&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;" in text
    dom = browser_checks(html, pytester.path)
    assert "<title>Conformance report: fault-model" in dom  # no script renamed the page
    assert "PWNED</title>" not in dom
    for title in ("Response has no usage", "Stream does not end with [DONE]"):
        assert title in dom
    assert "FAIL:" in dom and "curl -sS" in dom


def test_a_passing_run_with_latency_and_memory(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "test_latency.py",
        "test_memory.py",
        "test_determinism.py::test_a_burst_of_identical_requests_gives_one_output",
        "--vllm-determinism-requests=5",
        "--vllm-latency-concurrency=1,4",
        "--vllm-latency-requests=8",
        "--vllm-latency-warmup=0",
        "--vllm-memory-duration=5s",
        "--vllm-memory-max-growth=1000",
        "--vllm-html=out/r.html",
        "-p",
        "no:randomly",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    html = pytester.path / "out" / "r.html"
    text = html.read_text()
    assert_self_contained(text)
    assert text.count("data:image/png;base64,") == 2  # the latency curves and the memory plot
    dom = browser_checks(html, pytester.path)
    for expected in ("PASS:", "concurrency 4", "Determinism", "Memory under load", "MB/h"):
        assert expected in dom
