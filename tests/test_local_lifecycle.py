"""Everything ``--vllm-serve`` starts is stopped on every exit path, its logs kept.

Each test runs pytest as a separate process (as a user would), with an environment variable
of its own that every process the run starts inherits; afterwards no process carrying it may
be left (the real vLLM's engine core included), and every log is in the output folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_vllm_conformance.target.process import RUN_MARKER_ENV

MARK = "VLLM_CONFORMANCE_TEST_MARK"
#: two vLLM servers starting side by side on this box's 2 cores take about 100 s
READY_WITHIN_S = 420.0


@dataclass
class Run:
    """A pytest process started with its own mark, and the lines it printed so far."""

    proc: subprocess.Popen[str]
    mark: str
    out: Path
    lines: list[str]

    def wait_for(self, text: str, within_s: float) -> None:
        """Read its output until a line holds ``text``; fail if it ends or takes too long."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            self.lines.append(line.rstrip("\n"))
            if text in line:
                return
        pytest.fail(f"never printed {text!r}:\n" + "\n".join(self.lines[-40:]), pytrace=False)

    def finish(self, within_s: float = 120) -> int:
        out, _ = self.proc.communicate(timeout=within_s)
        self.lines += out.splitlines()
        return self.proc.returncode

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def marked_processes(mark: str) -> dict[int, bytes]:
    """Every live process whose environment carries ``MARK=mark``: pid -> its environment."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or a zombie
        if f"{MARK}={mark}".encode() in environ.split(b"\0"):
            found[int(entry.name)] = environ
    return found


@pytest.fixture
def start_run() -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:  # a failed test still leaves nothing behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGKILL)  # its own session: pytest and the builder
        run.proc.wait()
        for pid in marked_processes(run.mark):
            with contextlib.suppress(ProcessLookupError):
                group = os.getpgid(pid)
                if group == os.getpgrp():  # never this test run's own group
                    os.kill(pid, signal.SIGKILL)
                else:
                    os.killpg(group, signal.SIGKILL)


def ctrl_c_as_in_a_terminal() -> None:
    """In the child before it runs: Ctrl-C does what it does in a terminal. A test run started
    in the background (``cmd &``, nohup) ignores SIGINT, its children inherit that, and
    Python then installs no KeyboardInterrupt handler: the signal would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(runs: list[Run], tmp_path: Path, *args: str) -> Run:
    mark = uuid.uuid4().hex
    out = tmp_path / "reports"
    env = {**os.environ, MARK: mark, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]
    cmd += ["--vllm-serve=tiny", f"--vllm-output-dir={out}", "--vllm-cpu-split=off", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # killed as a group, never with this run's own group
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    runs.append(Run(proc, mark, out, []))
    return runs[-1]


def _nothing_left(run: Run) -> None:
    deadline = time.monotonic() + 5  # an orphan is reaped by init, not at once
    while (left := marked_processes(run.mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"left running: {sorted(left)}\n{run.text}"


def test_ctrl_c_once_the_split_topology_is_up_stops_every_process(
    start_run: list[Run], tmp_path: Path
) -> None:
    # the latency suite: tests that last minutes, so the Ctrl-C lands in one, not after
    run = _start(start_run, tmp_path, "--vllm-topology=split", "-m", "latency")
    run.wait_for("vllm-conformance: started topology split", READY_WITHIN_S)
    running = marked_processes(run.mark)
    ours = {pid for pid, env in running.items() if RUN_MARKER_ENV.encode() in env}
    # two vLLM servers with their engine cores, and HAProxy, each carrying the run's id
    assert len(ours) >= 5, run.text
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == pytest.ExitCode.INTERRUPTED, run.text
    _nothing_left(run)
    for log in ("vllm-server.log", "vllm-embed-server.log", "haproxy.log"):
        assert (run.out / log).stat().st_size > 0, log
        assert f"stopped; its log is {run.out / log}" in run.text


def test_sigterm_during_start_up_stops_every_process(start_run: list[Run], tmp_path: Path) -> None:
    run = _start(start_run, tmp_path)
    run.wait_for("vllm-conformance: starting vLLM embedding server", 120)
    time.sleep(3)  # both servers spawned and importing vLLM
    assert len(marked_processes(run.mark)) >= 3  # pytest and the two servers
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == pytest.ExitCode.INTERRUPTED, run.text
    _nothing_left(run)
    assert (run.out / "vllm-server.log").exists() and (run.out / "vllm-embed-server.log").exists()


def test_a_failing_router_stops_the_servers_already_started(
    start_run: list[Run], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.cfg"
    bad.write_text("frontend api\n    bind :notaport\n")
    run = _start(start_run, tmp_path, "--vllm-topology=split", f"--vllm-router-config={bad}")
    assert run.finish() == pytest.ExitCode.USAGE_ERROR, run.text
    assert "ERROR: the HAProxy router exited with code" in run.text
    _nothing_left(run)
    assert (run.out / "haproxy.log").exists() and (run.out / "vllm-server.log").exists()


def test_a_failing_vllm_server_stops_the_others(start_run: list[Run], tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "def pytest_vllm_server_command(settings, command, env):\n"
        "    if '--convert' in command:  # the embedding server only\n"
        "        command.append('--no-such-option')\n"
    )
    run = _start(start_run, tmp_path, "--vllm-topology=split")
    assert run.finish(300) == pytest.ExitCode.USAGE_ERROR, run.text
    assert "ERROR: the vLLM embedding server exited with code" in run.text
    assert "no-such-option" in (run.out / "vllm-embed-server.log").read_text()
    _nothing_left(run)
