"""``python -m pytest_vllm_conformance.perf.locust``: an alias of ``vllm-conformance load``
under the package's module path (the earlier ``python -m pytest_vllm_conformance.load``
is gone)."""

import sys

from pytest_vllm_conformance.cli import main

sys.exit(main(["load", *sys.argv[1:]]))
