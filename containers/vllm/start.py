"""The image's entry point: build ``vllm serve`` from the environment and exec it.

Every knob an operator turns (model, port, context, GPU share, strictness) is an
environment variable, so compose files and ``pytest --vllm-image`` configure the image
without knowing vLLM's flags. Extra arguments after the image name go to vLLM as they
are. ``--dry-run`` prints the command instead of running it (the project's tests use it).

Secrets (``HF_TOKEN``, ``VLLM_API_KEY``) stay in the environment, where vLLM and
huggingface_hub read them; they never reach argv, which vLLM logs.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

ON = ("1", "true", "yes", "on")


def _on(env: Mapping[str, str], name: str, default: str) -> bool:
    return env.get(name, default).strip().lower() in ON


def vllm_has_batch_invariant_mode() -> bool:
    """Whether the installed vLLM reads ``VLLM_BATCH_INVARIANT`` (found without importing it)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return False
    envs = Path(next(iter(spec.submodule_search_locations))) / "envs.py"
    try:
        return "VLLM_BATCH_INVARIANT" in envs.read_text()
    except OSError:
        return False


def build(
    env: Mapping[str, str], extra: list[str], native_batch_invariant: bool
) -> tuple[list[str], dict[str, str]]:
    """The argv and the environment for ``vllm serve``; raise ValueError on a bad setting."""
    model = env.get("MODEL", "").strip()
    if not model:
        raise ValueError("set MODEL to a Hugging Face model id or a path inside the container")
    argv = [
        "vllm",
        "serve",
        model,
        "--host",
        env.get("HOST", "0.0.0.0"),
        "--port",
        env.get("PORT", "8000"),
        "--served-model-name",
        env.get("SERVED_MODEL_NAME") or model,
        "--gpu-memory-utilization",
        env.get("GPU_MEMORY_UTILIZATION", "0.90"),
    ]
    for name, flag in (
        ("MAX_MODEL_LEN", "--max-model-len"),
        ("DTYPE", "--dtype"),
        ("TENSOR_PARALLEL_SIZE", "--tensor-parallel-size"),
        ("MAX_NUM_SEQS", "--max-num-seqs"),
        ("RUNNER", "--runner"),
        ("CONVERT", "--convert"),
        ("ATTENTION_BACKEND", "--attention-backend"),
    ):
        if env.get(name, "").strip():
            argv += [flag, env[name].strip()]
    out = dict(env)
    if _on(env, "STRICT", "1"):
        # prefix caching reuses KV blocks computed in another batch; the seed fixes sampling
        argv += ["--no-enable-prefix-caching", "--seed", env.get("SEED", "0")]
    if _on(env, "BATCH_INVARIANT", "1"):
        out["CUBLAS_WORKSPACE_CONFIG"] = env.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        out.setdefault("PYTHONHASHSEED", "0")
        if native_batch_invariant:
            out["VLLM_BATCH_INVARIANT"] = "1"
            out["BATCH_INVARIANT_OPS"] = "0"
        else:  # an older vLLM: the project's kernels/, enabled by sitecustomize at start-up
            out["BATCH_INVARIANT_OPS"] = "1"
    else:
        out["VLLM_BATCH_INVARIANT"] = "0"
        out["BATCH_INVARIANT_OPS"] = "0"
    return argv + shlex.split(env.get("VLLM_EXTRA_ARGS", "")) + extra, out


def main(args: list[str]) -> int:
    dry = "--dry-run" in args
    extra = [a for a in args if a != "--dry-run"]
    try:
        argv, env = build(os.environ, extra, vllm_has_batch_invariant_mode())
    except ValueError as exc:
        print(f"start.py: {exc}", file=sys.stderr)
        return 2
    mode = (
        "vLLM's VLLM_BATCH_INVARIANT"
        if env.get("VLLM_BATCH_INVARIANT") == "1"
        else "batch_invariant_ops (kernels/)"
        if env.get("BATCH_INVARIANT_OPS") == "1"
        else "off"
    )
    print(f"start.py: batch-invariant mode: {mode}", flush=True)
    print("start.py: " + shlex.join(argv), flush=True)
    if dry:
        return 0
    os.execvpe(argv[0], argv, env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
