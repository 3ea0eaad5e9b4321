"""Every local process of one ``--vllm-serve`` run, owned by one object that stops them all.

The run's processes: the generation server (``--vllm-serve-replicas`` of them, identical
but for their port), the embedding server (``--vllm-serve-embedding``), and with
``--vllm-topology=split`` an HAProxy router in front of both, whose ``/health`` aggregates
them. All are spawned first and then waited for, so their start-ups overlap; whatever
fails or interrupts the start (a process that exits, Ctrl-C, SIGTERM), and however the run
ends later, :meth:`LocalDeployment.stop` stops every one of them and keeps their logs.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pytest_vllm_conformance.config import Settings
from pytest_vllm_conformance.target.local import (
    EMBED_ARGS,
    GENERATION,
    LocalVllmServer,
    ServerRole,
)
from pytest_vllm_conformance.target.process import (
    STOP_GRACE_S,
    LocalProcess,
    ServerStartError,
    free_ports,
    interrupts_as_keyboard,
    uninterrupted,
)
from pytest_vllm_conformance.target.router import LocalRouter, haproxy_problem
from pytest_vllm_conformance.target.topology import Backend

EditCommand = Callable[[list[str], dict[str, str]], None]


@dataclass(frozen=True)
class Started:
    """Where the run's servers answer once all are healthy."""

    url: str  # the URL under test: the router's, else the first generation server's
    replicas: tuple[str, ...]  # every generation server, directly
    embedding_url: str | None  # the router's, else the embedding server's; None: none


def replica_role(number: int) -> ServerRole:
    """The generation server number ``number`` (1 is the run's first, logged as ever)."""
    if number == 1:
        return GENERATION
    return ServerRole(
        label=f"vLLM server replica {number}", log_name=f"vllm-server-replica-{number}.log"
    )


def embedding_role(settings: Settings) -> ServerRole:
    return ServerRole(
        name="embed",
        label="vLLM embedding server",
        log_name="vllm-embed-server.log",
        model=settings.serve_embedding,
        served_name=settings.embedding_model,
        extra_args=EMBED_ARGS,
    )


class ReplicaSet:
    """The generation backend of the split topology: all its replicas, taken down and
    brought back together (the router's backend is down only when every replica is)."""

    def __init__(self, servers: Sequence[LocalProcess]) -> None:
        self.servers = list(servers)

    def pause(self) -> None:
        for server in self.servers:
            server.pause()

    def resume(self, timeout_s: float) -> None:
        """Every replica continued first, then each waited for: one that does not come
        back leaves none of the others stopped."""
        for server in self.servers:
            server.thaw()
        for server in self.servers:
            server.resume(timeout_s)


class LocalDeployment:
    """Starts the local processes a run asked for, hands out the URLs, stops them all."""

    def __init__(
        self,
        settings: Settings,
        say: Callable[[str], None],
        edit_command: EditCommand | None = None,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.settings = settings
        self.say = say
        self.cpus = cpus  # --vllm-cpu-split: every process of the run on these CPUs
        self.run_id = uuid.uuid4().hex[:12]  # in every process's environment (RUN_MARKER_ENV)
        self.split = settings.container.topology == "split"
        count = settings.serve_replicas
        embed = settings.serve_embedding is not None
        ports = free_ports(count + embed + self.split)

        def server(role: ServerRole, port: int) -> LocalVllmServer:
            return LocalVllmServer(settings, edit_command, say, cpus, role, self.run_id, port)

        self.generation = [server(replica_role(i + 1), ports[i]) for i in range(count)]
        self.embedding = server(embedding_role(settings), ports[count]) if embed else None
        self.router: LocalRouter | None = None
        if self.split:
            from pytest_vllm_conformance.target.launch import default_router_config

            assert self.embedding is not None  # read_settings holds split to an embedding server
            self.router = LocalRouter(
                settings.container.router_config or default_router_config(),
                settings.output_dir,
                ports[-1],
                {"embed": [self.embedding.port], "gen": [s.port for s in self.generation]},
                say,
                self.run_id,
            )
        self._signals = contextlib.ExitStack()

    @property
    def processes(self) -> list[LocalProcess]:
        """Every process of the run, in the order they are waited for."""
        servers: list[LocalProcess] = [*self.generation]
        if self.embedding is not None:
            servers.append(self.embedding)
        return servers + ([self.router] if self.router is not None else [])

    @property
    def backends(self) -> Mapping[str, Backend]:
        """The split topology's engines by router backend, for the topology suite."""
        if self.embedding is None:
            return {"gen": ReplicaSet(self.generation)}
        return {"embed": self.embedding, "gen": ReplicaSet(self.generation)}

    @property
    def pid(self) -> int | None:
        """The first generation server's main process, for the memory suite."""
        return self.generation[0].pid

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Started:
        """Spawn every process, then wait until each is healthy; stop them all on failure."""
        self._signals.enter_context(interrupts_as_keyboard())
        try:
            if self.split and (problem := haproxy_problem()):
                raise ServerStartError(problem)
            started = time.monotonic()
            # Several servers start side by side on every CPU (the harness's are idle until
            # the tests begin: 55 s instead of 76 s for three on this 2-core box), and are
            # kept to the server CPUs once up; a lone server is pinned from its first
            # instruction, as ever.
            servers = [*self.generation, *([self.embedding] if self.embedding else [])]
            pinned = len(servers) == 1
            for server in servers:
                server.launch(pinned)
            if self.router is not None:
                self.router.launch(self.cpus)
            for process in self.processes:
                process.wait_healthy(self.settings.serve_timeout, self._raise_if_any_exited)
            if self.cpus is not None and not pinned:
                for server in servers:
                    server.pin(self.cpus)
            if len(self.processes) > 1:
                self.say(
                    f"vllm-conformance: all {len(self.processes)} processes ready after "
                    f"{time.monotonic() - started:.0f} s"
                )
        except BaseException:
            self.stop()
            raise
        generation = tuple(s.url for s in self.generation)
        if self.router is not None:  # the service as users reach it: through the router
            return Started(self.router.url, generation, self.router.url)
        embedding = None if self.embedding is None else self.embedding.url
        return Started(generation[0], generation, embedding)

    def _raise_if_any_exited(self) -> None:
        for process in self.processes:
            process.raise_if_exited()

    def stop(self) -> list[LocalProcess]:
        """Stop every process (all asked at once, then each waited for), keeping their logs;
        safe to call twice. Returns the processes that had been started."""
        ran = [p for p in self.processes if p.proc is not None]
        with uninterrupted():
            for process in ran:
                process.terminate()
            deadline = time.monotonic() + STOP_GRACE_S
            for process in ran:
                process.reap(deadline - time.monotonic())
        self._signals.close()
        return ran
