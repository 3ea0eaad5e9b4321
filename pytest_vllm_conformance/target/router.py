"""The split topology's router as a local process: HAProxy with the bundled configuration.

The containers' router and this one read the same file (``router/haproxy.cfg``, or
``--vllm-router-config``); :func:`render_loopback` changes only what differs on one machine
without Docker: where it listens, where its backends are, and no Docker DNS resolvers.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pytest_vllm_conformance.target.process import (
    RUN_MARKER_ENV,
    LocalProcess,
    ServerStartError,
)

HAPROXY = "haproxy"
_BIND = re.compile(r"^(\s*)bind\s+\S*:\d+(.*)$")
_SERVER = re.compile(r"^(\s*)server\s+(\S+)\s+\S+(.*)$")
_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen|resolvers|peers|userlist)\b")
_RESOLVERS_USE = re.compile(r"\s+resolvers\s+\S+")


def render_loopback(config: str, port: int, backends: Mapping[str, Sequence[int]]) -> str:
    """The router configuration for loopback: ``bind 127.0.0.1:PORT``; in each ``backend
    ROLE`` named in ``backends``, its server line once per port (``127.0.0.1:P``; the first
    keeps its name, each further one is NAME-2, NAME-3, ... and a ``backup``); ``resolvers``
    sections and their use dropped (a loopback address needs no DNS). Every other line is
    kept as it is."""
    out: list[str] = []
    section, role = "", ""
    for line in config.splitlines():
        if _SECTION.match(line):
            section, _, rest = line.partition(" ")
            role = rest.strip() if section == "backend" else ""
            if section == "resolvers":
                continue
        elif section == "resolvers":
            continue  # the dropped section's body
        if bind := _BIND.match(line):
            out.append(f"{bind.group(1)}bind 127.0.0.1:{port}{bind.group(2)}")
        elif (server := _SERVER.match(line)) and role in backends:
            indent, name, rest = server.groups()
            rest = _RESOLVERS_USE.sub("", rest)
            for i, backend_port in enumerate(backends[role]):
                first = i == 0
                label = name if first else f"{name}-{i + 1}"
                out.append(
                    f"{indent}server {label} 127.0.0.1:{backend_port}{rest}"
                    + ("" if first else " backup")
                )
        elif line.lstrip().startswith("default-server"):
            out.append(_RESOLVERS_USE.sub("", line))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def haproxy_path() -> str | None:
    """HAProxy's path: on PATH, or in the sbin folders Debian installs it to (not on a
    normal user's PATH)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(HAPROXY, path=search)


def haproxy_problem() -> str | None:
    """None when HAProxy can be run, else the sentence saying how to get it."""
    if haproxy_path() is None:
        return (
            "--vllm-topology=split with --vllm-serve runs HAProxy as its router, and "
            "haproxy is not on PATH nor in /usr/sbin; install it (apt-get install haproxy) or use "
            "--vllm-topology=single."
        )
    return None


class LocalRouter(LocalProcess):
    """``haproxy -db -f CONFIG`` on loopback in front of the run's local servers."""

    label = "HAProxy router"

    def __init__(
        self,
        config: Path,
        output_dir: Path,
        port: int,
        backends: Mapping[str, Sequence[int]],
        say: Callable[[str], None],
        marker: str = "",
    ) -> None:
        super().__init__(output_dir / "haproxy.log", say)
        self.source = config
        self.config_path = output_dir / "haproxy.cfg"
        self.port = port
        self.backends = {role: list(ports) for role, ports in backends.items()}
        self.marker = marker
        self.url = f"http://127.0.0.1:{port}"

    def cannot_run(self, program: str, exc: OSError) -> str:
        return f"cannot run {program}: {exc.strerror}; install HAProxy (apt-get install haproxy)."

    def launch(self, cpus: frozenset[int] | None = None) -> None:
        """Write the loopback configuration next to the logs and start HAProxy on it."""
        try:
            text = self.source.read_text()
        except OSError as exc:
            raise ServerStartError(
                f"cannot read the router configuration {self.source}: {exc.strerror}."
            ) from None
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_loopback(text, self.port, self.backends))
        env = dict(os.environ)
        if self.marker:
            env[RUN_MARKER_ENV] = self.marker
        self.say(
            f"vllm-conformance: starting the {self.label} on {self.url} "
            f"(config: {self.config_path}, log: {self.log_path})"
        )
        self.run([haproxy_path() or HAPROXY, "-db", "-f", str(self.config_path)], env, cpus)
