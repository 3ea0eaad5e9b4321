"""pytest-vllm-conformance: is an OpenAI-compatible server correct, deterministic, fast, stable?"""

__version__ = "0.1.0"
