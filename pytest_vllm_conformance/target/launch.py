"""The containers of one ``--vllm-image`` run: a single server, or the two-instance service.

``single``: one container of the image. ``split``: the image twice on one private network
(an embedding server, then a generation server, sharing the GPU by memory share) behind an
HAProxy router that routes by path and aggregates ``/health``; the same layout as
``containers/compose.split.yaml``, with the same router configuration.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vllm_conformance.config.parsers import format_cpus
from pytest_vllm_conformance.secrets import Secret
from pytest_vllm_conformance.target.container import (
    CONTAINER_PORT,
    HF_CACHE_IN_CONTAINER,
    LABEL,
    ROUTER_CONFIG_IN_CONTAINER,
    ContainerServer,
    ContainerSpec,
    ContainerStartError,
    docker_engine_problem,
    resolve_gpus,
    start_reaper,
)
from pytest_vllm_conformance.target.cpu_split import server_environment
from pytest_vllm_conformance.target.process import interrupts_as_keyboard

if TYPE_CHECKING:
    from testcontainers.core.network import Network

    from pytest_vllm_conformance.config import Settings

#: the memory share each engine of the split topology claims, embedding first
SPLIT_GPU_SHARE = (0.20, 0.70)
#: passed on from this environment when set (read by huggingface_hub inside the image)
HF_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def default_router_config() -> Path:
    """The bundled HAProxy configuration (also containers/router-haproxy.cfg)."""
    return Path(
        str(importlib.resources.files("pytest_vllm_conformance") / "router" / "haproxy.cfg")
    )


class ContainerDeployment:
    """Starts the containers a run asked for, hands out the URLs, removes them all at the end."""

    def __init__(
        self,
        settings: Settings,
        say: Callable[[str], None],
        server_cpus: frozenset[int] | None = None,
    ) -> None:
        self.settings = settings
        self.say = say
        # --vllm-cpu-split: every container of the run (engines and router) on these CPUs
        self.server_cpus = server_cpus
        self.cpuset = format_cpus(server_cpus) if server_cpus else None
        self.run_id = uuid.uuid4().hex[:12]
        self.backends: dict[str, ContainerServer] = {}
        self.router: ContainerServer | None = None
        self.network: Network | None = None
        self.secrets: list[Secret] = []
        self._signals = contextlib.ExitStack()

    # -- what each container gets ---------------------------------------------------------
    def environment(self, role: str) -> dict[str, str]:
        s = self.settings
        model = s.embedding_model if role == "embed" else s.model
        assert model is not None
        env = {"PORT": str(CONTAINER_PORT), "MODEL": model, "SERVED_MODEL_NAME": model}
        if role == "embed":
            env.update(RUNNER="pooling", CONVERT="embed")
        share = self.gpu_share(role)
        if share is not None:
            env["GPU_MEMORY_UTILIZATION"] = f"{share:g}"
        for name in HF_TOKEN_VARS:
            if os.environ.get(name):
                env[name] = os.environ[name]
        if s.api_key is not None:
            env["VLLM_API_KEY"] = s.api_key.reveal()
        if self.server_cpus:  # inside, the cpuset is the affinity; the list names it too
            server_environment(env, self.server_cpus, s.serve_args)
        for name, value in s.container.env:
            got = os.environ.get(name) if value is None else value
            if got is not None:
                env[name] = got
        return env

    def gpu_share(self, role: str) -> float | None:
        shares = self.settings.container.gpu_share
        if self.settings.container.topology == "single":
            return shares[0] if shares else None
        pair = shares if len(shares) == 2 else SPLIT_GPU_SHARE
        return pair[0] if role == "embed" else pair[1]

    def spec(self, role: str, gpus: str) -> ContainerSpec:
        c = self.settings.container
        volumes = []
        if c.hf_cache is not None:
            c.hf_cache.mkdir(parents=True, exist_ok=True)
            volumes.append((str(c.hf_cache), HF_CACHE_IN_CONTAINER, "rw"))
        assert c.image is not None
        return ContainerSpec(
            role=role,
            image=c.image,
            env=self.environment(role),
            command=list(self.settings.serve_args),
            gpus=gpus,
            shm_size=c.shm_size,
            volumes=volumes,
            alias=role if c.topology == "split" else None,
            cpuset=self.cpuset,
        )

    def router_spec(self) -> ContainerSpec:
        c = self.settings.container
        config = c.router_config or default_router_config()
        return ContainerSpec(
            role="router",
            image=c.router_image,
            command=["haproxy", "-W", "-db", "-f", ROUTER_CONFIG_IN_CONTAINER],
            volumes=[(str(config), ROUTER_CONFIG_IN_CONTAINER, "ro")],
            cpuset=self.cpuset,
        )

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> tuple[str, str | None]:
        """Start everything; return (the URL under test, the embeddings URL or None)."""
        problem = docker_engine_problem()
        if problem:
            raise ContainerStartError(problem)
        self._signals.enter_context(interrupts_as_keyboard())
        try:
            start_reaper()
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> tuple[str, str | None]:
        from testcontainers.core.docker_client import DockerClient

        s, c = self.settings, self.settings.container
        runtimes = (DockerClient().client.info().get("Runtimes") or {}).keys()
        gpus = resolve_gpus(c.gpus, runtimes)
        if c.gpus == "auto":
            self.say(
                f"vllm-conformance: GPUs: {gpus} (the engine's runtimes: "
                f"{', '.join(sorted(runtimes)) or 'none'})"
            )
        roles = ("embed", "gen") if c.topology == "split" else ("server",)
        specs = {role: self.spec(role, gpus) for role in roles}
        self.secrets += [
            Secret(v)
            for spec in specs.values()
            for k, v in spec.env.items()
            if v and _SECRET_NAME.search(k)
        ]
        if c.topology == "split":
            from testcontainers.core.network import Network

            self.network = Network(docker_network_kw={"labels": {LABEL: self.run_id}}).create()
        out = s.output_dir
        for role in roles:  # embedding first: it claims its GPU share before generation
            server = ContainerServer(
                specs[role],
                self.run_id,
                out / f"vllm-container-{role}.log",
                self.secrets,
                self.network,
            )
            self.backends[role] = server
            server.start(s.serve_timeout, self.say)
        if c.topology == "single":
            return self.backends["server"].url, None
        self.router = ContainerServer(
            self.router_spec(),
            self.run_id,
            out / "vllm-container-router.log",
            self.secrets,
            self.network,
        )
        url = self.router.start(s.serve_timeout, self.say)
        return url, url

    def stop(self) -> None:
        """Remove every container and the network, keeping their logs; safe to call twice."""
        for server in [self.router, *self.backends.values()]:
            if server is not None:
                server.remove()
        self.router = None
        self.backends = {}
        if self.network is not None:
            with contextlib.suppress(Exception):
                self.network.remove()
            self.network = None
        self._signals.close()

    # -- what the suites use ----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The generation server's main process, for the memory suite."""
        server = self.backends.get("gen") or self.backends.get("server")
        return server.pid if server is not None else None

    @property
    def image_id(self) -> str:
        server = next(iter(self.backends.values()), None)
        if server is None or server.container is None:
            return ""
        with contextlib.suppress(Exception):
            return str(server.container.get_wrapped_container().attrs["Image"])
        return ""
