"""``python -m pytest_vllm_conformance.perf.locust``: the old spelling of
``vllm-conformance load``, kept as an alias."""

import sys

from pytest_vllm_conformance.cli import main

sys.exit(main(["load", *sys.argv[1:]]))
