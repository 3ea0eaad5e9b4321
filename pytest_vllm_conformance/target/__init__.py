"""The server under test: find it, wait for it, or start it (process, containers).

``Target`` and the other names of the former ``pytest_vllm_conformance.target`` module now
live in :mod:`.discovery`; they stay importable from here, loaded on first use so that
importing this package (the plugin does) pulls in no HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_vllm_conformance.target.discovery import PROBED_PATHS as PROBED_PATHS
    from pytest_vllm_conformance.target.discovery import EngineInfo as EngineInfo
    from pytest_vllm_conformance.target.discovery import NotReady as NotReady
    from pytest_vllm_conformance.target.discovery import Target as Target
    from pytest_vllm_conformance.target.discovery import discover as discover
    from pytest_vllm_conformance.target.discovery import identify_engine as identify_engine
    from pytest_vllm_conformance.target.discovery import wait_ready as wait_ready

#: The names the former ``target`` module exported, now in :mod:`.discovery`.
_FROM_DISCOVERY = frozenset(
    {
        "PROBED_PATHS",
        "EngineInfo",
        "NotReady",
        "Target",
        "discover",
        "identify_engine",
        "wait_ready",
    }
)


def __getattr__(name: str) -> Any:
    """Load :mod:`.discovery` when one of its names is first asked for here."""
    if name in _FROM_DISCOVERY:
        from pytest_vllm_conformance.target import discovery

        return getattr(discovery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class StartedServer:
    """A server this run started itself: its main process, and whether a container holds it.

    What the memory suite needs to read the server's process tree; a server found at
    ``--vllm-url`` has none (the fixture gives None).
    """

    pid: int
    in_container: bool
