"""What importing the plugin and the ``target`` package loads, each in a fresh interpreter.

The plugin is imported by every pytest run on a machine where the package is installed, with
or without a server to test, so its import path stays light (ARCHITECTURE.md, "Rules").
``benchmarks/plugin_startup.py`` measures the cost that follows from it, by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Third-party modules a run pays for only when it has a target or writes a report.
HEAVY = (
    "torch",
    "vllm",
    "testcontainers",
    "locust",
    "jsonschema",
    "matplotlib",
    "jinja2",
    "httptools",
    "prometheus_client",
    "openai",
    "hypothesis",
    "numpy",
)
#: The package's own subpackages that stay unloaded until a target or a report needs them.
LATE = ("client", "perf", "report", "checks", "workload")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_importing_the_plugin_loads_no_heavy_module() -> None:
    loaded = _loaded_after("import pytest_vllm_conformance.plugin")
    assert "pytest_vllm_conformance.plugin" in loaded
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    late = [
        m for m in loaded if m.startswith("pytest_vllm_conformance.") and m.split(".")[1] in LATE
    ]
    assert heavy == [], f"the plugin's import loads {heavy}"
    assert late == [], f"the plugin's import loads {late}"


def test_target_is_importable_from_the_package_and_loaded_late() -> None:
    """``pytest_vllm_conformance.target.Target`` as before the layout moved it."""
    loaded = _loaded_after("import pytest_vllm_conformance.target")
    assert "pytest_vllm_conformance.target.discovery" not in loaded
    assert "pytest_vllm_conformance.client" not in loaded
    from pytest_vllm_conformance.target import Target, discovery

    assert Target is discovery.Target


def test_an_unknown_name_of_target_is_an_attribute_error() -> None:
    import pytest_vllm_conformance.target as target

    with pytest.raises(AttributeError, match="no_such_name"):
        _ = target.no_such_name
