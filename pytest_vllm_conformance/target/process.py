"""One local process the plugin starts: its own process group, its log, its health.

A vLLM server forks an engine core, HAProxy may fork a worker: each process runs in a
session of its own, so a signal to its group reaches every process it made, and the
terminal's Ctrl-C reaches only pytest (which then stops them in order). Every process
carries :data:`RUN_MARKER_ENV` in its environment, so what one run left can be found.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from pytest_vllm_conformance.target import cpu_split, health

#: every process a run starts carries this variable, set to the run's id
RUN_MARKER_ENV = "VLLM_CONFORMANCE_RUN"
_LOG_TAIL_LINES = 15
STOP_GRACE_S = 20.0
_PR_SET_PDEATHSIG = 1


class ServerStartError(Exception):
    """A process did not come up; the message says why and quotes its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (each socket held until all are chosen)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return indented_tail(text, lines)


def indented_tail(text: str, lines: int, empty: str = "") -> str:
    """The last ``lines`` lines of ``text``, indented for quoting in an error."""
    return "\n".join("    " + line for line in text.splitlines()[-lines:] or [empty])


def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    """The ``preexec_fn``: pin to ``cpus`` (its children inherit the mask) and ask the kernel
    for SIGTERM should pytest die without stopping it (Linux). The kernel sends it when the
    spawning *thread* ends, so only a spawn from the main thread asks for it."""
    pin = cpu_split.child_affinity(cpus)
    prctl = None
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(Exception):  # resolved here: no dlsym after fork
            prctl = ctypes.CDLL(None).prctl
    parent = os.getpid()

    def setup() -> None:
        if pin is not None:
            pin()
        if prctl is not None:
            with contextlib.suppress(Exception):
                prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
            if os.getppid() != parent:  # pytest died before the request took effect
                os._exit(1)

    return setup


def spawn(
    cmd: list[str], env: dict[str, str], log: IO[bytes], cpus: frozenset[int] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, output to ``log``, pinned to ``cpus`` when given
    (the affinity is set in the child before it runs, so its every process inherits it)."""
    return subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_child_setup(cpus),
    )


class LocalProcess:
    """A started process group with a log file and a ``/health`` URL.

    Subclasses say what to run (:meth:`launch`) and how messages name it (``label``)."""

    label = "process"

    def __init__(self, log_path: Path, say: Callable[[str], None]) -> None:
        self.log_path = log_path
        self.say = say
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.spawned_at = 0.0

    # -- start --------------------------------------------------------------------------------
    def run(self, cmd: list[str], env: dict[str, str], cpus: frozenset[int] | None) -> None:
        """Spawn ``cmd`` with its output in the log; return at once (see :meth:`wait_healthy`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            try:
                self.proc = spawn(cmd, env, log, cpus)
            except OSError as exc:
                raise ServerStartError(self.cannot_run(cmd[0], exc)) from None
        self.spawned_at = time.monotonic()

    def cannot_run(self, program: str, exc: OSError) -> str:
        return f"cannot run {program}: {exc.strerror}."

    def wait_healthy(self, limit_s: float, before: Callable[[], None] | None = None) -> None:
        """Block until ``/health`` answers 200; raise :class:`ServerStartError` with the log's
        tail when the process exits (or ``before`` raises: another process of the run died)
        or ``limit_s`` after its start has passed."""

        def check() -> None:
            self.raise_if_exited()
            if before is not None:
                before()

        left = max(self.spawned_at + limit_s - time.monotonic(), 0.0)
        if not health.wait_healthy(self.url, left, check):
            raise ServerStartError(
                f"the {self.label} at {self.url} was not healthy within {limit_s:g} s "
                f"(raise --vllm-serve-timeout); last lines of {self.log_path}:\n"
                f"{log_tail(self.log_path)}"
            )
        self.say(
            f"vllm-conformance: {self.label} ready after {time.monotonic() - self.spawned_at:.0f} s"
        )

    def raise_if_exited(self) -> None:
        code = self.proc.poll() if self.proc is not None else None
        if code is not None:
            raise ServerStartError(
                f"the {self.label} exited with code {code} before it was healthy; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def pin(self, cpus: frozenset[int]) -> None:
        """Pin every thread of every process of the group to ``cpus`` (threads and processes
        they start later inherit it): for a group started unpinned, once it is up."""
        if self.proc is None:
            return
        for pid in group_members(self.proc.pid):
            for tid in _tasks(pid):
                with contextlib.suppress(OSError):  # ended meanwhile
                    os.sched_setaffinity(tid, cpus)

    # -- pause (what the topology suite does to a backend) --------------------------------------
    def pause(self) -> None:
        """Freeze every process of the group (as ``docker pause`` freezes a container): it
        keeps its port, and answers nothing until resumed."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let the paused group run again (SIGCONT), without waiting for it."""
        self._signal(signal.SIGCONT)

    def resume(self, timeout_s: float) -> None:
        """Thaw the group and wait until ``/health`` answers 200 again."""
        self.thaw()
        if not health.wait_healthy(self.url, timeout_s, self.raise_if_exited):
            raise ServerStartError(
                f"the {self.label} at {self.url} was not healthy within {timeout_s:g} s "
                f"of being resumed; last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    # -- stop ---------------------------------------------------------------------------------
    def terminate(self) -> None:
        """Ask the whole group to stop (SIGTERM, then SIGCONT: a paused group must wake to act
        on it); :meth:`reap` waits."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)

    def reap(self, grace_s: float = STOP_GRACE_S) -> None:
        """Wait for the group leader up to ``grace_s``, SIGKILL the group, and wait until
        no process of the group is left (an engine core outlives its server otherwise)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(grace_s, 0.1))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the leader if it hung, and stragglers
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return  # the group is gone
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after a grace period."""
        self.terminate()
        self.reap()


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (from /proc; Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _tasks(pid: int) -> list[int]:
    try:
        return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if t.name.isdigit()]
    except OSError:
        return []


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so a killed run still stops what it started."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while stopping: a second one must not leave servers behind."""
    try:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
