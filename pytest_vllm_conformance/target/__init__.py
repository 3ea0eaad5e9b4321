"""The server under test: find it, wait for it, or start it (process, containers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StartedServer:
    """A server this run started itself: its main process, and whether a container holds it.

    What the memory suite needs to read the server's process tree; a server found at
    ``--vllm-url`` has none (the fixture gives None).
    """

    pid: int
    in_container: bool
