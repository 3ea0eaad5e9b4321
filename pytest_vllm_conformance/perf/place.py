"""Where in its run a load level was measured: what this process had run before it.

On a small box a level's figures depend on what the server did before it, not only on the
server: measured on this 2-core box, the same vLLM build's levels differed by up to x1.3
between a full run and a latency-only run (and agreed within the tolerance between two runs
of either kind; docs/baseline.md). So a comparison with a baseline judges a level only where
both runs measured it at the same place: after the same test files, in the same order, and
the same earlier levels. Files, not test ids: a plugin upgrade that adds a test to a suite,
a rerun or a shuffle within a file keeps the place. The place is a digest of that history,
kept per process (under xdist each worker has its own, which depends on the scheduling).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_vllm_conformance.perf.latency import Level, LevelFigures

PLACE_KEY = pytest.StashKey["RunHistory"]()


@dataclass(frozen=True)
class Measured:
    """A level as judged in-run (its harness self-check; requests dropped) and as recorded."""

    level: Level
    figures: LevelFigures


@dataclass
class RunHistory:
    """The test files started and the levels measured in this process, in order; and, in a
    run with ``--vllm-baseline``, each level the latency suite measured, which the baseline
    suite judges rather than measuring the level again elsewhere in the run."""

    steps: list[str] = field(default_factory=list)
    levels: dict[str, Measured] = field(default_factory=dict)

    def test_started(self, item: pytest.Item) -> None:
        step = f"file {item.nodeid.split('::')[0]}"
        if step not in self.steps:
            self.steps.append(step)

    def place(self) -> str:
        """The digest of what this process ran so far: the next level's place."""
        return hashlib.sha256(json.dumps(self.steps).encode()).hexdigest()[:16]

    def level_measured(self, name: str, kept: Measured | None) -> None:
        self.steps.append(f"level {name}")
        if kept is not None:
            self.levels[name] = kept


def history(config: pytest.Config) -> RunHistory:
    """This process's history (made on first use)."""
    return config.stash.setdefault(PLACE_KEY, RunHistory())


def note_test(item: pytest.Item) -> None:
    """Count a test into the history, except the baseline suite's: they run last and judge
    the run, so a run with ``--vllm-baseline`` keeps the places of a run without it."""
    if item.get_closest_marker("baseline") is None:
        history(item.config).test_started(item)
