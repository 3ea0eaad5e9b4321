"""What the topology suite drives: the two-instance service the plugin started.

Two deployments implement it, without knowing of each other: the containers of
``--vllm-image`` (:class:`.launch.ContainerDeployment`, a backend paused by stopping its
container) and the local processes of ``--vllm-serve`` (:class:`.local_deployment.
LocalDeployment`, a backend paused by SIGSTOP to its process groups).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pytest_vllm_conformance.config import Settings


class Backend(Protocol):
    """One engine behind the router ("embed" or "gen"), which a test may take down."""

    def pause(self) -> None:
        """Take the engine down: the router's health check must then fail."""

    def resume(self, timeout_s: float) -> None:
        """Bring it back and wait (up to ``timeout_s``) until its own /health answers 200."""


class Topology(Protocol):
    """The split service: its backends by role, and the run's settings."""

    @property
    def settings(self) -> Settings: ...

    @property
    def backends(self) -> Mapping[str, Backend]: ...
