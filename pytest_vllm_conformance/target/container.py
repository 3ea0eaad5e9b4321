"""Start the server under test from an image (``--vllm-image``) through testcontainers.

testcontainers creates, labels and removes the containers (and runs Ryuk when it is on);
the waiting is ours, because a container that exits, never answers or is interrupted must
each end in one clear line with the container's last log lines, and the container must go
whatever happened. testcontainers and docker load only when an image is given.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vllm_conformance.secrets import Secret
from pytest_vllm_conformance.target import health
from pytest_vllm_conformance.target.process import indented_tail

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

CONTAINER_PORT = 8000
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"
#: every container the plugin starts carries this label (``docker ps --filter label=...``)
LABEL = "org.pytest-vllm-conformance.run"
ROUTER_CONFIG_IN_CONTAINER = "/usr/local/etc/haproxy/haproxy.cfg"
_LOG_TAIL_LINES = 20
_STOP_TIMEOUT_S = 10


class ContainerStartError(Exception):
    """The container did not come up; the message says why and quotes its log."""


@dataclass
class ContainerSpec:
    """What one container of the run needs: image, environment, command, devices."""

    role: str
    image: str
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    gpus: str = "none"
    shm_size: str | None = None
    volumes: list[tuple[str, str, str]] = field(default_factory=list)
    alias: str | None = None
    cpuset: str | None = None  # host CPUs like "0-5" (--vllm-cpu-split), None: any


def docker_kwargs(spec: ContainerSpec, run_id: str) -> dict[str, Any]:
    """The extra ``docker run`` arguments: labels, shared memory, CPUs and the GPU request
    (all in one dict: testcontainers' ``with_kwargs`` replaces it, it does not merge)."""
    kwargs: dict[str, Any] = {"labels": {LABEL: run_id, f"{LABEL}.role": spec.role}}
    if spec.shm_size:
        kwargs["shm_size"] = spec.shm_size
    if spec.cpuset:
        kwargs["cpuset_cpus"] = spec.cpuset
    if spec.gpus != "none":
        from docker.types import DeviceRequest

        request = (
            DeviceRequest(count=-1, capabilities=[["gpu"]])
            if spec.gpus == "all"
            else DeviceRequest(device_ids=spec.gpus.split(","), capabilities=[["gpu"]])
        )
        kwargs["device_requests"] = [request]
    return kwargs


def resolve_gpus(requested: str, runtimes: Iterable[str]) -> str:
    """``auto`` becomes ``all`` where the engine has NVIDIA's runtime, else ``none``."""
    if requested != "auto":
        return requested
    return "all" if "nvidia" in set(runtimes) else "none"


_NO_GPU_DRIVER = re.compile(
    r"could not select device driver|nvidia-container-cli|"
    r"unknown or invalid runtime name: nvidia",
    re.IGNORECASE,
)


def _reason(exc: BaseException) -> str:
    """What the Docker engine said (docker-py keeps it in ``explanation``)."""
    return str(getattr(exc, "explanation", None) or exc).strip()


def explain_docker_error(exc: BaseException, spec: ContainerSpec) -> str:
    """One sentence for what the Docker engine refused, with what to do about it."""
    text = _reason(exc)
    if _NO_GPU_DRIVER.search(text):
        return (
            f"the Docker engine cannot give the {spec.role} container a GPU (it has no "
            f"NVIDIA runtime: {text}); install the NVIDIA Container Toolkit and restart "
            "dockerd, or pass --vllm-gpus=none for an image that runs on the CPU."
        )
    return f"the Docker engine refused to start the {spec.role} container: {text}"


def ensure_image(client: Any, image: str) -> None:
    """Pull ``image`` if the engine lacks it; say clearly when that is impossible."""
    from docker.errors import DockerException, ImageNotFound

    try:
        client.images.get(image)
        return
    except ImageNotFound:
        pass
    try:
        client.images.pull(image)
    except DockerException as exc:
        raise ContainerStartError(
            f"image {image!r} is not on the Docker engine and pulling it failed "
            f"({_reason(exc)}); "
            "build it first (make -C containers image) or check the name."
        ) from None


class ContainerServer:
    """One container started from a :class:`ContainerSpec`, reachable at :attr:`url`."""

    def __init__(
        self,
        spec: ContainerSpec,
        run_id: str,
        log_path: Path,
        secrets: Iterable[Secret] = (),
        network: Network | None = None,
    ) -> None:
        self.spec = spec
        self.run_id = run_id
        self.log_path = log_path
        self.secrets = list(secrets)
        self.network = network
        self.container: DockerContainer | None = None
        self.url = ""

    def start(self, timeout_s: float, say: Callable[[str], None]) -> str:
        """Create and start the container, then wait until ``/health`` answers 200."""
        from docker.errors import DockerException
        from testcontainers.core.container import DockerContainer

        s = self.spec
        c = DockerContainer(s.image, **docker_kwargs(s, self.run_id))
        for name, value in s.env.items():
            c.with_env(name, value)
        for host, inside, mode in s.volumes:
            c.with_volume_mapping(host, inside, mode)
        if s.command:
            c.with_command(s.command)
        c.with_exposed_ports(CONTAINER_PORT)
        if self.network is not None:
            c.with_network(self.network)
            if s.alias:
                c.with_network_aliases(s.alias)
        self.container = c
        try:
            ensure_image(c.get_docker_client().client, s.image)
            c.start()
            self._raise_if_exited()
            self.url = self._address()
        except (DockerException, ConnectionError) as exc:
            self._raise_if_exited()
            raise ContainerStartError(explain_docker_error(exc, s)) from None
        say(
            f"vllm-conformance: {s.role} container {c.get_wrapped_container().short_id} "
            f"({s.image}) started on {self.url}; waiting for /health"
        )
        started = time.monotonic()
        self.wait_healthy(timeout_s)
        say(f"vllm-conformance: {s.role} container ready after {time.monotonic() - started:.0f} s")
        return self.url

    def _address(self) -> str:
        """The URL of the container's port as this machine reaches it (no waiting: a
        container that already exited has no port, and that is reported instead)."""
        assert self.container is not None
        docker = self.container.get_docker_client()
        port = CONTAINER_PORT
        if docker.get_connection_mode().use_mapped_port:
            port = int(docker.port(self.container.get_container_id(), CONTAINER_PORT))
        return f"http://{self.container.get_container_host_ip()}:{port}"

    def _raise_if_exited(self) -> None:
        try:
            state = self.state()
        except Exception:  # not created yet: nothing has exited
            return
        if state.get("Status") in ("exited", "dead"):
            raise ContainerStartError(
                f"the {self.spec.role} container ({self.spec.image}) exited with code "
                f"{state.get('ExitCode')} before it was healthy; its last log lines "
                f"(all of it in {self.log_path}):\n{self.log_tail()}"
            )

    def wait_healthy(self, timeout_s: float) -> None:
        """Poll ``/health`` until 200; raise with the log tail if it exits or times out."""
        if not health.wait_healthy(self.url, timeout_s, self._raise_if_exited):
            raise ContainerStartError(
                f"the {self.spec.role} container ({self.spec.image}) at {self.url} was not "
                f"healthy within {timeout_s:g} s (raise --vllm-serve-timeout); its last log "
                f"lines (all of it in {self.log_path}):\n{self.log_tail()}"
            )

    def state(self) -> dict[str, Any]:
        """Docker's State of the container, fresh (raises when it was never created)."""
        assert self.container is not None
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        return dict(wrapped.attrs.get("State") or {})

    @property
    def pid(self) -> int | None:
        """The container's main process as this machine sees it (local engines only)."""
        if self.container is None:
            return None
        with contextlib.suppress(Exception):
            pid = int(self.state().get("Pid") or 0)
            if pid > 0 and Path(f"/proc/{pid}").exists():
                return pid
        return None

    def logs(self) -> str:
        """Everything the container printed, secrets replaced by ``***``."""
        if self.container is None:
            return ""
        try:
            raw = self.container.get_wrapped_container().logs(stdout=True, stderr=True)
        except Exception:
            return ""
        text = raw.decode("utf-8", "replace")
        for secret in self.secrets:
            text = secret.redact(text)
        return text

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return indented_tail(self.save_log(), lines, "(no output)")

    def save_log(self) -> str:
        """Write the log, even an empty one: a log left by an earlier run must not stand in."""
        text = self.logs()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text(text)
        return text

    def pause(self) -> None:
        """Stop the container's process, keeping the container (for failover checks)."""
        assert self.container is not None
        self.container.get_wrapped_container().stop(timeout=_STOP_TIMEOUT_S)

    def resume(self, timeout_s: float) -> None:
        """Start a paused container again and wait until it is healthy."""
        assert self.container is not None
        self.container.get_wrapped_container().start()
        self.url = self._address()
        self.wait_healthy(timeout_s)

    def remove(self) -> None:
        """Keep the log, then remove the container and its anonymous volumes."""
        if self.container is None:
            return
        self.save_log()
        container, self.container = self.container, None
        with contextlib.suppress(Exception):
            container.get_wrapped_container().remove(force=True, v=True)


def start_reaper() -> None:
    """Start testcontainers' Ryuk now, where it is on, so its failure is named as such."""
    from testcontainers.core.config import testcontainers_config as config
    from testcontainers.core.container import Reaper

    if config.ryuk_disabled:
        return
    try:
        Reaper.get_instance()
    except Exception as exc:
        raise ContainerStartError(
            f"testcontainers' reaper (Ryuk, image {config.ryuk_image}) could not start "
            f"({_reason(exc)}); make that image available, or set "
            "TESTCONTAINERS_RYUK_DISABLED=true (the plugin removes its containers itself; "
            "Ryuk only adds cover for a run that is killed outright)."
        ) from None


def docker_engine_problem() -> str | None:
    """None when testcontainers can reach a Docker engine, else a sentence saying why not."""
    try:
        from testcontainers.core.docker_client import DockerClient
    except ImportError:
        return (
            "--vllm-image needs testcontainers: pip install 'pytest-vllm-conformance[containers]'."
        )
    try:
        DockerClient().client.ping()
    except Exception as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return (
            f"cannot reach a Docker engine at {where} ({reason}); start dockerd or set DOCKER_HOST."
        )
    return None
