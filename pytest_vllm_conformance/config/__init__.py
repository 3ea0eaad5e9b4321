"""The run's configuration: every option declared once, its parser, and the validated settings.

- :mod:`.table`: each option's flag, ini twin, parser, default and help;
- :mod:`.parsers`: text to checked values, one ``pytest.UsageError`` sentence when bad;
- :mod:`.run_settings`: the :class:`Settings` dataclasses and :func:`read_settings`.

Cheap to import (pytest and the standard library only): the plugin loads it at start-up.
"""

from __future__ import annotations

import pytest

from pytest_vllm_conformance.config.parsers import normalise_url, redact_url
from pytest_vllm_conformance.config.run_settings import (
    ContainerSettings,
    PerfSettings,
    Settings,
    read_settings,
)
from pytest_vllm_conformance.config.table import (
    OPTIONS,
    REFUSED_GRACE_S,
    TINY,
    add_options,
    render_options_markdown,
)

SETTINGS_KEY = pytest.StashKey[Settings]()

__all__ = [
    "OPTIONS",
    "REFUSED_GRACE_S",
    "SETTINGS_KEY",
    "TINY",
    "ContainerSettings",
    "PerfSettings",
    "Settings",
    "add_options",
    "normalise_url",
    "read_settings",
    "redact_url",
    "render_options_markdown",
    "settings",
]


def settings(config: pytest.Config) -> Settings:
    """The run's validated settings: read once (at configure), then kept in the config's stash."""
    found = config.stash.get(SETTINGS_KEY, None)
    if found is None:
        found = config.stash[SETTINGS_KEY] = read_settings(config)
    return found
