"""containers/: the image's entry point, its GPU request, and the compose files, without Docker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_vllm_conformance.target.container import (
    ContainerSpec,
    docker_kwargs,
    explain_docker_error,
    resolve_gpus,
)
from pytest_vllm_conformance.target.launch import default_router_config

REPO = Path(__file__).resolve().parent.parent
START = REPO / "containers" / "vllm" / "start.py"


def _dry_run(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("MODEL", "STRICT")}
    return subprocess.run(
        [sys.executable, str(START), "--dry-run", "--max-num-seqs", "8"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        check=False,
    )


def test_start_builds_vllm_serve_from_the_environment() -> None:
    done = _dry_run(
        MODEL="Qwen/Qwen2.5-0.5B-Instruct",
        PORT="9000",
        MAX_MODEL_LEN="4096",
        GPU_MEMORY_UTILIZATION="0.5",
        HF_TOKEN="hf_secret_value",
        VLLM_API_KEY="sk-secret-value",
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.splitlines()[-1]
    assert line.startswith(
        "start.py: vllm serve Qwen/Qwen2.5-0.5B-Instruct --host 0.0.0.0 "
        "--port 9000 --served-model-name Qwen/Qwen2.5-0.5B-Instruct "
        "--gpu-memory-utilization 0.5 --max-model-len 4096"
    )
    assert line.endswith("--no-enable-prefix-caching --seed 0 --max-num-seqs 8")
    assert "secret" not in done.stdout  # tokens stay in the environment, out of argv and logs


def test_start_enables_batch_invariance_and_can_turn_it_off() -> None:
    sys.path.insert(0, str(START.parent))
    try:
        import start  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    argv, env = start.build({"MODEL": "m"}, [], native_batch_invariant=True)
    assert env["VLLM_BATCH_INVARIANT"] == "1" and env["BATCH_INVARIANT_OPS"] == "0"
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    _, env = start.build({"MODEL": "m"}, [], native_batch_invariant=False)
    assert env["BATCH_INVARIANT_OPS"] == "1"  # an older vLLM: the project's kernels
    argv, env = start.build({"MODEL": "m", "BATCH_INVARIANT": "0", "STRICT": "0"}, [], True)
    assert env["VLLM_BATCH_INVARIANT"] == "0" and env["BATCH_INVARIANT_OPS"] == "0"
    assert "--no-enable-prefix-caching" not in argv


def test_start_without_a_model_is_one_line() -> None:
    done = _dry_run()
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "start.py: set MODEL to a Hugging Face model id or a path inside the container"
    )


def test_the_gpu_request_the_launcher_builds() -> None:
    spec = ContainerSpec(role="server", image="i", gpus="all", shm_size="16g")
    kwargs = docker_kwargs(spec, "run1")
    (request,) = kwargs["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert kwargs["shm_size"] == "16g" and kwargs["labels"]["org.pytest-vllm-conformance.run"]
    spec.gpus = "0,2"
    (request,) = docker_kwargs(spec, "run1")["device_requests"]
    assert request["DeviceIDs"] == ["0", "2"]
    spec.gpus = "none"
    assert "device_requests" not in docker_kwargs(spec, "run1")
    assert resolve_gpus("auto", ["runc", "nvidia"]) == "all"
    assert resolve_gpus("auto", ["runc"]) == "none"
    assert resolve_gpus("0", ["runc"]) == "0"
    text = explain_docker_error(
        Exception('could not select device driver "" with capabilities: [[gpu]]'), spec
    )
    assert "no NVIDIA runtime" in text and "--vllm-gpus=none" in text


def test_compose_symlink_is_the_bundled_router_config() -> None:
    link = REPO / "containers" / "router-haproxy.cfg"
    assert link.resolve() == default_router_config().resolve()


@pytest.mark.parametrize("name", ["compose.yaml", "compose.split.yaml"])
def test_compose_files_are_valid(name: str) -> None:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing; make test installs it", pytrace=False)
    done = subprocess.run(
        ["docker-compose", "-f", name, "config"],
        capture_output=True,
        text=True,
        cwd=REPO / "containers",
        check=False,
        env={**os.environ, "MODEL": "m", "EMBED_MODEL": "e"},
    )
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    for svc in services.values():
        if svc.get("image", "").startswith("vllm-batch-invariant"):
            assert svc["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == [
                "gpu"
            ]
    if name == "compose.split.yaml":
        assert services["gen"]["depends_on"]["embed"]["condition"] == "service_healthy"
        assert services["embed"]["environment"]["RUNNER"] == "pooling"
        assert "ports" not in services["embed"] and "ports" not in services["gen"]
