"""Options of the ``--vllm-image`` launcher, validated as they are read (one UsageError line)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_conformance.config import perf_options
from pytest_vllm_conformance.config.validate import choice, readable_file

TOPOLOGIES = ("single", "split")
DEFAULT_ROUTER_IMAGE = "haproxy:2.8"
DEFAULT_SHM_SIZE = "8g"
DEFAULT_HF_CACHE = "~/.cache/huggingface"

_OPTIONS = (
    ("image", "IMAGE", "start this image through testcontainers and test it (needs "
     "--vllm-model; containers/vllm/Dockerfile builds the batch-invariant vLLM image)", "none"),
    ("topology", "NAME", "'single': one container; 'split': an embedding and a generation "
     "container behind an HAProxy router that aggregates /health (needs "
     "--vllm-embedding-model)", "single"),
    ("gpus", "WHICH", "GPUs for the containers: 'auto' (all when the Docker engine has "
     "NVIDIA's runtime, else none), 'all', 'none', or device ids like 0,1", "auto"),
    ("gpu-share", "F[,F]", "GPU memory share (GPU_MEMORY_UTILIZATION) of the container, or "
     "of the embedding and generation containers for 'split'", "the image's; 0.2,0.7 split"),
    ("hf-cache", "DIR", "host folder mounted as the containers' Hugging Face cache; 'none' "
     "mounts nothing", DEFAULT_HF_CACHE),
    ("shm-size", "SIZE", "shared memory of each engine container, e.g. 16g", DEFAULT_SHM_SIZE),
    ("router-image", "IMAGE", "HAProxy image of the split topology's router",
     DEFAULT_ROUTER_IMAGE),
    ("router-config", "FILE", "HAProxy configuration of the router", "the bundled one "
     "(containers/router-haproxy.cfg)"),
)

_GPUS = re.compile(r"^(auto|all|none|\d+(,\d+)*)$")
_SHM = re.compile(r"^\d+[bkmg]?$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def add_options(group: Any, parser: pytest.Parser) -> None:
    perf_options.add_rows(group, parser, _OPTIONS)
    group.addoption(
        "--vllm-container-env", action="append", default=None, metavar="NAME[=VALUE]",
        help="pass an environment variable to the containers, from this environment when no "
             "VALUE is given; values of names with TOKEN, KEY or SECRET never appear in logs; "
             "HF_TOKEN is passed when set; repeatable. Default: none (ini: vllm_container_env).",
    )
    parser.addini("vllm_container_env", "environment passed to the containers",
                  type="linelist", default=[])


@dataclass(frozen=True)
class ContainerSettings:
    image: str | None = None
    topology: str = "single"
    gpus: str = "auto"
    gpu_share: tuple[float, ...] = ()
    hf_cache: Path | None = None
    shm_size: str = DEFAULT_SHM_SIZE
    router_image: str = DEFAULT_ROUTER_IMAGE
    router_config: Path | None = None
    env: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def read(cls, pick: Callable[[str, str], Any], root: Path) -> ContainerSettings:
        image = pick("vllm_image", "vllm_image")
        topology = choice(pick("vllm_topology", "vllm_topology"), "--vllm-topology", TOPOLOGIES)
        if topology == "split" and not image:
            raise pytest.UsageError("--vllm-topology=split needs --vllm-image=IMAGE.")
        gpus = str(pick("vllm_gpus", "vllm_gpus") or "auto").strip()
        if not _GPUS.match(gpus):
            raise pytest.UsageError("--vllm-gpus must be auto, all, none or device ids like "
                                    f"0,1, got {gpus!r}.")
        shm = str(pick("vllm_shm_size", "vllm_shm_size") or DEFAULT_SHM_SIZE).strip()
        if not _SHM.match(shm):
            raise pytest.UsageError(f"--vllm-shm-size must be a size like 512m or 16g, "
                                    f"got {shm!r}.")
        cache = str(pick("vllm_hf_cache", "vllm_hf_cache") or DEFAULT_HF_CACHE).strip()
        return cls(
            image=str(image).strip() if image else None, topology=topology, gpus=gpus,
            gpu_share=_shares(pick("vllm_gpu_share", "vllm_gpu_share"), topology),
            hf_cache=None if cache.lower() == "none" else (root / Path(cache).expanduser()),
            shm_size=shm,
            router_image=str(pick("vllm_router_image", "vllm_router_image")
                             or DEFAULT_ROUTER_IMAGE),
            router_config=readable_file(pick("vllm_router_config", "vllm_router_config"),
                                        "--vllm-router-config", root),
            env=tuple(_env_item(raw) for raw in pick("vllm_container_env",
                                                     "vllm_container_env") or ()),
        )


def _shares(raw: Any, topology: str) -> tuple[float, ...]:
    if raw is None:
        return ()
    want = 2 if topology == "split" else 1
    try:
        values = tuple(float(v) for v in str(raw).split(","))
    except ValueError:
        values = ()
    if len(values) != want or not all(0 < v <= 1 for v in values) or sum(values) > 1:
        shape = "two fractions like 0.2,0.7 (embedding, generation; sum at most 1)" if (
            want == 2) else "one fraction in (0, 1]"
        raise pytest.UsageError(f"--vllm-gpu-share must be {shape}, got {raw!r}.")
    return values


def _env_item(raw: str) -> tuple[str, str | None]:
    name, sep, value = str(raw).partition("=")
    if not _ENV_NAME.match(name):
        # never echo the value: it may be a token
        raise pytest.UsageError("--vllm-container-env must be NAME or NAME=VALUE with NAME a "
                                f"variable name, got a value starting {name[:12]!r}.")
    return name, value if sep else None
