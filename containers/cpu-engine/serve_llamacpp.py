"""Run llama.cpp's OpenAI server (xllamacpp) from the same variables as the vLLM image.

xllamacpp has no command-line entry point; this script is it. It serves until stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import xllamacpp


def main() -> int:
    env = os.environ
    name = env.get("MODEL") or "smollm2"
    model = name if os.path.isfile(name) else f"/opt/models/{name}.gguf"
    pooling = env.get("RUNNER", "") == "pooling" or env.get("EMBEDDING", "") == "1"
    params = xllamacpp.CommonParams()
    params.model.path = model
    params.hostnames = [env.get("HOST", "0.0.0.0")]
    params.port = int(env.get("PORT", "8000"))
    params.n_ctx = int(env.get("MAX_MODEL_LEN", "4096"))
    params.n_parallel = int(env.get("MAX_NUM_SEQS", "4"))
    params.endpoint_metrics = True
    params.embedding = pooling
    if pooling:  # the GGUF names no pooling, and /v1/embeddings needs one
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    params.model_alias = {env.get("SERVED_MODEL_NAME") or os.path.basename(name)}
    params.sampling.seed = int(env.get("SEED", "0"))
    if env.get("VLLM_API_KEY"):
        params.api_keys = [env["VLLM_API_KEY"]]
    print(
        f"serve_llamacpp: model {model} on port {params.port}, "
        f"{'embeddings' if pooling else 'generation'}",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:  # llama.cpp has logged why just above
        print(f"serve_llamacpp: llama.cpp did not start ({exc})", file=sys.stderr, flush=True)
        return 1
    print("serve_llamacpp: server started", flush=True)
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
