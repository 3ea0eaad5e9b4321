"""Hooks other plugins and conftest files may implement to extend the harness."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_vllm_conformance.config import Settings
    from pytest_vllm_conformance.target.discovery import Target


@pytest.hookspec(firstresult=False)
def pytest_vllm_server_command(settings: Settings, command: list[str], env: dict[str, str]) -> None:
    """Edit the command line and environment before the plugin starts a local vLLM server
    (called once for each: every generation replica and the embedding server, whose command
    carries ``--convert embed``)."""


@pytest.hookspec
def pytest_vllm_target_ready(target: Target) -> None:
    """Called once the target answered its canary request and was identified."""
