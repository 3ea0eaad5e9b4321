"""``python -m pytest_vllm_conformance.cli``: the same as ``vllm-conformance``."""

import sys

from pytest_vllm_conformance.cli.app import main

sys.exit(main())
