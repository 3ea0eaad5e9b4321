"""Option values checked as they are read: each bad value is one ``pytest.UsageError`` sentence.

Shared by :mod:`options` and :mod:`container_options` (which ``options`` imports, so the
checks cannot live in ``options`` itself).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest


def seconds(raw: Any, option: str, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise pytest.UsageError(f"{option} must be a positive number of seconds, got {raw!r}.")
    return value


def count(raw: Any, option: str, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(value) != str(raw).strip():
        raise pytest.UsageError(f"{option} must be a whole number of at least 1, got {raw!r}.")
    return value


def readable_file(raw: Any, option: str, root: Path) -> Path | None:
    if raw is None:
        return None
    path = root / str(raw)
    if not path.is_file():
        raise pytest.UsageError(f"{option} must name a readable file, got {raw!r}.")
    return path


def choice(raw: Any, option: str, choices: tuple[str, ...]) -> str:
    if raw is None:
        return choices[0]
    if raw not in choices:
        raise pytest.UsageError(f"{option} must be one of {', '.join(choices)}, got {raw!r}.")
    return str(raw)
