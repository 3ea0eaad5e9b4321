"""The validated settings of one run, read from the option table.

:func:`read_settings` reads every option of :data:`~.table.OPTIONS` (command line, then
ini, then environment, then default), parses it, then checks the few rules that join
several options; every bad value is one ``pytest.UsageError`` sentence, whether it came from
the command line or an ini file. The dataclasses can also be built directly (tests, the
benchmarks), with the defaults a run without options gets, except that no report is written.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_conformance.config import table
from pytest_vllm_conformance.config.parsers import BASELINE_TOLERANCE_DEFAULTS
from pytest_vllm_conformance.config.table import OPTIONS, Option, Reading
from pytest_vllm_conformance.secrets import Secret


@dataclass(frozen=True)
class PerfSettings:
    """Options of the latency and memory suites."""

    concurrency: tuple[int, ...] = table.DEFAULT_CONCURRENCY
    requests: int = table.DEFAULT_REQUESTS
    duration_s: float | None = None
    rate: float = table.DEFAULT_RATE
    burstiness: float = table.DEFAULT_BURSTINESS
    warmup: int = table.DEFAULT_WARMUP
    max_tokens: int = table.DEFAULT_MAX_TOKENS
    slo: dict[str, float] | None = field(default_factory=dict)  # None: 'none' was given
    memory_duration_s: float = table.DEFAULT_MEMORY_DURATION_S
    memory_max_growth: float = table.DEFAULT_MEMORY_GROWTH
    memory_min_growth: float = table.DEFAULT_MEMORY_MIN_GROWTH
    memory_concurrency: int = table.DEFAULT_MEMORY_CONCURRENCY
    harness_tolerance_ms: float | None = None  # None: selfcheck.MIN_TOLERANCE_MS
    early_stop: bool = True  # end a level at a sure SLO miss (early_stop.EarlyStop)


@dataclass(frozen=True)
class ContainerSettings:
    """Options of the ``--vllm-image`` launcher."""

    image: str | None = None
    topology: str = "single"
    gpus: str = "auto"
    gpu_share: tuple[float, ...] = ()
    hf_cache: Path | None = None
    shm_size: str = table.DEFAULT_SHM_SIZE
    router_image: str = table.DEFAULT_ROUTER_IMAGE
    router_config: Path | None = None
    env: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Settings:
    """The validated options of one run."""

    urls: tuple[str, ...] = ()
    serve: str | None = None
    serve_args: tuple[str, ...] = ()
    serve_python: str = sys.executable
    serve_timeout: float = table.DEFAULT_SERVE_TIMEOUT_S
    cpu_split: str = "auto"
    api_key: Secret | None = None
    model: str | None = None
    embedding_url: str | None = None
    serve_embedding: str | None = None  # the started embedding server's model; None: none
    serve_replicas: int = 1
    embedding_model: str | None = None
    timeout: float = table.DEFAULT_TIMEOUT_S
    ready_timeout: float = table.DEFAULT_READY_TIMEOUT_S
    ready_timeout_given: bool = False
    profile: str = "auto"
    suites: str = "auto"
    examples: int = table.DEFAULT_EXAMPLES
    determinism_requests: int = table.DEFAULT_DETERMINISM_REQUESTS
    determinism_concurrency: int = table.DEFAULT_DETERMINISM_CONCURRENCY
    prompts: Path | None = None
    shared_server: bool = False
    output_dir: Path = field(default_factory=lambda: Path(table.DEFAULT_OUTPUT_DIR))
    perf: PerfSettings = field(default_factory=PerfSettings)
    json_path: Path | None = None
    html_path: Path | None = None
    openmetrics_path: Path | None = None
    junit_test_properties: bool = True
    pushgateway: str | None = None
    pool_id: str = "default"
    replica_id: str | None = None
    container: ContainerSettings = field(default_factory=ContainerSettings)
    # issue 18: baseline
    baseline: Path | None = None
    baseline_accept: tuple[str, ...] = ()
    baseline_tolerance: dict[str, float] = field(
        default_factory=lambda: dict(BASELINE_TOLERANCE_DEFAULTS)
    )
    baseline_confirm: str = "auto"  # auto, always, off: when a level is measured again

    @property
    def has_target(self) -> bool:
        return bool(self.urls) or self.serve is not None or self.container.image is not None


def read_settings(config: pytest.Config) -> Settings:
    """Read and check every option; raise ``pytest.UsageError`` on the first bad one."""
    root = Path(config.invocation_params.dir)
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = _given(config, option)
        at = Reading(option.flag, root, values)
        if raw is not None:
            values[option.field] = option.parse(raw, at)
        elif option.derive_default is not None:
            values[option.field] = option.derive_default(at)
        else:
            values[option.field] = option.default
        if option.given_field is not None:
            values[option.given_field] = raw is not None
    _check_together(values)
    groups: dict[str, dict[str, Any]] = {"": {}, "perf": {}, "container": {}}
    for name, value in values.items():
        group, _, attribute = name.rpartition(".")
        groups[group][attribute] = value
    return Settings(
        **groups[""],
        perf=PerfSettings(**groups["perf"]),
        container=ContainerSettings(**groups["container"]),
    )


def _given(config: pytest.Config, option: Option) -> Any:
    """The option's raw value: the command line's, else the ini file's, else the
    environment's; None when it is given nowhere. An empty ini or environment value counts
    as not given; an empty command-line value too where the option says so
    (``empty_means_unset``), else its parser judges it."""
    value = config.getoption(option.dest)
    if _present(value) or (_on_command_line(value) and not option.empty_means_unset):
        return value
    if option.ini_name is not None:
        value = config.getini(option.ini_name)
        if _present(value):
            return value
    return next((os.environ[name] for name in option.env if os.environ.get(name)), None)


def _on_command_line(value: Any) -> bool:
    """Whether the command line gave the option at all (its default is None, [] or False)."""
    return value is not None and value is not False and value != []


def _present(value: Any) -> bool:
    return value is not None and value is not False and value != [] and str(value).strip() != ""


def _check_together(values: dict[str, Any]) -> None:
    """The rules that join several options."""
    image, serve = values["container.image"], values["serve"]
    topology = values["container.topology"]
    if sum(map(bool, (values["urls"], serve, image))) > 1:
        raise pytest.UsageError("use one of --vllm-url, --vllm-serve and --vllm-image.")
    if topology == "split" and not (image or serve):
        raise pytest.UsageError(
            "--vllm-topology=split needs --vllm-serve=MODEL or --vllm-image=IMAGE."
        )
    if values["serve_replicas"] > 1 and not serve:
        raise pytest.UsageError(
            "--vllm-serve-replicas needs --vllm-serve=MODEL (replicas found elsewhere: "
            "pass --vllm-url once for each)."
        )
    if topology == "split" and serve and values["serve_embedding"] is None:
        raise pytest.UsageError(
            "--vllm-topology=split with --vllm-serve needs its embedding server: "
            "--vllm-serve-embedding=MODEL (auto starts one only for --vllm-serve=tiny "
            "without --vllm-embedding-url)."
        )
    if image and not values["model"]:
        raise pytest.UsageError(
            "--vllm-image needs --vllm-model=MODEL, the model the image "
            "is to serve (a Hugging Face id or a path in the image)."
        )
    if topology == "split" and image and not values["embedding_model"]:
        raise pytest.UsageError(
            "--vllm-topology=split needs --vllm-embedding-model=MODEL for its embedding server."
        )
