"""``vllm-conformance``: the command line (certify, verify, matrix, load, checks, options).

One module per subcommand; each registers its parser and imports its real work only when it
runs, so ``vllm-conformance --help`` stays fast.
"""

from pytest_vllm_conformance.cli.app import main

__all__ = ["main"]
